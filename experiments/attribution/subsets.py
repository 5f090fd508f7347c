"""Which training examples each retrain sees: random subsets for the LDS, removals for the curves.

Pure numpy, deterministic: subset r is a function of (seed, r) alone, so asking for more subsets
later keeps the first ones, and the masks can be rebuilt anywhere from the saved config. Shape
letters as in `gf_jax.data.schema`, plus R for the random subsets (retrained models).
"""

from __future__ import annotations

import hashlib

import numpy as np

from experiments.attribution.config import SCORE_SIDES, Streams

# The scorer label of random removals (`random` is the name of the random-score scorer).
RANDOM_DRAW = "random draw"


def subset_size(n: int, fraction: float) -> int:
    """round(fraction * n), kept within [1, n - 1] so that a subset is never empty nor all."""
    if n < 2:
        raise ValueError(f"subsets need at least 2 training examples, got {n}")
    return min(max(round(fraction * n), 1), n - 1)


def subset_mask(n: int, fraction: float, seed: int, r: int) -> np.ndarray:
    """Mask [N] (bool) of random subset `r`: exactly `subset_size(n, fraction)` examples."""
    rng = np.random.default_rng([seed, Streams.SUBSETS, r])
    mask_N = np.zeros(n, bool)
    mask_N[rng.choice(n, size=subset_size(n, fraction), replace=False)] = True
    return mask_N


def subset_masks(n: int, count: int, fraction: float, seed: int) -> np.ndarray:
    """Masks [R, N] (bool) of subsets 0 .. count - 1."""
    return np.stack([subset_mask(n, fraction, seed, r) for r in range(count)])


def removal_size(n: int, fraction: float) -> int:
    """Examples removed: round(fraction * n), at least 1 and leaving at least 1."""
    return subset_size(n, fraction)


def removal_kept(score_N: np.ndarray, fraction: float, side: str) -> np.ndarray:
    """Sorted indices [N - k] that remain after removing k = removal_size examples by a score.

    `top` removes the k highest scores, `bottom` the k lowest; ties are broken by index, so the
    choice is reproducible. Random removals are `random_kept`.
    """
    if side not in SCORE_SIDES:
        raise ValueError(f"removal side must be one of {SCORE_SIDES}, got {side!r}")
    s_N = np.asarray(score_N, np.float64)
    if s_N.ndim != 1 or not np.isfinite(s_N).all():
        raise ValueError(f"removal needs a finite score vector, got shape {s_N.shape}")
    k = removal_size(len(s_N), fraction)
    order_N = np.argsort(s_N, kind="stable")  # ascending; equal scores keep index order
    removed = order_N[-k:] if side == "top" else order_N[:k]
    return np.setdiff1d(np.arange(len(s_N)), removed)


def random_kept(n: int, fraction: float, *, seed: int, draw: int) -> np.ndarray:
    """Sorted indices left after removing removal_size(n, fraction) random examples."""
    k = removal_size(n, fraction)
    # The fraction enters in per-mille, so 5 %, 10 % and 20 % draw independently.
    rng = np.random.default_rng([seed, Streams.REMOVALS, draw, round(fraction * 1000)])
    removed = rng.choice(n, size=k, replace=False)
    return np.setdiff1d(np.arange(n), removed)


def digest(indices: np.ndarray) -> str:
    """A short hash of a set of training indices: a retrain records it, and a stored outcome
    whose indices no longer match (e.g. the scores changed) is refused."""
    idx = np.unique(np.asarray(indices, np.int64))
    return hashlib.sha256(idx.tobytes()).hexdigest()[:12]
