"""The statistics the paper reports, computed the way it computes them (research/paper_recipe.md §1.6).

- `summarize`: mean, SD with ddof=0 (the paper's "±" is the population SD), CV = SD / mean.
- `paired_test`: two-sided paired t-test over seeds (`scipy.stats.ttest_rel`) and Cohen's
  d_z = mean(a - b) / SD(a - b, ddof=1). Both are signed as a - b: for plan ADE (lower is better)
  a negative t and d_z mean `a` beat `b`. The paper quotes |d_z| (TracIn vs Metadata: 3.88).
- `paired_power`, `seeds_needed`: the power of that test, and the seeds it needs to detect an
  effect (noncentral t).
- `spearman`, `spearman_matrix`, `auroc`: rank statistics between scores, delegated to
  `valuation.scores` so that the report and the score files agree to the bit.
- `format_mean_sd`, `markdown_table`: the text REPORT.md is made of.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

from valuation import scores as _scores


def _vector(values: Any, name: str = "values") -> np.ndarray:
    v = np.asarray(values, np.float64).reshape(-1)
    if not len(v):
        raise ValueError(f"{name} is empty")
    return v


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """`mean`, `sd` (ddof=0, as the paper), `cv` (sd / mean), `n`, `min`, `max` of the values."""
    v = _vector(values)
    mean, sd = float(v.mean()), float(v.std(ddof=0))
    return {
        "mean": mean,
        "sd": sd,
        "cv": sd / mean if mean != 0 else float("nan"),
        "n": len(v),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict:
    """Paired two-sided t-test and Cohen's d_z of a against b (pairs = seeds), signed as a - b.

    Returns `t`, `p`, `dz`, `n`, `mean_diff`. When every difference is the same the SD of the
    differences is 0 and neither statistic is defined; instead of scipy's warnings we return
    t = +-inf and p = 0 for a non-zero constant difference, t = nan and p = nan for all-zero
    differences, and dz = nan in both cases (a standardised effect of a zero spread means nothing).

    Raises:
      ValueError: if the lengths differ or there are fewer than two pairs.
    """
    x, y = _vector(a, "a"), _vector(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired_test needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"paired_test needs at least 2 pairs, got {len(x)}")
    d = x - y
    mean_diff = float(d.mean())
    out = {"n": len(d), "mean_diff": mean_diff}
    # Exact comparison: floating-point differences of equal pairs are bit-identical.
    if np.all(d == d[0]):
        t = math.copysign(math.inf, mean_diff) if mean_diff != 0 else math.nan
        return {**out, "t": t, "p": 0.0 if mean_diff != 0 else math.nan, "dz": math.nan}
    res = scipy.stats.ttest_rel(x, y)
    return {
        **out,
        "t": float(res.statistic),
        "p": float(res.pvalue),
        "dz": mean_diff / float(d.std(ddof=1)),
    }


def paired_power(n: int, effect_over_sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with n pairs against a true mean difference of
    `effect_over_sd` SDs of the differences (the noncentral t distribution, exact)."""
    if n < 2:
        raise ValueError(f"paired_power needs at least 2 pairs, got {n}")
    if not math.isfinite(effect_over_sd):
        raise ValueError(f"paired_power needs a finite effect size, got {effect_over_sd}")
    df = n - 1
    crit = scipy.stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect_over_sd) * math.sqrt(n)
    return float(scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc))


def seeds_needed(
    effect_over_sd: float, power: float = 0.8, alpha: float = 0.05, max_n: int = 1_000_000
) -> int:
    """The fewest pairs (seeds) at which the paired t-test reaches `power` against a true mean
    difference of `effect_over_sd` SDs of the differences; max_n + 1 if even max_n does not."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if math.isnan(effect_over_sd):
        raise ValueError("seeds_needed needs an effect size, got nan")
    if effect_over_sd == 0 or math.isinf(effect_over_sd):
        return max_n + 1 if effect_over_sd == 0 else 2
    # The normal approximation is a lower bound to start from; the t test needs a few more.
    z = scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power)
    lo = max(2, math.floor((z / abs(effect_over_sd)) ** 2))
    if lo > max_n:
        return max_n + 1
    hi = lo
    while paired_power(hi, effect_over_sd, alpha) < power:
        if hi > max_n:
            return max_n + 1
        hi = min(2 * hi, max_n + 1)
    while lo < hi:  # the smallest n in [lo, hi] with enough power (power grows with n)
        mid = (lo + hi) // 2
        if paired_power(mid, effect_over_sd, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rho between two score arrays (nan if either is constant)."""
    x, y = _vector(a, "a"), _vector(b, "b")
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan  # scipy would warn and return nan as well
    return _scores.spearman(x, y)


def spearman_matrix(named: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """(names in the mapping's order, [S, S] matrix of Spearman rho, ones on the diagonal)."""
    return _scores.spearman_matrix(named)


def auroc(
    score: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    low_is_positive: bool = True,
) -> float:
    """Area under the ROC curve of finding `labels` (True = positive) from `score`.

    Equals the Mann-Whitney U over all (positive, negative) pairs divided by their number, a tie
    counting one half. With `low_is_positive` a LOW score marks a positive (TracIn flagging
    corrupted examples). nan when one class is absent.
    """
    s = _vector(score, "score")
    y = np.asarray(labels, bool).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"auroc needs one label per score, got {len(s)} and {len(y)}")
    if not np.isfinite(s).all():
        raise ValueError("auroc needs finite scores")
    return _scores.auroc(s, y, low_is_positive=low_is_positive)


def format_mean_sd(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """'1.704 ± 0.029': mean ± SD (ddof=0), as the paper's tables; a single value has no spread
    to show and prints alone ('1.704')."""
    s = summarize(values)
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _cell(x: Any) -> str:
    if isinstance(x, float | np.floating):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    # A literal "|" would end the cell early.
    return str(x).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `rows` (dicts) with the given columns in order.

    Missing entries are blank; floats are written with 4 significant digits (format them first
    for anything else).
    """
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"
