"""Tables, statistics, figures and animations from the finished runs of a workdir.

    python experiments/report.py [--workdir runs] [--out runs/report] [--data SRC]

Writes `OUT/REPORT.md` with
  - the paper's table on validation (best epoch) and on test (at the best-validation epoch): plan
    ADE/FDE/AHE mean ± SD (ddof 0), CV of ADE, and TracIn's paired t-test p and Cohen's d_z
    against every other method (paired by seed);
  - every configuration of the sweep (ablations included) against uniform;
  - the Spearman matrix of the five scores, the AUROC of each score for detecting the injected
    corrupted scenarios, and mean score percentiles by scenario type and by city;
and every figure (PNG) and animation (GIF) of the paper next to it. Missing pieces (a method not
yet run, no LiSSA scores) are skipped with a note, so a partial sweep already gives a report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from curriculum import schedule
from experiments import figures, stats
from experiments import run as run_lib
from experiments import sweep as sweep_lib
from gf_jax import atomic
from gf_jax.config import DataConfig, ModelConfig, Preset, TrainConfig
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet
from valuation.scores import percentile_rank

PAPER_METHODS = sweep_lib.MAIN
METRICS = ("plan_ade", "plan_fde", "plan_ahe")
LABELS = {"plan_ade": "Plan ADE (m)", "plan_fde": "Plan FDE (m)", "plan_ahe": "Plan AHE (rad)"}
SCORE_ORDER = ("tracin", "metadata", "hybrid", "loss", "lissa")


# ----------------------------------------------------------------------------- loading


def load_runs(workdir: Path) -> dict[str, dict[int, dict]]:
    """{run name: {seed: result}} of every finished run (reference runs excluded)."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(workdir.glob("*/seed*/result.json")):
        name = path.parent.parent.name
        if name.startswith("reference"):
            continue
        seed = int(path.parent.name.removeprefix("seed"))
        runs.setdefault(name, {})[seed] = json.loads(path.read_text())
    return runs


def preset_from_dict(d: dict) -> Preset:
    """The Preset saved in a run's config.json."""

    def build(cls, values):
        kw = {}
        for f in dataclasses.fields(cls):
            v = values[f.name]
            if isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kw[f.name] = v
        return cls(**kw)

    return Preset(
        d["name"],
        build(ModelConfig, d["model"]),
        build(DataConfig, d["data"]),
        build(TrainConfig, d["train"]),
    )


def run_preset(run_dir: Path) -> Preset:
    """The resolved preset a run saved in its config.json."""
    return preset_from_dict(json.loads((run_dir / "config.json").read_text())["preset"])


def reference_preset(workdir: Path, data: str | None = None) -> Preset | None:
    """The preset of the workdir's main reference run (`reference/seed0`, or the folder run.py
    uses for `--data`), None if not trained."""
    args = run_lib.parser().parse_args(["--method", "uniform", *(["--data", data] if data else [])])
    ref = workdir / run_lib.reference_folder(args) / f"seed{run_lib.REFERENCE_SEED}"
    return run_preset(ref) if (ref / "config.json").exists() else None


def load_scores(workdir: Path, preset: Preset) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The scores of the default-option file, the LiSSA file and the TracIn variants' files, as
    {score name: [N]}, plus {score name: source file} for the report."""
    from valuation import scores

    named: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    variants = {
        "": [],
        "lissa": ["--method", "lissa"],
        "tracin_best": sweep_lib.ABLATIONS["tracin-ckpt-best"],
        "tracin_dropout": sweep_lib.ABLATIONS["tracin-dropout"],
    }
    for label, argv in variants.items():
        args = run_lib.parser().parse_args(argv or ["--method", "tracin"])
        path, _ = run_lib.score_cache(args, preset, workdir)
        if not path.exists():
            continue
        got, _ = scores.load_scores(path)
        if label == "":
            for k, v in got.items():
                if k != "token":
                    named[k], source[k] = v, path.name
        elif label == "lissa":
            named["lissa"], source["lissa"] = got["lissa"], path.name
        else:
            named[label], source[label] = got["tracin"], path.name
    return named, source


# ----------------------------------------------------------------------------- tables


def _metric(result: dict, key: str, split: str) -> float:
    return float(result[key] if split == "val" else result.get("test", {}).get(key, np.nan))


def paper_table(runs: dict, split: str, methods=PAPER_METHODS, ref: str = "tracin") -> str:
    rows = []
    for m in methods:
        if m not in runs:
            continue
        seeds = sorted(runs[m])
        row: dict[str, Any] = {"method": m, "seeds": len(seeds)}
        for key in METRICS:
            vals = [_metric(runs[m][s], key, split) for s in seeds]
            row[LABELS[key]] = stats.format_mean_sd(vals)
        ade = [_metric(runs[m][s], "plan_ade", split) for s in seeds]
        row["CV (ADE)"] = f"{100 * stats.summarize(ade)['cv']:.1f} %"
        row[f"p vs {ref}"], row[f"d_z vs {ref}"] = _paired(runs, ref, m, split)
        rows.append(row)
    if not rows:
        return "_no finished runs of the paper's methods yet_\n"
    cols = ["method", "seeds", *(LABELS[k] for k in METRICS), "CV (ADE)"]
    cols += [f"p vs {ref}", f"d_z vs {ref}"]
    return stats.markdown_table(rows, cols)


def _paired(runs: dict, a: str, b: str, split: str, key: str = "plan_ade") -> tuple[str, str]:
    if a == b or a not in runs or b not in runs:
        return "", ""
    common = sorted(set(runs[a]) & set(runs[b]))
    if len(common) < 2:
        return "n<2", "n<2"
    t = stats.paired_test(
        [_metric(runs[a][s], key, split) for s in common],
        [_metric(runs[b][s], key, split) for s in common],
    )
    n = f" (n={len(common)})"
    return f"{t['p']:.3g}{n}", f"{t['dz']:.2f}{n}"


def baseline_of(name: str) -> str:
    """The uniform run a configuration is compared with: the one trained on the same world
    (`tracin-noise0` against `uniform-noise0`)."""
    noise = re.search(r"-noise[0-9.]+$", name)
    return "uniform" + (noise.group(0) if noise else "")


def configurations_table(runs: dict) -> str:
    rows = []
    for name in sorted(runs, key=lambda n: (n not in PAPER_METHODS, n)):
        seeds = sorted(runs[name])
        val = [runs[name][s]["plan_ade"] for s in seeds]
        test = [_metric(runs[name][s], "plan_ade", "test") for s in seeds]
        row = {
            "configuration": name,
            "seeds": ",".join(map(str, seeds)),
            "val plan ADE": stats.format_mean_sd(val),
            "test plan ADE": stats.format_mean_sd(test),
            "best epoch": f"{np.mean([runs[name][s]['best_epoch'] for s in seeds]):.1f}",
        }
        base = baseline_of(name)
        common = sorted(set(seeds) & set(runs.get(base, {})))
        if name != base and common:
            diff = [runs[name][s]["plan_ade"] - runs[base][s]["plan_ade"] for s in common]
            row["Δ val ADE vs uniform (paired)"] = f"{np.mean(diff):+.3f} (n={len(common)})"
            if base != "uniform":
                row["Δ val ADE vs uniform (paired)"] += f" vs {base}"
        mass = [runs[name][s].get("corrupted_mass", [np.nan])[-1] for s in seeds]
        row["corrupted share, last epoch"] = f"{100 * np.nanmean(mass):.1f} %"
        rows.append(row)
    cols = ["configuration", "seeds", "val plan ADE", "test plan ADE", "best epoch"]
    cols += ["Δ val ADE vs uniform (paired)", "corrupted share, last epoch"]
    return stats.markdown_table(rows, cols)


def auroc_table(named: dict[str, np.ndarray], corrupted_N: np.ndarray) -> str:
    """AUROC of each score for the corrupted examples, both ways round: a low TracIn should mark a
    harmful example, a high loss a suspect one, and metadata may go either way."""
    rows = []
    for name, s in named.items():
        low = stats.auroc(s, corrupted_N, low_is_positive=True)
        rows.append(
            {
                "score": name,
                "AUROC (low score = corrupted)": f"{low:.3f}",
                "AUROC (high score = corrupted)": f"{1.0 - low:.3f}",
                "mean pct (corrupted)": f"{100 * percentile_rank(s)[corrupted_N].mean():.1f}",
                "mean pct (clean)": f"{100 * percentile_rank(s)[~corrupted_N].mean():.1f}",
            }
        )
    cols = ["score", "AUROC (low score = corrupted)", "AUROC (high score = corrupted)"]
    return stats.markdown_table(rows, [*cols, "mean pct (corrupted)", "mean pct (clean)"])


def by_group_table(named: dict[str, np.ndarray], group_N: np.ndarray, label: str) -> str:
    """Mean percentile rank (0-100) of each score within each group, and the group's size."""
    rows = []
    for g in sorted(set(group_N.tolist())):
        m = group_N == g
        row: dict[str, Any] = {label: g, "n": int(m.sum())}
        row.update({k: f"{100 * percentile_rank(s)[m].mean():.1f}" for k, s in named.items()})
        rows.append(row)
    return stats.markdown_table(rows, [label, "n", *named])


# ----------------------------------------------------------------------------- figures


def plans_of(run_dir: Path, scenarios: ScenarioSet, preset: Preset) -> np.ndarray:
    """The best checkpoint's ego plan [N, T, 3] on `scenarios` (eval mode)."""
    from gf_jax import checkpoint, model

    params = checkpoint.CheckpointStore(run_dir / "checkpoints").params("best")
    out = model.apply(params, scenarios.batch(preset.model.neighbors), preset.model)
    return np.asarray(out["ego_plan"])


def make_figures(
    out: Path,
    runs: dict,
    named: dict[str, np.ndarray],
    preset: Preset | None,
    splits: dict[str, ScenarioSet] | None,
    workdir: Path,
    notes: list[str],
) -> list[tuple[str, Path]]:
    """Every figure the data allows; a figure that fails is noted, not fatal."""
    made: list[tuple[str, Path]] = []
    fig_dir = out / "figures"

    def add(title: str, fn: Callable[[], Any]) -> None:
        try:
            paths = fn()
        except Exception as e:  # a report with one figure missing beats no report
            notes.append(f"figure '{title}' skipped: {type(e).__name__}: {e}")
            return
        for p in paths if isinstance(paths, list) else [paths]:
            made.append((title, Path(p)))

    if "tracin" in named:
        t = named["tracin"]
        add(
            "TracIn score distribution",
            lambda: figures.score_distribution(t, fig_dir / "tracin_distribution.png"),
        )
        if "metadata" in named:
            add(
                "TracIn vs metadata",
                lambda: figures.score_scatter(
                    t, named["metadata"], fig_dir / "tracin_vs_metadata.png"
                ),
            )
        five = {k: named[k] for k in SCORE_ORDER if k in named}
        names, rho = stats.spearman_matrix(five)
        add(
            "Spearman matrix",
            lambda: figures.spearman_heatmap(names, rho, fig_dir / "spearman.png"),
        )
        add(
            "Top-10 TracIn ranked by the others",
            lambda: figures.top_ranked(five, fig_dir / "top10_tracin.png"),
        )
    if splits is not None and "tracin" in named:
        tr = splits["train"]
        t = named["tracin"]
        from valuation import metadata

        if "metadata" in named:
            q = figures.quadrant_groups(t, named["metadata"], per_group=3)
            add(
                "Scenarios from the four TracIn/metadata quadrants",
                lambda: figures.scenario_grid(
                    tr, q, fig_dir / "quadrant_scenarios.png", colors=figures.QUADRANT_COLORS
                ),
            )
            add(
                "Dataset composition and difficulty by city",
                lambda: figures.composition_by_city(
                    tr.meta["city"],
                    tr.meta["scenario_type"],
                    named["metadata"],
                    fig_dir / "composition_by_city.png",
                ),
            )
        tiers = figures.tier_groups(t, per_group=3)
        add(
            "Scenarios by TracIn percentile tier",
            lambda: figures.scenario_grid(
                tr, tiers, fig_dir / "tier_scenarios.png", colors=figures.TIER_COLORS
            ),
        )
        add(
            "Six interaction types",
            lambda: figures.interaction_types(tr, fig_dir / "interaction_types.png"),
        )
        feats = metadata.features(tr)
        add(
            "Difficulty metrics by TracIn tier",
            lambda: figures.difficulty_radar(
                feats, metadata.tiers(t), fig_dir / "difficulty_radar.png"
            ),
        )
        if preset is not None:
            for mode, suffix in (("paper", ""), ("code", "_code")):
                cfg = schedule.ScheduleConfig(mode=mode, epochs=preset.train.epochs)
                add(
                    f"Curriculum weights ({mode} mode, TracIn)",
                    lambda cfg=cfg, suffix=suffix: figures.curriculum_weights(
                        schedule.weight_matrix(cfg, t),
                        t,
                        fig_dir / f"curriculum_weights{suffix}.png",
                        title=f"{cfg.mode} mode",
                    ),
                )
    if runs:
        curves = {
            n: np.array([[h["val_plan_ade"] for h in r["history"]] for r in rs.values()])
            for n, rs in runs.items()
            if _same_length(rs)
        }
        hist = {n: c.mean(0) for n, c in curves.items()}
        sd = {n: c.std(0) for n, c in curves.items()}
        main = [n for n in PAPER_METHODS if n in hist]
        add(
            "Training race: the paper's methods (validation ADE per epoch)",
            lambda: figures.training_race(
                {n: hist[n] for n in main},
                fig_dir / "training_race.png",
                fig_dir / "training_race.gif",
                bands={n: sd[n] for n in main},
            ),
        )
        if set(hist) - set(main):
            add(
                "Training race: every configuration",
                lambda: figures.training_race(
                    hist, fig_dir / "training_race_all.png", fig_dir / "training_race_all.gif"
                ),
            )
        paper = {
            m: {LABELS[k]: [runs[m][s][k] for s in sorted(runs[m])] for k in METRICS}
            for m in PAPER_METHODS
            if m in runs
        }
        if paper:
            add(
                "Methods across metrics (validation)",
                lambda: figures.dot_whisker(paper, fig_dir / "dot_whisker.png"),
            )
    if splits is not None and preset is not None and "uniform" in runs and "tracin" in runs:
        common = sorted(set(runs["uniform"]) & set(runs["tracin"]))
        if common:
            s = common[0]
            val = splits["val"]
            idx = _showcase(val, 4)
            sub = val.subset(idx)
            add(
                "Uniform vs TracIn curriculum on the same validation scenarios",
                lambda: figures.prediction_comparison(
                    sub,
                    list(range(len(idx))),
                    {
                        f"{m} (seed {s})": plans_of(workdir / m / f"seed{s}", sub, preset)
                        for m in ("uniform", "tracin")
                    },
                    fig_dir / "predictions.png",
                    fig_dir / "predictions.gif",
                ),
            )
    return made


def _same_length(rs: dict) -> bool:
    return len({len(r["history"]) for r in rs.values()}) == 1


def _showcase(val: ScenarioSet, k: int) -> np.ndarray:
    """k validation scenarios with a moving ego and busy scenes (most neighbours), reproducibly."""
    fut = np.asarray(val.arrays["ego_agent_future"])
    travel = np.linalg.norm(fut[:, -1, :2], axis=-1)
    busy = (np.abs(np.asarray(val.arrays["neighbor_agents_past"])[:, :, -1, :2]).sum(-1) > 0).sum(1)
    moving = np.flatnonzero(travel > 10.0)
    pool = moving if len(moving) >= k else np.arange(len(val))
    return np.sort(pool[np.argsort(-busy[pool], kind="stable")[:k]])


# ----------------------------------------------------------------------------- main


def build_report(workdir: Path, out: Path, data: str | None = None) -> Path:
    runs = load_runs(workdir)
    preset = reference_preset(workdir, data)
    notes: list[str] = []
    named: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    splits = None
    if preset is None:
        notes.append("no reference run: score tables and score figures skipped")
    else:
        named, sources = load_scores(workdir, preset)
        if not named:
            notes.append("no score files for the reference run yet")
        splits = {
            s: store.load_split(preset.data, s, root=workdir / "data") for s in ("train", "val")
        }
    made = make_figures(out, runs, named, preset, splits, workdir, notes)

    md = ["# gf-jax report", ""]
    md.append(
        f"Workdir `{workdir}`; preset `{preset.name if preset else '?'}`; "
        f"{sum(len(v) for v in runs.values())} finished runs in {len(runs)} configurations."
    )
    md += ["", "## The paper's table: best-epoch validation metrics", ""]
    md.append(paper_table(runs, "val"))
    md += [
        "",
        "p and d_z: paired t-test over common seeds of TracIn vs the method (plan ADE); "
        "d_z < 0 means TracIn is lower (better). ± is the SD with ddof 0, as the paper.",
        "",
    ]
    md += ["## The same on the test split (at the best-validation epoch)", ""]
    md.append(paper_table(runs, "test"))
    md += ["", "## Every configuration", "", configurations_table(runs) if runs else "_none_", ""]
    if named and splits is not None:
        tr = splits["train"]
        five = {k: named[k] for k in SCORE_ORDER if k in named}
        names, rho = stats.spearman_matrix(five)
        rows = [
            {"score": a, **{b: f"{rho[i, j]:+.3f}" for j, b in enumerate(names)}}
            for i, a in enumerate(names)
        ]
        md += [
            "## Spearman rho between the scores",
            "",
            stats.markdown_table(rows, ["score", *names]),
        ]
        corrupted = np.asarray(tr.meta["corrupted"], bool)
        md += [
            "",
            f"## Detecting the injected label noise ({int(corrupted.sum())} of {len(tr)} "
            "training scenarios corrupted)",
            "",
        ]
        if corrupted.any() and not corrupted.all():
            md.append(auroc_table(named, corrupted))
        else:
            md.append("_no corrupted scenarios in this training set_")
        md += ["", "## Mean score percentile by scenario type", ""]
        md.append(by_group_table(five, np.asarray(tr.meta["scenario_type"]), "scenario type"))
        md += ["", "## Mean score percentile by city", ""]
        md.append(by_group_table(five, np.asarray(tr.meta["city"]), "city"))
        md += ["", "Score files: " + ", ".join(f"{k} `{v}`" for k, v in sources.items()), ""]
    if made:
        md += ["## Figures", ""]
        for title, path in made:
            rel = path.relative_to(out)
            if path.suffix == ".gif":
                title += " (animated)"
            md += [f"### {title}", "", f"![{title}]({rel})", ""]
    if (out / "theory" / "THEORY.md").is_file():
        md += [
            "## Theory checks",
            "",
            "Measured by `experiments/theory.py`: [theory/THEORY.md](theory/THEORY.md).",
            "",
        ]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return atomic.write_text(out / "REPORT.md", "\n".join(md))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/report.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", default="runs", help="the sweep's workdir")
    p.add_argument("--out", default=None, help="default: WORKDIR/report")
    p.add_argument("--data", default=None, help="the sweep's --data, if it had one")
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    if not workdir.is_dir():
        print(f"error: {workdir}: no such workdir", file=sys.stderr)
        return 1
    path = build_report(workdir, Path(args.out) if args.out else workdir / "report", args.data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
