"""Loss and planning/prediction metrics of parameters over a whole split (eval mode)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gf_jax import mesh as mesh_lib
from gf_jax import metrics, steps
from gf_jax.config import ModelConfig
from gf_jax.data.schema import ScenarioSet
from gf_jax.sampling import batches

# The metrics a run reports at its best validation epoch (and on test).
METRIC_KEYS = ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe", "pred_ade", "pred_fde")


def evaluate(
    params: Any,
    data: ScenarioSet,
    model_cfg: ModelConfig,
    *,
    batch_size: int = 64,
    mesh: jax.sharding.Mesh | None = None,
    step_fn: Callable | None = None,
) -> dict[str, float]:
    """Loss and planning/prediction metrics over a whole split (eval mode)."""
    per_N = per_example(params, data, model_cfg, batch_size=batch_size, mesh=mesh, step_fn=step_fn)
    return summarize(per_N)


def per_example(
    params: Any,
    data: ScenarioSet,
    model_cfg: ModelConfig,
    *,
    batch_size: int = 64,
    mesh: jax.sharding.Mesh | None = None,
    step_fn: Callable | None = None,
) -> dict[str, np.ndarray]:
    """The eval step's per-example values [N] (loss, metrics, `pred_count`), in `data`'s order."""
    mesh = mesh or mesh_lib.data_mesh()
    batch_size = mesh_lib.round_up_to_devices(batch_size, mesh)
    step_fn = step_fn or jax.jit(functools.partial(steps.eval_step, model_cfg=model_cfg))
    sums: dict[str, list[np.ndarray]] = {}
    weights = []
    for batch, weight_B in batches(data, np.arange(len(data)), batch_size, model_cfg.neighbors):
        # Every process gets every example's values (gathered across processes if need be).
        out = mesh_lib.to_host(step_fn(params, mesh_lib.shard_batch(batch, mesh)))
        for k, v in out.items():
            sums.setdefault(k, []).append(np.asarray(v))
        weights.append(weight_B)
    keep_N = np.concatenate(weights) > 0  # padding of the last batch dropped
    return {k: np.concatenate(v)[keep_N] for k, v in sums.items()}


def summarize(per_N: dict[str, np.ndarray]) -> dict[str, float]:
    """Split-level loss and metrics from per-example values (of a whole split or a subset)."""
    out = {"loss": float(np.mean(per_N["loss"]))}
    agg = metrics.aggregate({k: v for k, v in per_N.items() if k != "loss"})
    out.update({k: float(v) for k, v in agg.items()})
    return out
