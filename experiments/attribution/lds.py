"""The linear datamodeling score (LDS) and its bootstrap interval over subsets (pure numpy).

For a scorer's scores [N, J] (N training examples, J targets), R random subsets given by their
masks [R, N], and the outcome measured after retraining on each subset, [R, J] (a loss or an
error: lower is better):

    effect_RxJ = masks_RxN @ scores_NxJ        the subset's summed scores: its predicted effect
    LDS(j)     = Spearman over r of (effect[r, j], -outcome[r, j])
    LDS        = mean over j of LDS(j)

The minus sign is dattri's (it negates the retrained targets) and the scorers' convention: a
positive score means training on the example helps, i.e. lowers the target's loss, so a subset
with a larger summed score should end with a lower loss. A per-example scorer has one target
(J = 1), e.g. the mean validation plan ADE. A target whose effect or outcome is constant over the
subsets has no rank correlation and is left out of the mean.

The interval resamples the R subsets with replacement (`resamples` times), recomputes the mean
LDS each time (repeated subsets tie and share their average rank) and takes the percentile
interval: the spread due to which subsets were drawn, the scarce resource of the benchmark.
Shape letters: R subsets, N training examples, J targets, B bootstrap resamples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.stats


def predicted_effects(masks_RxN: np.ndarray, scores_NxJ: np.ndarray) -> np.ndarray:
    """[R, J] float64 summed scores of each subset (`scores` [N] gives [R, 1])."""
    scores = np.asarray(scores_NxJ, np.float64)
    scores_NxJ = scores[:, None] if scores.ndim == 1 else scores
    masks_RxN = np.asarray(masks_RxN, np.float64)
    if masks_RxN.ndim != 2 or masks_RxN.shape[1] != scores_NxJ.shape[0]:
        raise ValueError(f"masks {masks_RxN.shape} do not fit scores {scores_NxJ.shape}")
    return masks_RxN @ scores_NxJ


def column_spearman(a_RxJ: np.ndarray, b_RxJ: np.ndarray) -> np.ndarray:
    """[J] Spearman rho of each column pair (average ranks for ties); nan where a column is
    constant."""
    a_RxJ, b_RxJ = _as_columns(a_RxJ), _as_columns(b_RxJ)
    if a_RxJ.shape != b_RxJ.shape:
        raise ValueError(f"spearman needs equal shapes, got {a_RxJ.shape} and {b_RxJ.shape}")
    ra_RxJ = scipy.stats.rankdata(a_RxJ, axis=0, method="average")
    rb_RxJ = scipy.stats.rankdata(b_RxJ, axis=0, method="average")
    ra_RxJ -= ra_RxJ.mean(axis=0)
    rb_RxJ -= rb_RxJ.mean(axis=0)
    norm_J = np.sqrt((ra_RxJ**2).sum(axis=0) * (rb_RxJ**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho_J = (ra_RxJ * rb_RxJ).sum(axis=0) / norm_J
    return np.where(norm_J > 0, rho_J, np.nan)


def mean_agreement(a_RxJ: np.ndarray, b_RxJ: np.ndarray) -> float:
    """The mean over columns of `column_spearman` (columns without one left out; nan if none)."""
    rho_J = column_spearman(a_RxJ, b_RxJ)
    finite = rho_J[np.isfinite(rho_J)]
    return float(finite.mean()) if len(finite) else math.nan


def bootstrap_interval(
    a_RxJ: np.ndarray,
    b_RxJ: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile interval of `mean_agreement` under resampling the R rows with replacement."""
    a_RxJ, b_RxJ = _as_columns(a_RxJ), _as_columns(b_RxJ)
    r = a_RxJ.shape[0]
    rows_BxR = rng.integers(0, r, size=(resamples, r))
    values_B = np.array([mean_agreement(a_RxJ[rows], b_RxJ[rows]) for rows in rows_BxR])
    values_B = values_B[np.isfinite(values_B)]
    if not len(values_B):
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values_B, [tail, 100 - tail])
    return float(low), float(high)


def agreement(
    a_RxJ: np.ndarray,
    b_RxJ: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """{value, low, high, subsets, targets}: `mean_agreement` with its bootstrap interval.

    `targets` counts the columns that had a rank correlation. The noise ceiling is the agreement
    of the same subsets' outcomes under two training seeds.
    """
    rho_J = column_spearman(a_RxJ, b_RxJ)
    low, high = bootstrap_interval(
        a_RxJ, b_RxJ, resamples=resamples, confidence=confidence, rng=rng
    )
    return {
        "value": mean_agreement(a_RxJ, b_RxJ),
        "low": low,
        "high": high,
        "subsets": int(_as_columns(a_RxJ).shape[0]),
        "targets": int(np.isfinite(rho_J).sum()),
    }


def lds(
    scores_NxJ: np.ndarray,
    masks_RxN: np.ndarray,
    outcome_RxJ: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The LDS of `scores` [N, J] (or [N] for one target) against retrained `outcome` [R, J]
    (lower is better), with its bootstrap interval over subsets (see `agreement`)."""
    effect_RxJ = predicted_effects(masks_RxN, scores_NxJ)
    outcome_RxJ = _as_columns(outcome_RxJ)
    if outcome_RxJ.shape != effect_RxJ.shape:
        raise ValueError(f"outcomes {outcome_RxJ.shape} do not fit effects {effect_RxJ.shape}")
    return agreement(effect_RxJ, -outcome_RxJ, resamples=resamples, confidence=confidence, rng=rng)


def _as_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected [R] or [R, J], got shape {x.shape}")
    return x
