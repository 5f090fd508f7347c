"""The report's markdown tables, from an analysis summary (`experiments.attribution.analysis`).

- `models_table`: the full-data model(s) beside the non-learned baselines;
- `scorer_table`: every scorer's LDS on both targets, removal deltas and noise AUROC, with the
  random removal and the noise ceiling as reference rows;
- `removal_table`, `noise_table`, `cost_table`: the details.
Numbers are formatted here once, so a rebuilt report is the same text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from experiments import stats
from experiments.attribution.layout import percent
from experiments.attribution.subsets import RANDOM_DRAW as RANDOM

NOT_PAIRS = "— (per-example)"


def estimate(e: dict[str, Any] | None, missing: str = "n/a") -> str:
    """'0.123 [0.051, 0.190]' of an LDS or agreement entry; `missing` when absent."""
    if e is None or not math.isfinite(e["value"]):
        return missing
    low, high = e["low"], e["high"]
    ci = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{e['value']:.3f}{ci}"


def signed(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.3f}"


def headline_fraction(summary: dict[str, Any]) -> float:
    """The removal fraction the main table shows: the middle of the configured ones."""
    fractions = sorted(summary["config"]["attribution"]["removal_fractions"])
    return fractions[len(fractions) // 2]


def removal_delta(summary: dict, scorer: str, side: str, fraction: float, key: str) -> float | None:
    """Mean delta (`delta_val` or `delta_test`) of the finished removals matching, or None."""
    rows = [
        r
        for r in summary["removal"]
        if r["scorer"] == scorer and r["side"] == side and math.isclose(r["fraction"], fraction)
    ]
    values = [r[key] for r in rows if key in r]
    return float(np.mean(values)) if values else None


def removal_cell(summary: dict, scorer: str, side: str, fraction: float) -> str:
    """The Δ val plan ADE of a removal for the main table ('pending' until it has run)."""
    delta = removal_delta(summary, scorer, side, fraction, "delta_val")
    return "pending" if delta is None else signed(delta)


def models_table(summary: dict[str, Any]) -> str:
    full = summary["full_data"]
    rows = []
    if full is not None:
        seed = summary["config"]["attribution"]["seed"]
        rows.append(
            {
                "model": f"full-data model (seed {seed})",
                "val plan ADE": f"{full['val']['plan_ade']:.3f}",
                "test plan ADE": f"{full['test'].get('plan_ade', math.nan):.3f}",
            }
        )
        refs = full["references"]
        if len(refs) > 1:
            row = {"model": f"full-data runs, {len(refs)} seeds (mean ± SD)"}
            for split in ("val", "test"):
                row[f"{split} plan ADE"] = stats.format_mean_sd([v[split] for v in refs.values()])
            rows.append(row)
    retrained = summary.get("retrained", {})
    for kind in [k for k in ("subset", "ceiling", "removal") if k in retrained]:
        by_split = retrained[kind]
        row = {"model": f"{kind} retrains, {len(by_split['val'])} runs (mean ± SD; range)"}
        for split in ("val", "test"):
            v = by_split[split]
            row[f"{split} plan ADE"] = f"{stats.format_mean_sd(v)}; {min(v):.2f}-{max(v):.2f}"
        rows.append(row)
    for planner, by_split in sorted(summary["baselines"].items()):
        row = {"model": f"({planner.replace('_', ' ')})"}
        for split in ("val", "test"):
            row[f"{split} plan ADE"] = f"{by_split[split]['plan_ade']:.3f}"
        rows.append(row)
    return stats.markdown_table(rows, ["model", "val plan ADE", "test plan ADE"])


def learned_text(summary: dict[str, Any]) -> str:
    """Whether the full-data model beats route following on val (if not, say it plainly)."""
    full, route = summary["full_data"], summary["baselines"].get("route_following")
    if full is None or route is None:
        return "_The full-data model or the baselines are not there yet._\n"
    ratio = full["val"]["plan_ade"] / route["val"]["plan_ade"]
    if ratio < 1:
        return (
            f"The full-data model's val plan ADE is {ratio:.2f}x route following's."
            + retrains_learned(summary, route["val"]["plan_ade"])
            + "\n"
        )
    return (
        "**The full-data model does not beat route following** "
        f"(val plan ADE {ratio:.2f}x route following's): "
        "it has not learned to plan, so the retrained outcomes below are mostly training noise "
        "and no scorer can be judged by them.\n"
    )


def retrains_learned(summary: dict[str, Any], route_val: float) -> str:
    """' k of n retrains (...) beat route following on val.', or '' before any retrain."""
    val = [v for by_split in summary.get("retrained", {}).values() for v in by_split["val"]]
    if not val:
        return ""
    beat = sum(v < route_val for v in val)
    worst, median = max(val) / route_val, float(np.median(val)) / route_val
    return (
        f" {beat} of {len(val)} retrains beat route following on val (median {median:.2f}x, "
        f"worst {worst:.2f}x)."
    )


def scorer_table(summary: dict[str, Any]) -> str:
    frac = headline_fraction(summary)
    removed = set(summary["config"]["attribution"]["removal_scorers"])
    pct = percent(frac)
    cols = ["scorer", "LDS: val loss per scenario", "LDS: mean val plan ADE"]
    cols += [f"Δ val ADE, top {pct} % removed", f"Δ val ADE, bottom {pct} % removed"]
    cols += ["noise AUROC (low = corrupted)"]
    rows = []
    for row in summary["lds"]:
        name = row["scorer"]
        rows.append(
            {
                "scorer": name,
                cols[1]: estimate(row["loss"]) if row["pairs"] else NOT_PAIRS,
                cols[2]: estimate(row["ade"]),
                cols[3]: removal_cell(summary, name, "top", frac) if name in removed else "—",
                cols[4]: removal_cell(summary, name, "bottom", frac) if name in removed else "—",
                cols[5]: f"{summary['noise'][name]['auroc_low']:.3f}",
            }
        )
    rows.append(
        {
            "scorer": f"(random {pct} % removed)",
            cols[3]: removal_cell(summary, RANDOM, "random", frac),
        }
    )
    ceiling = summary["ceiling"]
    if ceiling is not None:
        label = f"(noise ceiling: {ceiling['pairs']} subsets x 2 seeds)"
        cells = {k: f"{estimate(ceiling[t])}; cap {cap(ceiling[t])}" for k, t in
                 ((cols[1], "loss"), (cols[2], "ade"))}  # fmt: skip
        rows.append({"scorer": label, **cells})
    return stats.markdown_table(rows, cols)


def cap(agreement: dict[str, Any] | None) -> str:
    """'≈ 0.27': the LDS a perfect predictor of the seed-averaged outcome would reach against one
    seed's outcome, sqrt of the two seeds' agreement (attenuation by noise); 'n/a' below 0."""
    if agreement is None or not math.isfinite(agreement["value"]) or agreement["value"] < 0:
        return "n/a"
    return f"≈ {math.sqrt(agreement['value']):.2f}"


def removal_table(summary: dict[str, Any]) -> str:
    fractions = sorted(summary["config"]["attribution"]["removal_fractions"])
    keys = sorted({(r["scorer"], r["side"]) for r in summary["removal"]})
    rows = []
    for scorer, side in keys:
        row: dict[str, Any] = {"scorer": "random" if scorer == RANDOM else scorer, "removed": side}
        for f in fractions:
            val = removal_delta(summary, scorer, side, f, "delta_val")
            test = removal_delta(summary, scorer, side, f, "delta_test")
            row[f"{percent(f)} %"] = f"{signed(val)} / {signed(test)}" if val is not None else ""
        rows.append(row)
    if not rows:
        return "_no removal has finished yet_\n"
    return stats.markdown_table(
        rows, ["scorer", "removed", *(f"{percent(f)} %" for f in fractions)]
    )


def noise_table(summary: dict[str, Any]) -> str:
    rows = []
    for name, d in summary["noise"].items():
        rows.append(
            {
                "scorer": name,
                "AUROC (low = corrupted)": f"{d['auroc_low']:.3f}",
                "AUROC (high = corrupted)": f"{d['auroc_high']:.3f}",
                "found in lowest": f"{100 * d['found_lowest']:.1f} %",
                "found in highest": f"{100 * d['found_highest']:.1f} %",
            }
        )
    cols = ["scorer", "AUROC (low = corrupted)", "AUROC (high = corrupted)"]
    return stats.markdown_table(rows, [*cols, "found in lowest", "found in highest"])


def cost_table(summary: dict[str, Any]) -> str:
    """Wall seconds of every scorer (computed once) and of the retrains by kind."""
    t = summary["timing"]
    rows = [
        {"work": f"scorer {k}", "runs": 1, "total (s)": f"{v:.1f}"}
        for k, v in t["scoring"].items()
        if v is not None
    ]
    for kind in ("reference", "subset", "ceiling", "removal"):
        if t[kind]["runs"]:
            mean = f"{t[kind]['mean']:.1f}"
            rows.append(
                {
                    "work": f"{kind} retrains",
                    "runs": t[kind]["runs"],
                    "total (s)": f"{t[kind]['total']:.1f}",
                    "per run (s)": mean,
                }
            )
    return stats.markdown_table(rows, ["work", "runs", "total (s)", "per run (s)"])
