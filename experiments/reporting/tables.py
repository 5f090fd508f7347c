"""The report's markdown tables, from loaded runs and scores (no file access here).

- `paper_table`: the paper's five methods on one split: plan ADE/FDE/AHE mean ± SD (ddof 0), CV
  of ADE, TracIn's paired t-test p and Cohen's d_z against each method (paired by seed);
- `seed_table`: every seed's plan ADE, marking runs no better than route following;
- `escape_table`: the epoch each run first planned better than route following;
- `configurations_table`: every configuration against the uniform run of its own world, with
  the prediction ADE beside the plan's (the neighbours' constant-velocity baseline row);
- `time_table`: where a run's wall time goes (training, first-epoch extra, evaluation, the rest,
  scoring), from each run's saved epoch records;
- `spearman_table`, `auroc_table`, `by_group_table`: how the scores relate to each other, to
  the injected label noise, and to scenario types and cities.

The non-learned baselines (`gf_jax.baselines`) appear as reference rows in the run tables, in
the shape `summary.baseline_metrics` gives: {baseline: {split: {metric: value}}}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments import stats
from experiments.configurations import MAIN
from experiments.reporting.loading import Runs, run_config
from experiments.runconfig import RunConfig
from valuation.scores import percentile_rank

PAPER_METHODS = MAIN
METRICS = ("plan_ade", "plan_fde", "plan_ahe")
LABELS = {"plan_ade": "Plan ADE (m)", "plan_fde": "Plan FDE (m)", "plan_ahe": "Plan AHE (rad)"}
SCORE_ORDER = ("tracin", "metadata", "hybrid", "loss", "lissa")
# TracIn computed another way (ablations); only the Spearman table shows them, beside the others.
TRACIN_VARIANTS = ("tracin_best", "tracin_dropout")
DELTA = "Δ val ADE vs uniform (paired)"
Baselines = Mapping[str, Mapping[str, Mapping[str, float]]]


def metric(result: dict, key: str, split: str) -> float:
    """A result's metric on `val` (best epoch) or `test` (NaN when the run has no test metrics)."""
    return float(result[key] if split == "val" else result.get("test", {}).get(key, np.nan))


def baseline_label(name: str) -> str:
    """`constant_velocity` -> `(constant velocity)`: parenthesised, so it never reads as a run."""
    return f"({name.replace('_', ' ')})"


# ----------------------------------------------------------------------------- the paper's table


def paired(runs: Runs, a: str, b: str, split: str, key: str = "plan_ade") -> tuple[str, str]:
    """(p, d_z) cells of the paired t-test of `a` vs `b` over their common seeds."""
    if a == b or a not in runs or b not in runs:
        return "", ""
    common = sorted(set(runs[a]) & set(runs[b]))
    if len(common) < 2:
        return "n<2", "n<2"
    t = stats.paired_test(
        [metric(runs[a][s], key, split) for s in common],
        [metric(runs[b][s], key, split) for s in common],
    )
    n = f" (n={len(common)})"
    return f"{t['p']:.3g}{n}", f"{t['dz']:.2f}{n}"


def paper_row(runs: Runs, method: str, split: str, ref: str) -> dict[str, Any]:
    seeds = sorted(runs[method])
    row: dict[str, Any] = {"method": method, "seeds": len(seeds)}
    for key in METRICS:
        row[LABELS[key]] = stats.format_mean_sd(
            [metric(runs[method][s], key, split) for s in seeds]
        )
    ade = [metric(runs[method][s], "plan_ade", split) for s in seeds]
    row["CV (ADE)"] = f"{100 * stats.summarize(ade)['cv']:.1f} %"
    row[f"p vs {ref}"], row[f"d_z vs {ref}"] = paired(runs, ref, method, split)
    return row


def paper_table(
    runs: Runs,
    split: str,
    methods: Sequence[str] = PAPER_METHODS,
    ref: str = "tracin",
    baselines: Baselines | None = None,
) -> str:
    """The paper's table on `split` (`val` or `test`), then each baseline's metrics on it."""
    rows = [paper_row(runs, m, split, ref) for m in methods if m in runs]
    if not rows:
        return "_no finished runs of the paper's methods yet_\n"
    for name, by_split in (baselines or {}).items():
        values = by_split.get(split, {})
        row = {"method": baseline_label(name)}
        row.update({LABELS[k]: f"{values[k]:.3f}" for k in METRICS if k in values})
        rows.append(row)
    cols = ["method", "seeds", *(LABELS[k] for k in METRICS), "CV (ADE)"]
    cols += [f"p vs {ref}", f"d_z vs {ref}"]
    return stats.markdown_table(rows, cols)


def seed_table(
    runs: Runs,
    split: str,
    methods: Sequence[str] = PAPER_METHODS,
    baselines: Baselines | None = None,
    against: str = "route_following",
) -> str:
    """Plan ADE of every seed of the paper's methods on `split`; a cell no better than the
    non-learned `against` baseline is marked with *, and the last column counts the seeds that
    beat it (a comparison among planners that do not beat it says nothing)."""
    present = [m for m in methods if m in runs]
    if not present:
        return "_no finished runs of the paper's methods yet_\n"
    seeds = sorted({s for m in present for s in runs[m]})
    bar = (baselines or {}).get(against, {}).get(split, {}).get("plan_ade")
    rows = []
    for m in present:
        row: dict[str, Any] = {"method": m}
        for s in seeds:
            if s in runs[m]:
                value = metric(runs[m][s], "plan_ade", split)
                # NaN (a run without that split's metrics) is not a run that beat the baseline.
                row[f"seed {s}"] = f"{value:.3f}" + (
                    "*" if bar is not None and not value < bar else ""
                )
        if bar is not None:
            values = [metric(r, "plan_ade", split) for r in runs[m].values()]
            row[f"beat {baseline_label(against)}"] = f"{sum(v < bar for v in values)}/{len(values)}"
        rows.append(row)
    cols = ["method", *(f"seed {s}" for s in seeds)]
    cols += [f"beat {baseline_label(against)}"] if bar is not None else []
    return stats.markdown_table(rows, cols)


def first_epoch_below(result: dict, bar: float) -> int | None:
    """The first epoch (1-based) whose validation plan ADE is below `bar`; None if none is."""
    for record in result.get("history", []):
        if record.get("val_plan_ade", np.inf) < bar:
            return int(record["epoch"])
    return None


def escape_table(
    runs: Runs,
    baselines: Baselines,
    methods: Sequence[str] = PAPER_METHODS,
    against: str = "route_following",
) -> tuple[str, float, int]:
    """The epoch at which each run of the paper's methods first planned better than the `against`
    baseline on validation (when it left the loss plateau; "-" never), Spearman's rho between
    that epoch and the run's best plan ADE, and the runs it is over: every run with epoch
    records, one that never got there ranked after the last epoch (rho only uses ranks; NaN
    under 3 runs)."""
    bar = baselines.get(against, {}).get("val", {}).get("plan_ade")
    present = [m for m in methods if m in runs]
    if bar is None or not present:
        return "_no baseline or no runs_\n", float("nan"), 0
    seeds = sorted({s for m in present for s in runs[m]})
    rows, pairs = [], []
    for m in present:
        row: dict[str, Any] = {"method": m}
        for s, result in sorted(runs[m].items()):
            epoch = first_epoch_below(result, bar)
            row[f"seed {s}"] = "-" if epoch is None else str(epoch)
            history = result.get("history", [])
            if history:
                pairs.append((epoch or len(history) + 1, float(result["plan_ade"])))
        rows.append(row)
    rho = float("nan")
    if len(pairs) >= 3:
        epochs, ades = np.array(pairs).T
        rho = float(stats.spearman(epochs, ades))
    table = stats.markdown_table(rows, ["method", *(f"seed {s}" for s in seeds)])
    return table, rho, len(pairs)


# ----------------------------------------------------------------------------- configurations


def baseline_of(cfg: RunConfig | None) -> str:
    """The uniform run a configuration is compared with: the one trained on the same world, by
    its saved noise (`tracin-noise0` against `uniform-noise0`); `uniform` when unknown."""
    if cfg is None:
        return "uniform"
    return RunConfig(method="uniform", noise=cfg.noise).run_name


def configuration_row(runs: Runs, name: str) -> dict[str, Any]:
    seeds = sorted(runs[name])
    results = [runs[name][s] for s in seeds]
    row = {
        "configuration": name,
        "seeds": ",".join(map(str, seeds)),
        "val plan ADE": stats.format_mean_sd([r["plan_ade"] for r in results]),
        "test plan ADE": stats.format_mean_sd([metric(r, "plan_ade", "test") for r in results]),
        "val pred ADE": stats.format_mean_sd([r.get("pred_ade", np.nan) for r in results]),
        "best epoch": f"{np.mean([r['best_epoch'] for r in results]):.1f}",
    }
    base = baseline_of(run_config(results[0]))
    common = sorted(set(seeds) & set(runs.get(base, {})))
    if name != base and common:
        diff = [runs[name][s]["plan_ade"] - runs[base][s]["plan_ade"] for s in common]
        row[DELTA] = f"{np.mean(diff):+.3f} (n={len(common)})"
        if base != "uniform":
            row[DELTA] += f" vs {base}"
    mass = [r.get("corrupted_mass", [np.nan])[-1] for r in results]
    row["corrupted share, last epoch"] = f"{100 * np.nanmean(mass):.1f} %"
    return row


def configurations_table(runs: Runs, baselines: Baselines | None = None) -> str:
    """Every configuration (the paper's methods first), then the baselines' plan ADE."""
    rows = [
        configuration_row(runs, name)
        for name in sorted(runs, key=lambda n: (n not in PAPER_METHODS, n))
    ]
    for name, by_split in (baselines or {}).items():
        row = {"configuration": baseline_label(name)}
        for split in ("val", "test"):
            if "plan_ade" in by_split.get(split, {}):
                row[f"{split} plan ADE"] = f"{by_split[split]['plan_ade']:.3f}"
        if "pred_ade" in by_split.get("val", {}):  # every baseline predicts neighbours by CV
            row["val pred ADE"] = f"{by_split['val']['pred_ade']:.3f}"
        rows.append(row)
    cols = ["configuration", "seeds", "val plan ADE", "test plan ADE", "val pred ADE", "best epoch"]
    cols += [DELTA, "corrupted share, last epoch"]
    return stats.markdown_table(rows, cols)


def run_time(result: dict) -> dict[str, float]:
    """One run's wall time in seconds by part, from its epoch records and `fit_seconds`.

    `first_extra` is epoch 1's training time above the median of the later epochs: compiling
    the train step when the process had not compiled it yet (about 0 inside a sweep, which
    compiles once for all its runs). A resumed run's `fit_seconds` covers only its last call,
    so its fit and rest are NaN; so is eval in older records without `eval_seconds`.
    """
    hist = result.get("history", [])
    if not all(isinstance(r, dict) and _is_seconds(r.get("train_seconds")) for r in hist):
        hist = []  # a record without timings (hand-made or older): nothing to split
    train = [float(r["train_seconds"]) for r in hist]
    evals = [float(r["eval_seconds"]) for r in hist if "eval_seconds" in r]
    typical = float(np.median(train[1:])) if len(train) > 1 else np.nan
    evals_sum = sum(evals) if len(evals) == len(hist) and hist else np.nan
    fit = float(result.get("fit_seconds", np.nan))
    if not fit >= sum(train):  # resumed (or unknown): this call did not train every epoch
        fit = np.nan
    return {
        "epochs": len(hist),
        "train_epoch": typical,
        "first_extra": train[0] - typical if train else np.nan,
        "eval_epoch": float(np.median(evals)) if evals else np.nan,
        "rest": fit - sum(train) - evals_sum,
        "fit": fit,
        "score": float(result.get("score_seconds") or np.nan),
    }


def _is_seconds(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x)


def _fixed(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "-"


def time_table(runs: Runs) -> str:
    """Median over each configuration's runs of where the wall time went (seconds)."""
    rows = []
    for name in sorted(runs, key=lambda n: (n not in PAPER_METHODS, n)):
        parts = [run_time(r) for r in runs[name].values()]

        def med(key: str, parts: list = parts) -> float:
            values = [p[key] for p in parts if np.isfinite(p[key])]
            return float(np.median(values)) if values else np.nan

        rows.append({
            "configuration": name,
            "runs": len(parts),
            "fit (min)": _fixed(med("fit") / 60, 1),
            "train / epoch (s)": _fixed(med("train_epoch"), 1),
            "epoch 1 extra (s)": _fixed(med("first_extra"), 1),
            "eval / epoch (s)": _fixed(med("eval_epoch"), 2),
            "rest (s)": _fixed(med("rest"), 1),
            "score file (s)": _fixed(med("score"), 0),
        })  # fmt: skip
    cols = ["configuration", "runs", "fit (min)", "train / epoch (s)", "epoch 1 extra (s)",
            "eval / epoch (s)", "rest (s)", "score file (s)"]  # fmt: skip
    return stats.markdown_table(rows, cols)


# ----------------------------------------------------------------------------- scores


def spearman_table(named: Mapping[str, np.ndarray]) -> str:
    """Spearman rho between every pair of scores."""
    names, rho = stats.spearman_matrix(named)
    rows = [
        {"score": a, **{b: f"{rho[i, j]:+.3f}" for j, b in enumerate(names)}}
        for i, a in enumerate(names)
    ]
    return stats.markdown_table(rows, ["score", *names])


def auroc_table(named: Mapping[str, np.ndarray], corrupted_N: np.ndarray) -> str:
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


def by_group_table(named: Mapping[str, np.ndarray], group_N: np.ndarray, label: str) -> str:
    """Mean percentile rank (0-100) of each score within each group, and the group's size."""
    rows = []
    for g in sorted(set(group_N.tolist())):
        m = group_N == g
        row: dict[str, Any] = {label: g, "n": int(m.sum())}
        row.update({k: f"{100 * percentile_rank(s)[m].mean():.1f}" for k, s in named.items()})
        rows.append(row)
    return stats.markdown_table(rows, [label, "n", *named])
