"""The paper's own numbers, and the table that sets this sweep's results beside them.

`PAPER_PLAN_ADE`: best-epoch validation plan ADE of the paper's five methods for its seeds 3407,
42 and 2024, as released with its figures (`../shared/research/paper_recipe.md` §1.6; the paper
calls uniform sampling "baseline"). `paper_comparison_table` compares relative effects only: the
paper trains a 10M-parameter model on nuPlan, this sweep a smaller one on the procedural world,
so absolute ADEs are not comparable, but "method X is k % better than uniform, p = ..." is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import stats
from experiments.reporting.loading import Runs

SEEDS = "seeds for the paper's effect"
MAX_SEEDS = 1_000_000

PAPER_PLAN_ADE = {
    "uniform": (1.9166, 1.5931, 1.8065),
    "metadata": (1.8317, 1.8026, 1.8307),
    "tracin": (1.6868, 1.6804, 1.7457),
    "hybrid": (1.7716, 1.8478, 1.6795),
    "loss": (1.7275, 1.7256, 2.5550),
}


def _versus(a: Sequence[float], b: Sequence[float]) -> tuple[str, str]:
    """(mean paired difference of a - b as % of b's mean, paired p) cells."""
    if len(a) < 2:
        return "", ""
    t = stats.paired_test(a, b)
    return f"{100 * t['mean_diff'] / np.mean(b):+.1f} %", f"{t['p']:.3g}"


def comparison_row(runs: Runs, method: str) -> dict[str, Any]:
    paper = PAPER_PLAN_ADE[method]
    row: dict[str, Any] = {"method": method, "paper plan ADE (n=3)": stats.format_mean_sd(paper)}
    if method != "uniform":
        row["paper vs uniform"], row["paper p"] = _versus(paper, PAPER_PLAN_ADE["uniform"])
    ours = runs.get(method, {})
    if ours:
        values = [float(ours[s]["plan_ade"]) for s in sorted(ours)]
        row["ours plan ADE"] = f"{stats.format_mean_sd(values)} (n={len(values)})"
    common = sorted(set(ours) & set(runs.get("uniform", {})))
    if method != "uniform" and common:
        a = [float(ours[s]["plan_ade"]) for s in common]
        b = [float(runs["uniform"][s]["plan_ade"]) for s in common]
        row["ours vs uniform"], p = _versus(a, b)
        row["ours p"] = f"{p} (n={len(common)})" if p else ""
        if len(common) >= 2:
            row[SEEDS] = _seeds_for_papers_effect(method, a, b)
    return row


def _seeds_for_papers_effect(method: str, a: list[float], b: list[float]) -> str:
    """The cell: seeds our paired test would need for 80 % power against the paper's relative
    effect of `method` vs uniform, at our seed-to-seed spread of the paired differences ("" when
    our runs give no spread to judge by, "> 1,000,000" when out of reach)."""
    paper = PAPER_PLAN_ADE[method]
    uniform = PAPER_PLAN_ADE["uniform"]
    relative = (np.mean(paper) - np.mean(uniform)) / np.mean(uniform)
    sd = float(np.std(np.subtract(a, b), ddof=1))
    if not (np.isfinite(sd) and np.isfinite(np.mean(b))):
        return ""
    effect = relative * float(np.mean(b)) / sd if sd > 0 else np.inf  # no spread: any n >= 2
    n = stats.seeds_needed(effect, max_n=MAX_SEEDS)
    return f"> {MAX_SEEDS:,}" if n > MAX_SEEDS else f"{n:,}"


def paper_comparison_table(runs: Runs) -> str:
    """Each of the paper's methods: its mean ± SD (ddof 0), the paired difference from uniform
    in % of uniform's mean and its p, in the paper and in this sweep (paired by seed), and how
    many seeds this sweep would need to detect the paper's effect with 80 % power."""
    rows = [comparison_row(runs, m) for m in PAPER_PLAN_ADE]
    cols = ["method", "paper plan ADE (n=3)", "paper vs uniform", "paper p"]
    cols += ["ours plan ADE", "ours vs uniform", "ours p", SEEDS]
    return stats.markdown_table(rows, cols)
