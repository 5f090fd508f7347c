"""The original's training metrics: planning ADE / FDE / AHE / FHE, prediction ADE / FDE.

Per example and per batch. Planning metrics are means over steps, so the batch value is the
mean over examples of the per-example values. Prediction metrics average over the valid
neighbours of the whole batch (a neighbour is valid iff its first future x is nonzero); an
example's `pred_ade` is the mean over its own valid neighbours (NaN when it has none) and
`pred_count` their number, so the batch value is the count-weighted mean (see `aggregate`).
The original's epoch value is the plain mean of per-batch values.

AHE/FHE copy the original's quirk |fmod(dh + pi, 2 pi) - pi|: fmod keeps the sign of its first
argument, so heading differences below -pi are not wrapped.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gf_jax import losses

METRIC_NAMES = ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe", "pred_ade", "pred_fde")
ORIGINAL_NAMES = {
    "plan_ade": "plannerADE",
    "plan_fde": "plannerFDE",
    "plan_ahe": "plannerAHE",
    "plan_fhe": "plannerFHE",
    "pred_ade": "predictorADE",
    "pred_fde": "predictorFDE",
}


def per_example_from_arrays(
    plan_BxTx3: jax.Array,
    prediction_BxNbxTx2: jax.Array,
    ego_future_BxTx3: jax.Array,
    neighbors_future_BxNbxTx3: jax.Array,
) -> dict[str, jax.Array]:
    """Metrics per example [B]; `prediction` are the neighbours' best-mode means (last level)."""
    valid_BxNbxTx2 = neighbors_future_BxNbxTx3[..., :2] != 0
    pred_BxNbxTx2 = prediction_BxNbxTx2 * valid_BxNbxTx2
    plan_dist_BxT = jnp.linalg.norm(plan_BxTx3[..., :2] - ego_future_BxTx3[..., :2], axis=-1)
    pred_dist_BxNbxT = jnp.linalg.norm(pred_BxNbxTx2 - neighbors_future_BxNbxTx3[..., :2], axis=-1)
    heading_err_BxT = jnp.abs(
        jnp.fmod(plan_BxTx3[..., 2] - ego_future_BxTx3[..., 2] + math.pi, 2 * math.pi) - math.pi
    )

    agent_valid_BxNb = valid_BxNbxTx2[:, :, 0, 0]
    count_B = agent_valid_BxNb.sum(axis=1)

    def over_valid(per_agent_BxNb: jax.Array) -> jax.Array:
        total = jnp.where(agent_valid_BxNb, per_agent_BxNb, 0.0).sum(axis=1)
        return jnp.where(count_B > 0, total / jnp.maximum(count_B, 1), jnp.nan)

    return {
        "plan_ade": plan_dist_BxT.mean(axis=1),
        "plan_fde": plan_dist_BxT[:, -1],
        "plan_ahe": heading_err_BxT.mean(axis=1),
        "plan_fhe": heading_err_BxT[:, -1],
        "pred_ade": over_valid(pred_dist_BxNbxT.mean(axis=-1)),
        "pred_fde": over_valid(pred_dist_BxNbxT[..., -1]),
        "pred_count": count_B,
    }


def aggregate(per_example: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-example metrics -> the original's batch values (NaN prediction metrics without any
    valid neighbour in the batch, as torch's mean of an empty selection)."""
    count_B = jnp.asarray(per_example["pred_count"])
    out = {
        k: jnp.mean(jnp.asarray(per_example[k]))
        for k in ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe")
    }
    for k in ("pred_ade", "pred_fde"):
        total = jnp.where(count_B > 0, jnp.asarray(per_example[k]) * count_B, 0.0).sum()
        out[k] = total / count_B.sum()
    return out


def motion_metrics(
    plan_BxTx3: jax.Array,
    prediction_BxNbxTx2: jax.Array,
    ego_future_BxTx3: jax.Array,
    neighbors_future_BxNbxTx3: jax.Array,
) -> dict[str, jax.Array]:
    """The original's `motion_metrics` for one batch (scalars), from arrays."""
    return aggregate(
        per_example_from_arrays(
            plan_BxTx3, prediction_BxNbxTx2, ego_future_BxTx3, neighbors_future_BxNbxTx3
        )
    )


def per_example_metrics(
    outputs: dict[str, jax.Array],
    terms: dict[str, jax.Array] | None,
    targets: dict[str, jax.Array],
) -> dict[str, jax.Array]:
    """Per-example metrics from model outputs.

    `terms` may be `losses.loss_terms(...)` (its `final_best_mode_mu` is used) or anything else
    (e.g. `per_example_loss(...)` or None), in which case the last level's best modes are
    chosen here exactly as the loss chooses them.
    """
    mu_BxNxTx2 = (terms or {}).get("final_best_mode_mu")
    if mu_BxNxTx2 is None:
        mu_BxNxTx2 = losses.final_best_mode_mu(outputs, targets)
    n_nb = mu_BxNxTx2.shape[1] - 1
    return per_example_from_arrays(
        outputs["ego_plan"],
        mu_BxNxTx2[:, 1:],
        jnp.asarray(targets["ego_agent_future"]),
        jnp.asarray(targets["neighbor_agents_future"])[:, :n_nb],
    )


def batch_metrics(
    outputs: dict[str, jax.Array],
    terms: dict[str, jax.Array] | None,
    targets: dict[str, jax.Array],
) -> dict[str, jax.Array]:
    """The original's batch metrics (scalars) from model outputs; see `per_example_metrics`."""
    return aggregate(per_example_metrics(outputs, terms, targets))
