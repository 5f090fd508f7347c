"""The attribution report: markdown tables and the removal-curve figure from a summary.

`write(summary, out)` writes `out` (e.g. docs/attribution-cpu.md), the figure into the folder
named after it (`docs/attribution-cpu/removal_curves.png`) and the summary as JSON beside the
figure. The text depends on the summary alone (no paths, dates or timings of this process), so
a report rebuilt from the same workdir is the same file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments.attribution import anchors, figure, tables
from experiments.attribution.layout import percent
from experiments.attribution.subsets import RANDOM_DRAW as RANDOM
from gf_jax import atomic

FIGURE = "removal_curves.png"


BUDGET_TEXT = {
    "steps": "a retrain on a subset makes about as many optimizer steps as a full-data run (its "
    "epochs scaled by the training set's size over the subset's and rounded, the milestones "
    "with them)",
    "epochs": "a retrain on a subset makes as many passes over it (a half-subset: half the steps)",
}


def setup_text(summary: dict[str, Any]) -> str:
    cfg = summary["config"]["attribution"]
    preset = summary["config"]["preset"]
    model, train = preset["model"], preset["train"]
    fin, plan = summary["finished"], summary["planned"]
    t = summary["timing"]
    subset_mean = t["subset"]["mean"]
    per_subset = f"{subset_mean:.0f} s" if subset_mean is not None else "n/a"
    return (
        f"- Preset `{preset['name']}`: GameFormer dim {model['dim']}, "
        f"{model['encoder_layers']} encoder layer(s), {model['decoder_levels']} decoder level(s); "
        f"{summary['n_train']} training and {summary['n_val']} validation scenarios, "
        f"{train['epochs']} epochs for a full-data run, batch {train['batch_size']}; "
        f"{BUDGET_TEXT[cfg.get('retrain_budget', 'epochs')]}.\n"
        f"- Random subsets of {100 * cfg['subset_fraction']:g} %: {fin['subset']} of "
        f"{plan['subsets']} retrained; noise ceiling: {fin['ceiling']} of {plan['ceiling']} "
        f"repeated with a second seed; removals: {fin['removal']} of {plan['removals']}; "
        f"full-data reference runs: {fin['reference']} of {cfg['reference_runs']}.\n"
        f"- Intervals: {100 * cfg['confidence']:g} % percentile bootstrap over subsets "
        f"({cfg['bootstrap']} resamples); every random choice from seed {cfg['seed']}.\n"
        f"- Work time: {t['total'] / 3600:.2f} h summed over every retrain and scorer "
        f"({per_subset} per subset retrain, "
        f"{sum(v or 0 for v in t['scoring'].values()) / 60:.1f} min of scoring); shards "
        f"running side by side (`--shard`) finish in less.\n"
    )


def claims_text(summary: dict[str, Any]) -> str:
    """Plain comparisons behind the paper's claims: LDS intervals on both targets, and the
    removal deltas against the spread of random removals."""
    return aggregate_claims(summary) + pair_claim(summary) + removal_claim(summary)


def pair_claim(summary: dict[str, Any]) -> str:
    """Whether the gradient scores predict retraining, on the per-scenario loss target."""
    by = {r["scorer"]: r for r in summary["lds"] if r.get("loss") is not None}
    found = [s for s in ("tracin", "cosine", "trak5") if s in by]
    if not found:
        return ""
    parts = []
    for s in found:
        e = by[s]["loss"]
        where = "above 0" if e["low"] > 0 else ("below 0" if e["high"] < 0 else "includes 0")
        parts.append(f"{s} {tables.estimate(e)} ({where})")
    agreement = (summary.get("ceiling") or {}).get("loss")
    bound = tables.cap(agreement)
    noise = "the two seeds' agreement was not measured"
    if agreement is not None and bound == "n/a":
        noise = (
            f"two seeds agree at {tables.estimate(agreement)}, no better than chance, so no "
            "scorer can be expected to reach above 0 against one seed"
        )
    elif agreement is not None:
        noise = (
            f"two seeds agree at {tables.estimate(agreement)}, so a scorer predicting the "
            f"seed-averaged outcome exactly would reach {bound} against one seed"
        )
    return (
        "- *Gradient similarity predicts what retraining does*: LDS on each val scenario's "
        f"loss, {'; '.join(parts)}. Retraining noise on the same target: {noise}.\n"
    )


def removal_claim(summary: dict[str, Any]) -> str:
    """The headline removal of the paper's two scores beside the random removals' range."""
    f = tables.headline_fraction(summary)
    draws = [
        r["delta_val"]
        for r in summary["removal"]
        if r["scorer"] == RANDOM and math.isclose(r["fraction"], f) and "delta_val" in r
    ]
    cells = []
    for scorer in ("tracin", "metadata"):
        top = tables.removal_delta(summary, scorer, "top", f, "delta_val")
        bottom = tables.removal_delta(summary, scorer, "bottom", f, "delta_val")
        if top is not None and bottom is not None:
            cells.append(f"{scorer} top {tables.signed(top)}, bottom {tables.signed(bottom)}")
    if not cells or len(draws) < 2:
        return ""
    low, high = min(draws), max(draws)
    return (
        f"- *Removing the highest-scored examples hurts most* ({percent(f)} % removed, "
        f"Δ val plan ADE against the full-data model): {'; '.join(cells)}; {len(draws)} random "
        f"removals of the same size: {tables.signed(low)} to {tables.signed(high)}. One retrain "
        "per removal: a delta inside the random removals' range is not evidence.\n"
    )


def aggregate_claims(summary: dict[str, Any]) -> str:
    """The paper's two comparisons on the aggregate target (mean val plan ADE)."""
    by = {r["scorer"]: r for r in summary["lds"]}
    lines = []
    for a, b, claim in (
        ("tracin", "metadata", "TracIn captures training dynamics invisible to metadata"),
        ("lissa", "random", "LiSSA is random noise at this scale"),
    ):
        if a not in by or b not in by or by[a]["ade"] is None or by[b]["ade"] is None:
            lines.append(f"- *{claim}*: not measured yet (needs both scorers and 3+ subsets).")
            continue
        ea, eb = by[a]["ade"], by[b]["ade"]
        overlap = ea["low"] <= eb["high"] and eb["low"] <= ea["high"]
        verdict = "overlap: no evidence of a difference" if overlap else "do not overlap"
        lines.append(
            f"- *{claim}*: LDS on mean val plan ADE, {a} {tables.estimate(ea)} vs {b} "
            f"{tables.estimate(eb)}; the intervals {verdict}."
        )
    return "\n".join(lines) + "\n"


def render(summary: dict[str, Any], figure_link: str) -> str:
    inspect = summary["config"]["attribution"]["inspect_fraction"]
    parts = [
        "# Attribution benchmark: do the scores predict retraining?\n",
        "Each scorer's claim is checked against what it predicts: models retrained on random "
        "half-subsets (linear datamodeling score, LDS), on the training set without its top or "
        "bottom scored examples (removal), and its ranking of the injected corrupted scenarios "
        "(noise detection). Written by `python experiments/attribute.py report` from the "
        "benchmark's workdir alone.\n",
        setup_text(summary),
        "## The models\n",
        "The full-data model and the non-learned baselines on the same splits: a retrain "
        "outcome is only informative if the model learns (plan ADE below route following).\n",
        tables.models_table(summary),
        tables.learned_text(summary),
        "## Every scorer\n",
        "LDS: Spearman rho, over the retrained subsets, between a subset's summed scores and "
        "minus its retrained outcome, averaged over targets (see Definitions). Per-example "
        "scorers have one score per training example, so they predict the aggregate target "
        "(mean val plan ADE) only; pair scorers predict each validation scenario's loss and, "
        "by their row means, the aggregate. Δ: val plan ADE after removal minus the full-data "
        "model's (positive: the removed examples helped).\n",
        tables.scorer_table(summary),
        "## Published anchors (other tasks)\n",
        anchors.TEXT,
        anchors.table(),
        "## Counterfactual removal\n",
        "Δ plan ADE against the full-data model, val / test, by share of the training set "
        "removed; random: mean over the random draws.\n",
        tables.removal_table(summary),
        f"![removal curves]({figure_link})\n",
        "## Noise detection\n",
        f"AUROC for the injected corrupted training scenarios, both ways round, and the share "
        f"of them found in the lowest and highest {100 * inspect:g} % of each score (a random "
        f"order finds {100 * inspect:g} %).\n",
        tables.noise_table(summary),
        "## What this says about the paper's claims\n",
        claims_text(summary),
        "## Cost\n",
        "Wall seconds as recorded by each step (training includes its evaluations and "
        "checkpoint writes; the first retrain of a process also compiles).\n",
        tables.cost_table(summary),
        "## Definitions\n",
        DEFINITIONS,
    ]
    return "\n".join(parts)


DEFINITIONS = """\
- LDS (Park et al. 2023; dattri's sign): for target j and subsets r = 1..R, the Spearman rho
  between sum over i in subset r of score(i, j) and -outcome(r, j), averaged over targets. A
  positive score means helpful (lowers the loss), so a perfect scorer reaches 1 and a random
  one 0. Targets: each validation scenario's loss (training loss, eval mode, best-val
  checkpoint) and the mean validation plan ADE.
- Noise ceiling: the same rank correlation between the outcomes of the same subsets trained
  with two seeds (their agreement a). Each subset is retrained once, so even a scorer that
  predicted the seed-averaged outcome exactly would correlate with one seed's outcome at about
  sqrt(a) (the attenuation of a correlation by measurement noise): the cap the table shows.
- Scorers (`experiments/attribution/scorers.py`): TracIn = sum_k lr_k <g_i, g_j> over the
  full-data run's epoch checkpoints (best: the best-validation one; dropout: dropout on while
  scoring); cosine = the same with cosines; TRAK-m = the regression-form TRAK over m full-data
  runs' final checkpoints; self-influence = sum_k lr_k |g_i|^2; LiSSA = influence on the mean
  validation loss; loss, metadata (weighted, mean), hybrid (TracIn and metadata rank mean) and
  random as in the curriculum.
"""


def write(summary: dict[str, Any], out: str | Path) -> Path:
    """Writes the report, its figure and the summary JSON (in the folder named after `out`)."""
    out = Path(out)
    folder = out.with_suffix("")
    figure.removal_curves(summary, folder / FIGURE)
    atomic.write_json(folder / "summary.json", summary)
    text = render(summary, f"{folder.name}/{FIGURE}")
    atomic.write_text(out, text)
    return out
