"""Which training examples an epoch sees, and in which fixed-size host batches (numpy only).

No jax, optax or orbax import: the curriculum and data tools draw the very indices training uses
without starting JAX. Everything is a pure function of (seed, epoch), so a resumed run replays
exactly the stream an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from gf_jax.data.schema import ScenarioSet

# None (uniform passes), an int array (a subset), or epoch -> probabilities [N] (a curriculum).
Sampling = Callable[[int], np.ndarray] | np.ndarray | None


def epoch_indices(n: int, epoch: int, seed: int, sampling: Sampling) -> np.ndarray:
    """The training example indices of 0-based `epoch`, a pure function of (seed, epoch).

    `sampling` None: a shuffled pass over all N examples (the original's loader).
    An int array: a shuffled pass over that subset (hard selection).
    A callable `epoch -> probabilities [N]`: N draws with replacement (the released curriculum).
    """
    rng = np.random.default_rng([seed, epoch, 0x5A3])
    if sampling is None:
        return rng.permutation(n)
    if callable(sampling):
        p_N = np.asarray(sampling(epoch), np.float64)
        if p_N.shape != (n,) or not np.isfinite(p_N).all() or (p_N < 0).any() or p_N.sum() <= 0:
            raise ValueError(f"epoch {epoch}: sampling probabilities must be [{n}], finite, >= 0")
        return rng.choice(n, size=n, replace=True, p=p_N / p_N.sum())
    subset = np.asarray(sampling)
    if subset.ndim != 1 or subset.size == 0 or subset.min() < 0 or subset.max() >= n:
        raise ValueError(f"subset of training indices must be a non-empty 1-D array in [0, {n})")
    return rng.permutation(subset)


def batches(
    data: ScenarioSet, indices: np.ndarray, batch_size: int, neighbors: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Fixed-size host batches and their weights [B]; the last is padded with weight-0 copies.

    A fixed shape means one compiled step for every batch, the padded tail included.
    """
    for start in range(0, len(indices), batch_size):
        idx_B = indices[start : start + batch_size]
        weight_B = np.ones(batch_size, np.float32)
        if len(idx_B) < batch_size:
            weight_B[len(idx_B) :] = 0.0
            idx_B = np.concatenate([idx_B, np.full(batch_size - len(idx_B), idx_B[0])])
        idx_sorted = np.sort(idx_B)  # memmaps read faster in order; undo it afterwards
        inv = np.argsort(np.argsort(idx_B))
        full = data.batch(neighbors)
        yield {k: np.asarray(v[idx_sorted])[inv] for k, v in full.items()}, weight_B
