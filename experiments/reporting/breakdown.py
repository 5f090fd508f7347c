"""Metrics by scenario type and city: where a run's planner gains or loses against another's.

A run's `result.json` holds split-level means only. `breakdown` evaluates the run's best
checkpoint per example on val and test (`gf_jax.evaluate.per_example`) and groups the values by
the scenarios' type and city; `write` stores that as `breakdown.json` in a finished run folder
that still has its checkpoint (`pending` lists them), so the small file, committed with the run, feeds the
report after the checkpoints are gone. `breakdown_table` renders one metric by group, methods
side by side (mean over seeds), with the non-learned baselines as reference columns.

    breakdown.json: {split: {group kind: {group: {"n": count, metric: value}}}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from experiments import stats
from experiments.layout import Layout
from experiments.reporting import loading
from gf_jax import atomic, baselines, evaluate, steps
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet

FILE = "breakdown.json"
KINDS = ("scenario_type", "city")
SPLITS = ("val", "test")
KEYS = ("plan_ade", "plan_fde", "pred_ade")
Breakdown = dict[str, dict[str, dict[str, dict[str, float]]]]


def groups(group_N: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(group, member mask [N]) for every distinct label, in sorted order."""
    labels_N = np.asarray(group_N).astype(str)
    for group in sorted(set(labels_N)):
        yield group, labels_N == group


def by_group(per_N: Mapping[str, np.ndarray], group_N: np.ndarray) -> dict[str, dict[str, float]]:
    """{group: {"n", metric...}}: each group's examples aggregated as a whole split would be."""
    out = {}
    for group, mask_N in groups(group_N):
        summary = evaluate.summarize({k: np.asarray(v)[mask_N] for k, v in per_N.items()})
        out[group] = {"n": int(mask_N.sum()), **{k: summary[k] for k in KEYS}}
    return out


def breakdown(params: object, splits: Mapping[str, ScenarioSet], preset: Preset) -> Breakdown:
    """Every split's metrics by scenario type and by city, for one set of parameters."""
    out: Breakdown = {}
    _, eval_fn = steps.compiled_steps(preset.model, preset.train)  # cached: compiled once
    for split in SPLITS:
        data = splits[split]
        per_N = evaluate.per_example(
            params, data, preset.model, batch_size=preset.train.eval_batch_size, step_fn=eval_fn
        )
        out[split] = {kind: by_group(per_N, np.asarray(data.meta[kind])) for kind in KINDS}
    return out


def baseline_breakdown(splits: Mapping[str, ScenarioSet], neighbors: int) -> dict[str, Breakdown]:
    """The same grouping for the non-learned planners: {planner: breakdown}."""
    out: dict[str, Breakdown] = {}
    for split in SPLITS:
        data = splits[split]
        for kind in KINDS:
            for group, mask_N in groups(data.meta[kind]):
                idx = np.flatnonzero(mask_N)
                for planner, m in baselines.evaluate(data.subset(idx), neighbors).items():
                    row = {"n": len(idx), **{k: m[k] for k in KEYS}}
                    out.setdefault(planner, {}).setdefault(split, {}).setdefault(kind, {})[
                        group
                    ] = row
    return out


def pending(layout: Layout, overwrite: bool = False) -> Iterator[Path]:
    """Finished run folders (reference run included) with a best checkpoint and, unless
    `overwrite`, no breakdown yet."""
    folders = [path.parent for _, _, path in layout.finished()]
    folders += sorted(p.parent for p in layout.root.glob("reference*/seed*/result.json"))
    for run_dir in folders:
        has_best = CheckpointStore(run_dir / "checkpoints").path("best").is_dir()
        if has_best and (overwrite or not (run_dir / FILE).exists()):
            yield run_dir


def write(run_dir: Path, splits_for: Callable[[Preset], Mapping[str, ScenarioSet]]) -> Path:
    """Evaluates `run_dir`'s best checkpoint and writes its breakdown.json atomically.

    `splits_for(preset)` returns that preset's val and test splits (cached by the caller)."""
    preset = loading.run_preset(run_dir)
    params = CheckpointStore(run_dir / "checkpoints").params("best")
    found = breakdown(params, splits_for(preset), preset)
    return atomic.write_json(run_dir / FILE, found)


def load(layout: Layout, runs: loading.Runs) -> dict[str, dict[int, Breakdown]]:
    """{run name: {seed: breakdown}} for the finished runs that have one (others left out)."""
    out: dict[str, dict[int, Breakdown]] = {}
    for name, seeds in runs.items():
        for seed in seeds:
            path = layout.run(name, seed) / FILE
            try:
                out.setdefault(name, {})[seed] = json.loads(path.read_text())
            except (OSError, ValueError):  # none yet (or unreadable): the table skips it
                continue
    return {k: v for k, v in out.items() if v}


def _mean(found: Mapping[int, Breakdown], split: str, kind: str, group: str, key: str) -> float:
    values = [b[split][kind].get(group, {}).get(key, np.nan) for b in found.values()]
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else np.nan


def breakdown_table(
    found: Mapping[str, Mapping[int, Breakdown]],
    base: Mapping[str, Breakdown],
    methods: tuple[str, ...],
    *,
    split: str = "val",
    kind: str = "scenario_type",
    key: str = "plan_ade",
) -> str:
    """One row per group: its size, the baselines' and each method's `key` (mean over seeds)."""
    shown = [m for m in methods if m in found]
    groups = sorted({g for m in shown for b in found[m].values() for g in b[split][kind]})
    rows = []
    for group in groups:
        row = {kind.replace("_", " "): group}
        first = next(iter(found[shown[0]].values()))
        row["n"] = first[split][kind].get(group, {}).get("n", "")
        for planner, b in base.items():
            row[f"({planner.replace('_', ' ')})"] = _fmt(b[split][kind].get(group, {}).get(key))
        for m in shown:
            row[f"{m} (n={len(found[m])})"] = _fmt(_mean(found[m], split, kind, group, key))
        rows.append(row)
    cols = list(rows[0]) if rows else [kind]
    return stats.markdown_table(rows, cols)


def _fmt(x: float | None) -> str:
    return f"{x:.3f}" if x is not None and np.isfinite(x) else "-"
