"""From scores to training examples: weighted sampling with replacement and hard selection.

`Curriculum` is the callable `epoch -> probabilities` that `gf_jax.train.fit` takes as `sampling`;
each epoch then draws N indices with replacement from a generator seeded by (training seed, epoch),
as the released sampler does (no importance reweighting of the loss). `select` is the hard
baseline: keep a fixed fraction of the training set (top, bottom or random) and train uniformly.
numpy only: importing this module does not start JAX.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from curriculum import schedule
from gf_jax import sampling

SELECTIONS = ("top", "bottom", "random")


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """Per-epoch sampling probabilities from one score per training example."""

    config: schedule.ScheduleConfig
    score_N: np.ndarray

    def __post_init__(self) -> None:
        self.config.validate()
        schedule.weights(self.config, self.score_N, 0)  # fail now on bad scores, not mid-training

    def __call__(self, epoch: int) -> np.ndarray:
        return schedule.probabilities(self.config, self.score_N, epoch)


def draw(p_N: np.ndarray, epoch: int, seed: int) -> np.ndarray:
    """The N indices (with replacement) that training with seed `seed` uses in 0-based `epoch`."""
    p_N = np.asarray(p_N, np.float64)
    return sampling.epoch_indices(len(p_N), epoch, seed, lambda _: p_N)


def selection_size(n: int, fraction: float) -> int:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"selection fraction must be in (0, 1], got {fraction}")
    # The released curation keeps the whole part: int(0.2 * 5148) = 1029 scenarios.
    return max(1, math.floor(fraction * n + 1e-9))


def select(score_N: np.ndarray, fraction: float, which: str = "top", seed: int = 0) -> np.ndarray:
    """Sorted indices of the kept examples: the `fraction` with the highest (`top`) or lowest
    (`bottom`) scores, or a uniformly random subset (`random`, seeded). Ties are broken by index.
    """
    s_N = np.asarray(score_N, np.float64)
    n_kept = selection_size(len(s_N), fraction)
    if which == "top":
        kept = np.argsort(-s_N, kind="stable")[:n_kept]
    elif which == "bottom":
        kept = np.argsort(s_N, kind="stable")[:n_kept]
    elif which == "random":
        kept = np.random.default_rng([seed, 0x5E1]).choice(len(s_N), size=n_kept, replace=False)
    else:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {which!r}")
    return np.sort(kept)
