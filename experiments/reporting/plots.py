"""The report's figures (PNG) and animations (GIF): every one the loaded runs and scores allow.

`make_figures` draws the score figures, the scenario and curriculum figures (they need the
training split), the training races and the prediction comparison; a figure that fails is
listed in the report's notes, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from curriculum import schedule
from experiments import figures, stats
from experiments.layout import Layout
from experiments.reporting.loading import Runs
from experiments.reporting.tables import LABELS, METRICS, PAPER_METHODS, SCORE_ORDER
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet


class FigureSet:
    """The figures made so far (title, path) and the notes on those that failed."""

    def __init__(self, folder: Path, notes: list[str]) -> None:
        self.folder = folder
        self.notes = notes
        self.made: list[tuple[str, Path]] = []

    def add(self, title: str, draw: Callable[[], Any]) -> None:
        """Calls `draw` (returns a path or a list of paths); a failure becomes a note."""
        try:
            paths = draw()
        except Exception as e:  # a report with one figure missing beats no report
            self.notes.append(f"figure '{title}' skipped: {type(e).__name__}: {e}")
            return
        for p in paths if isinstance(paths, list) else [paths]:
            self.made.append((title, Path(p)))


def plans_of(run_dir: Path, scenarios: ScenarioSet, preset: Preset) -> np.ndarray:
    """The best checkpoint's ego plan [N, T, 3] on `scenarios` (eval mode)."""
    from gf_jax import checkpoint, model

    params = checkpoint.CheckpointStore(run_dir / "checkpoints").params("best")
    out = model.apply(params, scenarios.batch(preset.model.neighbors), preset.model)
    return np.asarray(out["ego_plan"])


def showcase(val: ScenarioSet, k: int) -> np.ndarray:
    """k validation scenarios with a moving ego and busy scenes (most neighbours), reproducibly."""
    fut = np.asarray(val.arrays["ego_agent_future"])
    travel_N = np.linalg.norm(fut[:, -1, :2], axis=-1)
    past = np.asarray(val.arrays["neighbor_agents_past"])
    busy_N = (np.abs(past[:, :, -1, :2]).sum(-1) > 0).sum(1)
    moving = np.flatnonzero(travel_N > 10.0)
    pool = moving if len(moving) >= k else np.arange(len(val))
    return np.sort(pool[np.argsort(-busy_N[pool], kind="stable")[:k]])


# ----------------------------------------------------------------------------- by subject


def score_figures(figs: FigureSet, named: dict[str, np.ndarray]) -> None:
    """Distribution of TracIn, TracIn vs metadata, the Spearman matrix, top-10 ranks."""
    d, t = figs.folder, named["tracin"]
    figs.add(
        "TracIn score distribution",
        lambda: figures.score_distribution(t, d / "tracin_distribution.png"),
    )
    if "metadata" in named:
        figs.add(
            "TracIn vs metadata",
            lambda: figures.score_scatter(t, named["metadata"], d / "tracin_vs_metadata.png"),
        )
    five = {k: named[k] for k in SCORE_ORDER if k in named}
    names, rho = stats.spearman_matrix(five)
    figs.add("Spearman matrix", lambda: figures.spearman_heatmap(names, rho, d / "spearman.png"))
    figs.add(
        "Top-10 TracIn ranked by the others",
        lambda: figures.top_ranked(five, d / "top10_tracin.png"),
    )


def scenario_figures(figs: FigureSet, named: dict[str, np.ndarray], train: ScenarioSet) -> None:
    """Scenarios by quadrant and tier, composition by city, interaction types, difficulty."""
    from valuation import metadata

    d, t = figs.folder, named["tracin"]
    if "metadata" in named:
        q = figures.quadrant_groups(t, named["metadata"], per_group=3)
        figs.add(
            "Scenarios from the four TracIn/metadata quadrants",
            lambda: figures.scenario_grid(
                train, q, d / "quadrant_scenarios.png", colors=figures.QUADRANT_COLORS
            ),
        )
        figs.add(
            "Dataset composition and difficulty by city",
            lambda: figures.composition_by_city(
                train.meta["city"],
                train.meta["scenario_type"],
                named["metadata"],
                d / "composition_by_city.png",
            ),
        )
    tiers = figures.tier_groups(t, per_group=3)
    figs.add(
        "Scenarios by TracIn percentile tier",
        lambda: figures.scenario_grid(
            train, tiers, d / "tier_scenarios.png", colors=figures.TIER_COLORS
        ),
    )
    figs.add(
        "Six interaction types",
        lambda: figures.interaction_types(train, d / "interaction_types.png"),
    )
    feats = metadata.features(train)
    figs.add(
        "Difficulty metrics by TracIn tier",
        lambda: figures.difficulty_radar(feats, metadata.tiers(t), d / "difficulty_radar.png"),
    )


def curriculum_figures(figs: FigureSet, tracin_N: np.ndarray, preset: Preset) -> None:
    """The TracIn curriculum's weights per epoch, paper and code mode."""
    for mode, suffix in (("paper", ""), ("code", "_code")):
        cfg = schedule.ScheduleConfig(mode=mode, epochs=preset.train.epochs)
        figs.add(
            f"Curriculum weights ({mode} mode, TracIn)",
            lambda cfg=cfg, suffix=suffix: figures.curriculum_weights(
                schedule.weight_matrix(cfg, tracin_N),
                tracin_N,
                figs.folder / f"curriculum_weights{suffix}.png",
                title=f"{cfg.mode} mode",
            ),
        )


def same_length(seeds: dict[int, dict]) -> bool:
    """True when every seed's history has as many epochs (so they average per epoch)."""
    return len({len(r["history"]) for r in seeds.values()}) == 1


def training_figures(figs: FigureSet, runs: Runs) -> None:
    """Training races (the paper's methods, every configuration) and the dot-and-whisker."""
    d = figs.folder
    curves = {
        n: np.array([[h["val_plan_ade"] for h in r["history"]] for r in rs.values()])
        for n, rs in runs.items()
        if same_length(rs)
    }
    mean = {n: c.mean(0) for n, c in curves.items()}
    sd = {n: c.std(0) for n, c in curves.items()}
    main = [n for n in PAPER_METHODS if n in mean]
    figs.add(
        "Training race: the paper's methods (validation ADE per epoch)",
        lambda: figures.training_race(
            {n: mean[n] for n in main},
            d / "training_race.png",
            d / "training_race.gif",
            bands={n: sd[n] for n in main},
        ),
    )
    if set(mean) - set(main):
        figs.add(
            "Training race: every configuration",
            lambda: figures.training_race(
                mean, d / "training_race_all.png", d / "training_race_all.gif"
            ),
        )
    paper = {
        m: {LABELS[k]: [runs[m][s][k] for s in sorted(runs[m])] for k in METRICS}
        for m in PAPER_METHODS
        if m in runs
    }
    if paper:
        figs.add(
            "Methods across metrics (validation)",
            lambda: figures.dot_whisker(paper, d / "dot_whisker.png"),
        )


def prediction_figure(
    figs: FigureSet, runs: Runs, val: ScenarioSet, preset: Preset, layout: Layout
) -> None:
    """Uniform's and TracIn's plans on the same validation scenarios (first common seed)."""
    common = sorted(set(runs["uniform"]) & set(runs["tracin"]))
    if not common:
        return
    s = common[0]
    idx = showcase(val, 4)
    sub = val.subset(idx)
    figs.add(
        "Uniform vs TracIn curriculum on the same validation scenarios",
        lambda: figures.prediction_comparison(
            sub,
            list(range(len(idx))),
            {
                f"{m} (seed {s})": plans_of(layout.run(m, s), sub, preset)
                for m in ("uniform", "tracin")
            },
            figs.folder / "predictions.png",
            figs.folder / "predictions.gif",
        ),
    )


# ----------------------------------------------------------------------------- all


def make_figures(
    folder: Path,
    runs: Runs,
    named: dict[str, np.ndarray],
    preset: Preset | None,
    splits: dict[str, ScenarioSet] | None,
    layout: Layout,
    notes: list[str],
) -> list[tuple[str, Path]]:
    """Every figure the data allows, drawn into `folder`, as (title, path) in report order."""
    figs = FigureSet(folder, notes)
    if "tracin" in named:
        score_figures(figs, named)
        if splits is not None:
            scenario_figures(figs, named, splits["train"])
            if preset is not None:
                curriculum_figures(figs, named["tracin"], preset)
    if runs:
        training_figures(figs, runs)
    if splits is not None and preset is not None and "uniform" in runs and "tracin" in runs:
        prediction_figure(figs, runs, splits["val"], preset, layout)
    return figs.made
