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
    return aggregate(sums, weights)


def aggregate(sums: dict[str, list[np.ndarray]], weights: list[np.ndarray]) -> dict[str, float]:
    """Split-level metrics from per-batch per-example values; padding (weight 0) is dropped."""
    weight_N = np.concatenate(weights)
    per_N = {k: np.concatenate(v) for k, v in sums.items()}
    out = {"loss": float(np.sum(per_N["loss"] * weight_N) / weight_N.sum())}
    agg = metrics.aggregate({k: v[weight_N > 0] for k, v in per_N.items() if k != "loss"})
    out.update({k: float(v) for k, v in agg.items()})
    return out
