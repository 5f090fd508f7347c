"""Non-learned reference planners; a trained GameFormer has to beat them to count as trained.

`constant_velocity` extrapolates the ego's current velocity (in the ego frame, since the current
heading is 0 there) along a straight line for the 80 future steps.
"""

from __future__ import annotations

import numpy as np

from gf_jax import metrics
from gf_jax.data.schema import DT, FUTURE_STEPS, ScenarioSet


def constant_velocity(ego_agent_past_Nx21x7: np.ndarray) -> np.ndarray:
    """Plans [N, 80, 3] (x, y, heading) at the current velocity, heading held at its direction."""
    v_Nx2 = np.asarray(ego_agent_past_Nx21x7)[:, -1, 3:5]
    t_T = DT * np.arange(1, FUTURE_STEPS + 1, dtype=np.float32)
    xy_NxTx2 = v_Nx2[:, None, :] * t_T[None, :, None]
    moving = np.linalg.norm(v_Nx2, axis=-1) > 0.2  # below that the velocity direction is noise
    heading_N = np.where(moving, np.arctan2(v_Nx2[:, 1], v_Nx2[:, 0]), 0.0)
    heading_NxT = np.broadcast_to(heading_N[:, None], xy_NxTx2.shape[:2])
    return np.concatenate([xy_NxTx2, heading_NxT[..., None]], axis=-1).astype(np.float32)


def planning_metrics(plan_NxTx3: np.ndarray, data: ScenarioSet) -> dict[str, float]:
    """Planning ADE / FDE / AHE / FHE of given plans on a ScenarioSet (means over scenarios)."""
    n = len(data)
    no_pred = np.zeros((n, 1, FUTURE_STEPS, 2), np.float32)
    no_nb = np.zeros((n, 1, FUTURE_STEPS, 3), np.float32)
    per = metrics.per_example_from_arrays(
        plan_NxTx3, no_pred, data.arrays["ego_agent_future"], no_nb
    )
    return {k: float(np.mean(per[k])) for k in ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe")}
