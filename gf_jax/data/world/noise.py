"""Label noise: corrupt the ego future of a chosen set of scenarios (ground truth for valuation).

Four corruptions, assigned in turn over the chosen scenarios: another scenario's future (swap),
the future advanced in time (the ego jumps ahead and runs on at constant velocity), mirrored
left/right, and heavy jitter. A corruption that would leave the future almost unchanged (mirroring
a straight drive, shifting a standing ego) falls back to jitter, so every corrupted future differs
from its clean version by at least MIN_CHANGE metres. Values stay finite float32, so the
corrupted set still passes schema validation.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world.geometry import wrap_angle

KINDS = ("swap", "shift", "mirror", "jitter")
MIN_CHANGE = 1.0


def choose(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(fraction * n) distinct scenario indices, sorted."""
    k = round(fraction * n)
    return np.sort(rng.permutation(n)[:k])


def corrupt(future_Nx80x3: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the ego futures with the `chosen` ones corrupted."""
    fut = future_Nx80x3.astype(np.float64).copy()
    clean = future_Nx80x3.astype(np.float64)
    n = len(fut)
    kinds = (np.arange(len(chosen)) + rng.integers(0, len(KINDS))) % len(KINDS)
    for i, kind in zip(chosen, kinds, strict=True):
        f = clean[i]
        if KINDS[kind] == "swap" and n > 1:
            far = np.abs(clean[:, :, :2] - f[None, :, :2]).max(axis=(1, 2)) > 5.0
            far[i] = False
            if far.any():
                fut[i] = clean[rng.choice(np.nonzero(far)[0])]
        elif KINDS[kind] == "shift":
            k = int(rng.integers(15, 31))
            vel = f[-1, :2] - f[-2, :2]
            ext = f[-1, :2] + vel * np.arange(1, k + 1)[:, None]
            xy = np.concatenate([f[:, :2], ext])[k : k + 80]
            h = np.concatenate([f[:, 2], np.full(k, f[-1, 2])])[k : k + 80]
            fut[i] = np.concatenate([xy, h[:, None]], 1)
        elif KINDS[kind] == "mirror":
            fut[i] = f * np.array([1.0, -1.0, -1.0])
        if np.abs(fut[i, :, :2] - f[:, :2]).max() < MIN_CHANGE or KINDS[kind] == "jitter":
            sd = rng.uniform(0.8, 1.5)
            fut[i, :, :2] = f[:, :2] + rng.normal(0.0, sd, (80, 2))
            fut[i, :, 2] = f[:, 2] + rng.normal(0.0, 0.15, 80)
        fut[i, :, 2] = wrap_angle(fut[i, :, 2])
    return fut.astype(np.float32)
