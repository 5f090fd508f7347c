"""Noise detection: how well a per-example score finds the injected corrupted scenarios.

Both directions are reported and neither is chosen after the fact: a helpfulness score (TracIn,
TRAK, LiSSA) should be LOW on a corrupted example, a difficulty score (loss, self-influence)
HIGH, and metadata may go either way. AUROC is the Mann-Whitney form (ties count one half),
computed by `experiments.stats.auroc` as in the sweep's report, so the numbers agree;
`found_lowest` is the share of corrupted examples among the lowest `inspect` fraction of the
score (what an inspector of that fraction would find; a random order finds `inspect` of them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from experiments import stats


def found_fraction(
    score_N: np.ndarray, corrupted_N: np.ndarray, inspect: float, *, low: bool
) -> float:
    """Share of the corrupted examples among the lowest (or highest) `inspect` share of the
    score; ties broken by index, so the count is reproducible. nan without corrupted examples."""
    s_N = np.asarray(score_N, np.float64)
    c_N = np.asarray(corrupted_N, bool)
    if s_N.shape != c_N.shape or s_N.ndim != 1:
        raise ValueError(f"one label per score needed, got {s_N.shape} and {c_N.shape}")
    if not c_N.any():
        return math.nan
    k = max(1, round(inspect * len(s_N)))
    order_N = np.argsort(s_N if low else -s_N, kind="stable")
    return float(c_N[order_N[:k]].sum() / c_N.sum())


def detection(score_N: np.ndarray, corrupted_N: np.ndarray, inspect: float) -> dict[str, Any]:
    """{auroc_low, auroc_high, found_lowest, found_highest, corrupted, inspect} of one score.

    `auroc_low`: a low score marks a corrupted example; `auroc_high` = 1 - `auroc_low`.
    """
    c_N = np.asarray(corrupted_N, bool)
    low = stats.auroc(score_N, c_N, low_is_positive=True)
    return {
        "auroc_low": low,
        "auroc_high": 1.0 - low if math.isfinite(low) else math.nan,
        "found_lowest": found_fraction(score_N, c_N, inspect, low=True),
        "found_highest": found_fraction(score_N, c_N, inspect, low=False),
        "corrupted": int(c_N.sum()),
        "inspect": inspect,
    }
