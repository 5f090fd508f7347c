"""Per-example outcomes of trained parameters on a split: every scenario's loss and metrics.

The LDS targets are per validation scenario (J of them), so the split-level means that
`gf_jax.evaluate` reports are not enough. This runs the same jitted eval step that training
uses (`gf_jax.steps.compiled_steps`, cached per config pair, so no recompilation after a fit)
over fixed-size batches and keeps the per-example values, padding dropped. The loss is the
training loss (eval mode, no dropout), the quantity the gradient scorers speak about.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from gf_jax import mesh as mesh_lib
from gf_jax import steps
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet
from gf_jax.sampling import batches

# The per-example arrays an outcome file holds (float32 [J] each).
KEYS = ("loss", "plan_ade", "plan_fde", "pred_ade")


def per_example(
    params: Any, data: ScenarioSet, preset: Preset, *, mesh: jax.sharding.Mesh | None = None
) -> dict[str, np.ndarray]:
    """{key: float32 [N]} for every key of `KEYS`, in the split's order.

    `pred_ade` is NaN for a scenario without any valid neighbour (as `gf_jax.metrics`).
    """
    mesh = mesh or mesh_lib.data_mesh()
    batch_size = mesh_lib.round_up_to_devices(preset.train.eval_batch_size, mesh)
    _, eval_fn = steps.compiled_steps(preset.model, preset.train)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    indices = np.arange(len(data))
    for batch, weight_B in batches(data, indices, batch_size, preset.model.neighbors):
        out = jax.device_get(eval_fn(params, mesh_lib.shard_batch(batch, mesh)))
        real_B = weight_B > 0
        for k in KEYS:
            parts[k].append(np.asarray(out[k], np.float32)[real_B])
    return {k: np.concatenate(v) for k, v in parts.items()}
