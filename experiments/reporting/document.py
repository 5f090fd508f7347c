"""REPORT.md: the tables, score analyses and figures of a workdir's finished runs, in one file.

`build_report` reads the workdir (`reporting.loading`), draws the figures (`reporting.plots`)
into a temporary folder, and swaps in the figures and the markdown only once both are complete.
Missing pieces (a method not yet run, no LiSSA scores, an unreadable result or score file) are
skipped with a note, so a partial sweep already gives a report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments import summary
from experiments.layout import Layout
from experiments.reporting import breakdown, loading, paper, plots, tables
from experiments.reporting.loading import Runs
from gf_jax import atomic
from gf_jax.config import Preset
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet

FIGURES = "figures"  # the figures' folder inside the report folder


def run_sections(runs: Runs, baselines: tables.Baselines) -> list[str]:
    """The paper's table on val and test, and every configuration."""
    md = ["", "## The paper's table: best-epoch validation metrics", ""]
    md.append(tables.paper_table(runs, "val", baselines=baselines))
    md += [
        "",
        "p and d_z: paired t-test over common seeds of TracIn vs the method (plan ADE); "
        "d_z < 0 means TracIn is lower (better). ± is the SD with ddof 0, as the paper."
        + (" Rows in parentheses are the non-learned baselines." if baselines else ""),
        "",
    ]
    md += ["## The same on the test split (at the best-validation epoch)", ""]
    md.append(tables.paper_table(runs, "test", baselines=baselines))
    md += ["", "## Every seed (validation plan ADE)", ""]
    md.append(tables.seed_table(runs, "val", baselines=baselines))
    md += [
        "",
        "An asterisk marks a run no better than route following on the same scenarios "
        "(`gf_jax.baselines`); such a run has not learned to plan beyond the lane geometry.",
    ]
    if "route_following" in baselines:
        escape, rho, n = tables.escape_table(runs, baselines)
        md += ["", "## When each run left the plateau", "", escape, ""]
        rho_text = "n/a" if np.isnan(rho) else f"{rho:+.2f} over {n} runs"
        md.append(
            "The first epoch whose validation plan ADE is below route following's (- never). "
            f"Spearman rho between that epoch (a run that never got there ranked after the last "
            f"epoch) and the run's best plan ADE: {rho_text}."
        )
    md += ["", "## Against the paper (validation plan ADE)", ""]
    md.append(paper.paper_comparison_table(runs))
    md += [
        "",
        "Differences are paired by seed, in % of uniform's mean, with the paired t-test's p; the "
        "paper's from its released per-seed numbers. Unless this sweep trained the paper's model "
        "on nuPlan, the tasks differ: compare effects, not ADEs. Seeds for the paper's effect: how many "
        "seeds a paired t-test (alpha 0.05, power 0.8) would need here to detect the paper's "
        "relative difference from uniform, at this sweep's spread of the paired differences.",
    ]
    every = tables.configurations_table(runs, baselines) if runs else "_none_"
    md += ["", "## Every configuration", "", every, ""]
    if runs:
        md += ["## Where the time went (median per run)", "", tables.time_table(runs), ""]
        md.append(
            "Seconds of wall time from each run's epoch records. Epoch 1 extra: the first "
            "epoch's training time above the later epochs' (compiling, in a fresh process). "
            "Rest: checkpoints and the test evaluation. Score file: the reference run's scoring "
            "(shared by every run that reads it; measured once, as it was made)."
        )
        md.append("")
    return md


def score_sections(
    named: dict[str, np.ndarray], train: ScenarioSet, sources: dict[str, str]
) -> list[str]:
    """Spearman matrix, label-noise AUROC, percentiles by scenario type and city."""
    five = {k: named[k] for k in tables.SCORE_ORDER if k in named}
    order = (*tables.SCORE_ORDER, *tables.TRACIN_VARIANTS)
    related = {k: named[k] for k in order if k in named}
    md = ["## Spearman rho between the scores", "", tables.spearman_table(related)]
    corrupted = np.asarray(train.meta["corrupted"], bool)
    md += [
        "",
        f"## Detecting the injected label noise ({int(corrupted.sum())} of {len(train)} "
        "training scenarios corrupted)",
        "",
    ]
    if corrupted.any() and not corrupted.all():
        md.append(tables.auroc_table(named, corrupted))
    else:
        md.append("_no corrupted scenarios in this training set_")
    md += ["", "## Mean score percentile by scenario type", ""]
    md.append(tables.by_group_table(five, np.asarray(train.meta["scenario_type"]), "scenario type"))
    md += ["", "## Mean score percentile by city", ""]
    md.append(tables.by_group_table(five, np.asarray(train.meta["city"]), "city"))
    return [*md, "", "Score files: " + ", ".join(f"{k} `{v}`" for k, v in sources.items()), ""]


def breakdown_sections(layout: Layout, runs: Runs, world: Preset | None) -> list[str]:
    """Validation plan and prediction ADE by scenario type and plan ADE by city, the paper's
    methods side by side, from the runs' breakdown.json files (none yet: no section)."""
    found = breakdown.load(layout, runs)
    if not found or world is None:
        return []
    splits = {
        s: store.load_split(world.data, s, root=layout.data, progress=False)
        for s in breakdown.SPLITS
    }
    base = breakdown.baseline_breakdown(splits, world.model.neighbors)
    methods = tuple(m for m in tables.PAPER_METHODS if m in found)
    route = {"route_following": base["route_following"]}
    md = ["## Validation plan ADE by scenario type (mean over seeds)", ""]
    md += [breakdown.breakdown_table(found, route, methods), ""]
    md += ["## Validation prediction ADE by scenario type (mean over seeds)", ""]
    md += [breakdown.breakdown_table(found, {"cv_neighbours": base["constant_velocity"]},
                                     methods, key="pred_ade"), ""]  # fmt: skip
    md += ["## Validation plan ADE by city (mean over seeds)", ""]
    md += [breakdown.breakdown_table(found, route, methods, kind="city"), ""]
    md.append(
        "From each run's `breakdown.json` (`experiments/breakdown.py`: its best checkpoint "
        "evaluated per example, grouped); n = seeds with one. Rows in parentheses: the "
        "non-learned planners on the same scenarios (cv neighbours: the neighbours' "
        "constant-velocity prediction)."
    )
    return [*md, ""]


def figure_section(made: list[tuple[str, Path]], folder: Path) -> list[str]:
    """Links to the figures drawn into `folder` (which becomes `out/figures`)."""
    md = ["## Figures", ""] if made else []
    for title, path in made:
        if path.suffix == ".gif":
            title += " (animated)"
        md += [f"### {title}", "", f"![{title}]({FIGURES}/{path.relative_to(folder)})", ""]
    return md


def closing_sections(out: Path, notes: list[str]) -> list[str]:
    """The link to the theory checks (when measured) and the notes."""
    md = []
    if (out / "theory" / "THEORY.md").is_file():
        md += [
            "## Theory checks",
            "",
            "Measured by `experiments/theory.py`: [theory/THEORY.md](theory/THEORY.md).",
            "",
        ]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return md


def load_reference(
    layout: Layout, preset: Preset | None, runs: Runs, data: str | None, notes: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, ScenarioSet] | None]:
    """The scores and the train/val splits of the reference run's world (empty without one)."""
    if preset is None:
        notes.append("no reference run: score tables and score figures skipped")
        return {}, {}, None
    named, sources = loading.load_scores(layout, preset, runs, data, notes)
    if not named:
        notes.append("no score files for the reference run yet")
    splits = {
        s: store.load_split(preset.data, s, root=layout.data, progress=False)
        for s in ("train", "val")
    }
    n = len(splits["train"])
    for k in [k for k, v in named.items() if len(v) != n]:  # a stale file: never misalign
        loading.warn(f"skipped {k} scores of {sources.pop(k)}: not one per training example", notes)
        del named[k]
    return named, sources, splits


def build_report(layout: Layout, out: Path, data: str | None = None) -> Path:
    """Writes `out/REPORT.md` and `out/figures`; returns the REPORT.md path.

    The figures are drawn into a temporary folder that replaces `out/figures` only once the
    whole report is built, so a report that fails half way leaves the previous one intact and
    no partial figures."""
    notes: list[str] = []
    runs = loading.load_runs(layout, notes)
    preset = loading.reference_preset(layout, data, notes)
    named, sources, splits = load_reference(layout, preset, runs, data, notes)
    world = loading.world_preset(layout, runs, data)
    baselines = summary.baseline_metrics(world, layout) if world is not None else {}
    with atomic.directory(out / FIGURES) as folder:
        made = plots.make_figures(folder, runs, named, preset, splits, layout, notes)
        md = [
            "# gf-jax report",
            "",
            f"Workdir `{layout.root}`; preset `{preset.name if preset else '?'}`; "
            f"{sum(len(v) for v in runs.values())} finished runs in {len(runs)} configurations.",
        ]
        md += run_sections(runs, baselines) + breakdown_sections(layout, runs, world)
        if named and splits is not None:
            md += score_sections(named, splits["train"], sources)
        md += figure_section(made, folder) + closing_sections(out, notes)
        text = "\n".join(md)
    return atomic.write_text(out / "REPORT.md", text)
