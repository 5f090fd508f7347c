"""Per-scenario random streams.

Every scenario draws from its own generator seeded by (seed, scenario index, attempt), so a scenario
is the same whichever chunk it is generated in, and the draws are taken column by column in a fixed
order so that vectorised code consumes the same numbers for a scenario whatever its neighbours are.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri


class Draws:
    """Uniform numbers [N, D] (D = `size` columns) handed out in fixed-size column blocks.

    Args:
      seed: the generation seed.
      index: global scenario indices [N] (the scenario's identity).
      attempt: re-simulation attempt (a failed label gets fresh draws).
      size: columns per scenario; taking more raises.
    """

    def __init__(self, seed: int, index: np.ndarray, attempt: int = 0, size: int = 4096):
        self.u_NxD = (
            np.stack(
                [
                    np.random.default_rng([int(seed), int(i), int(attempt)]).random(size)
                    for i in index
                ]
            )
            if len(index)
            else np.zeros((0, size))
        )
        self.cursor = 0

    @property
    def n(self) -> int:
        return self.u_NxD.shape[0]

    def uniform(self, lo: float | np.ndarray = 0.0, hi: float | np.ndarray = 1.0, shape=()):
        """U(lo, hi) of shape [N, *shape]; lo/hi broadcast against it."""
        shape = tuple(np.atleast_1d(shape)) if shape != () else ()
        k = int(np.prod(shape)) if shape else 1
        if self.cursor + k > self.u_NxD.shape[1]:
            raise RuntimeError("world draws exhausted; raise Draws size")
        u = self.u_NxD[:, self.cursor : self.cursor + k].reshape((self.n, *shape))
        self.cursor += k
        lo = _expand(lo, u.ndim)
        hi = _expand(hi, u.ndim)
        return lo + (hi - lo) * u

    def normal(self, mean=0.0, sd=1.0, shape=()):
        z = ndtri(np.clip(self.uniform(0.0, 1.0, shape), 1e-7, 1 - 1e-7))
        return _expand(mean, z.ndim) + _expand(sd, z.ndim) * z

    def bernoulli(self, p, shape=()):
        return self.uniform(0.0, 1.0, shape) < _expand(
            p, 1 + len(np.atleast_1d(shape)) if shape != () else 1
        )

    def choice(self, probs_NxD: np.ndarray) -> np.ndarray:
        """One category per scenario from per-scenario probabilities [N, D] over D categories (need
        not be normalised)."""
        p = np.asarray(probs_NxD, float)
        c = np.cumsum(p, axis=1)
        u = self.uniform() * c[:, -1]
        return np.minimum((u[:, None] >= c).sum(1), p.shape[1] - 1)


def _expand(x, ndim: int):
    """Scalars stay; [N] arrays get trailing axes to broadcast against [N, ...]."""
    x = np.asarray(x, float)
    if x.ndim == 0:
        return x
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))
