"""Per-example outcomes of trained parameters on a split: every scenario's loss and metrics.

The LDS targets are per validation scenario (J of them), so the split-level means that
`gf_jax.evaluate` reports are not enough. This runs the same jitted eval step that training
uses (`gf_jax.steps.compiled_steps`, cached per config pair, so no recompilation after a fit)
over fixed-size batches (`gf_jax.evaluate.per_example`) and keeps the per-example values,
padding dropped. The loss is the training loss (eval mode, no dropout), the quantity the
gradient scorers speak about.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from gf_jax import evaluate, steps
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet

# The per-example arrays an outcome file holds (float32 [J] each).
KEYS = ("loss", "plan_ade", "plan_fde", "pred_ade")


def per_example(
    params: Any, data: ScenarioSet, preset: Preset, *, mesh: jax.sharding.Mesh | None = None
) -> dict[str, np.ndarray]:
    """{key: float32 [N]} for every key of `KEYS`, in the split's order.

    `pred_ade` is NaN for a scenario without any valid neighbour (as `gf_jax.metrics`).
    """
    _, eval_fn = steps.compiled_steps(preset.model, preset.train)
    batch = preset.train.eval_batch_size
    per_N = evaluate.per_example(
        params, data, preset.model, batch_size=batch, mesh=mesh, step_fn=eval_fn
    )
    return {k: np.asarray(per_N[k], np.float32) for k in KEYS}
