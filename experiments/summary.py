"""The table a run prints when it ends: its metrics, uniform's for the same seed, and the
non-learned baselines on the same splits (a model that does not beat them has not learned)."""

from __future__ import annotations

import json
import math

from experiments import stats
from experiments.layout import Layout
from gf_jax import baselines
from gf_jax.config import Preset
from gf_jax.data import store

COLUMNS = ("run", "best_epoch", "val_plan_ade", "val_plan_fde", "val_plan_ahe", "val_pred_ade")
COLUMNS += ("test_plan_ade", "test_plan_fde")


def baseline_metrics(preset: Preset, layout: Layout) -> dict[str, dict[str, dict[str, float]]]:
    """{baseline: {split: metrics}} on the preset's val and test splits."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("val", "test"):
        data = store.load_split(preset.data, split, root=layout.data, progress=False)
        for name, m in baselines.evaluate(data, preset.model.neighbors).items():
            out.setdefault(name, {})[split] = m
    return out


def run_row(name: str, result: dict) -> dict:
    row = {"run": name, "best_epoch": result["best_epoch"]}
    for k in ("plan_ade", "plan_fde", "plan_ahe", "pred_ade"):
        row[f"val_{k}"] = result[k]
    for k in ("plan_ade", "plan_fde"):
        row[f"test_{k}"] = result.get("test", {}).get(k, math.nan)
    return row


def baseline_row(name: str, by_split: dict[str, dict[str, float]]) -> dict:
    row = {"run": f"({name.replace('_', ' ')})", "best_epoch": "-"}
    for split, metrics in by_split.items():
        for k, v in metrics.items():
            row[f"{split}_{k}"] = v
    return row


def table(result: dict, layout: Layout, preset: Preset) -> str:
    """This run, uniform with the same seed (if finished), then every baseline."""
    name, seed = result["name"], result["seed"]
    rows = [run_row(name, result)]
    uniform = layout.result("uniform", seed)
    if name != "uniform" and uniform.exists():
        rows.append(run_row("uniform", json.loads(uniform.read_text())))
    rows += [baseline_row(n, m) for n, m in baseline_metrics(preset, layout).items()]
    return "\n" + stats.markdown_table(rows, list(COLUMNS))
