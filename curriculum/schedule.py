"""The three-phase curriculum: per-epoch example weights from one static score per example.

Two modes, as the paper's text and its released sampler disagree (research/paper_recipe.md §1.4):

- `paper` (default): uniform for the first 3/20 of the epochs, a linear ramp over the next 5/20,
  then full differentiation by score quartile (relative weights Q4 2, Q3 1, Q2 0.5, Q1 0.25; the
  two middle weights and the ramp's end points are our assumption, the paper states only 2x and
  0.25x). At 20 epochs: epochs 1-3 uniform, 4-8 ramp (r = (e - 3) / 5), 9-20 focus.
- `code`: the released sampler's continuous weights on the min-max normalised score s, with
  progress p = epoch / E: easy-first warm-up w = max(1 - (1 - p/0.3) s, 0.1) for p <= 0.3, a ramp
  w = 1 + (p - 0.3)/0.35 s for p <= 0.65, then w = 0.5 + 1.5 s boosted 1.5x above the 80th
  percentile. At 20 epochs: 1-6, 7-13, 14-20.

Probabilities are w / sum(w); there is no softmax and no temperature. High score = sampled more.
Epochs are 0-based in the API (epoch 0 is the paper's epoch 1).
"""

from __future__ import annotations

import dataclasses

import numpy as np

MODES = ("paper", "code")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Which schedule, over how many epochs, and the paper mode's quartile weights (Q4..Q1)."""

    mode: str = "paper"
    epochs: int = 20
    q4_weight: float = 2.0
    q3_weight: float = 1.0
    q2_weight: float = 0.5
    q1_weight: float = 0.25

    def validate(self) -> ScheduleConfig:
        if self.mode not in MODES:
            raise ValueError(f"curriculum mode must be one of {MODES}, got {self.mode!r}")
        if self.epochs < 1:
            raise ValueError(f"curriculum epochs must be >= 1, got {self.epochs}")
        if min(self.quartile_weights) <= 0:
            raise ValueError(f"quartile weights must be > 0, got {self.quartile_weights}")
        return self

    @property
    def quartile_weights(self) -> tuple[float, float, float, float]:
        """Bottom to top quartile."""
        return (self.q1_weight, self.q2_weight, self.q3_weight, self.q4_weight)


def paper_phase_ends(epochs: int) -> tuple[int, int]:
    """(last uniform epoch, last ramp epoch), 1-based: (3, 8) at 20 epochs, scaled otherwise."""
    uniform_end = max(1, round(3 * epochs / 20))
    ramp_end = max(uniform_end + 1, round(8 * epochs / 20))
    return uniform_end, min(ramp_end, epochs)


def phase(cfg: ScheduleConfig, epoch: int) -> str:
    """`uniform`, `ramp` or `focus` (paper) / `warmup`, `ramp`, `focus` (code) for 0-based epoch."""
    e = epoch + 1
    if cfg.mode == "paper":
        u, r = paper_phase_ends(cfg.epochs)
        return "uniform" if e <= u else "ramp" if e <= r else "focus"
    p = e / cfg.epochs
    return "warmup" if p <= 0.30 else "ramp" if p <= 0.65 else "focus"


def ramp_fraction(cfg: ScheduleConfig, epoch: int) -> float:
    """Paper mode: 0 while uniform, rising linearly to 1 at the ramp's last epoch, then 1."""
    u, r = paper_phase_ends(cfg.epochs)
    if r <= u:  # a one-epoch schedule has no ramp: it stays uniform
        return 0.0
    return float(np.clip((epoch + 1 - u) / (r - u), 0.0, 1.0))


def quartiles(score_N: np.ndarray) -> np.ndarray:
    """Quartile of each example by rank, 0 (bottom) .. 3 (top); sizes differ by at most one.

    Ties are broken by position, so the split is exact even for constant scores.
    """
    s_N = np.asarray(score_N, np.float64)
    order_N = np.argsort(s_N, kind="stable")
    quartile_N = np.empty(len(s_N), np.int64)
    quartile_N[order_N] = (4 * np.arange(len(s_N))) // max(len(s_N), 1)
    return quartile_N


def _min_max(s: np.ndarray) -> np.ndarray:
    # The released code's normalisation (same as valuation.scores.min_max, which curriculum
    # may not import).
    return (s - s.min()) / (s.max() - s.min() + 1e-10)


def weights(cfg: ScheduleConfig, score_N: np.ndarray, epoch: int) -> np.ndarray:
    """Unnormalised weights [N] of every example in 0-based `epoch`."""
    s_N = np.asarray(score_N, np.float64)
    if s_N.ndim != 1 or not len(s_N) or not np.isfinite(s_N).all():
        raise ValueError(f"scores must be a non-empty finite 1-D array, got shape {s_N.shape}")
    if not 0 <= epoch < cfg.epochs:
        raise ValueError(f"epoch {epoch} outside the schedule's {cfg.epochs} epochs")
    if cfg.mode == "paper":
        r = ramp_fraction(cfg, epoch)
        target_N = np.asarray(cfg.quartile_weights)[quartiles(s_N)]
        return 1.0 + r * (target_N - 1.0)
    s_N = _min_max(s_N)
    p = (epoch + 1) / cfg.epochs
    if p <= 0.30:
        return np.maximum(1.0 - (1.0 - p / 0.3) * s_N, 0.1)
    if p <= 0.65:
        return 1.0 + (p - 0.3) / 0.35 * s_N
    w_N = 0.5 + 1.5 * s_N
    return np.where(s_N >= np.percentile(s_N, 80), 1.5 * w_N, w_N)


def probabilities(cfg: ScheduleConfig, score_N: np.ndarray, epoch: int) -> np.ndarray:
    """Sampling probabilities [N] of 0-based `epoch` (sum to 1)."""
    w_N = weights(cfg, score_N, epoch)
    return w_N / w_N.sum()


def weight_matrix(cfg: ScheduleConfig, score_N: np.ndarray) -> np.ndarray:
    """Probabilities of every epoch, [E, N] (for plots of the weights' evolution)."""
    return np.stack([probabilities(cfg, score_N, e) for e in range(cfg.epochs)])
