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
    neighbor_prediction_BxAxTx2: jax.Array,
    ego_future_BxTx3: jax.Array,
    neighbors_future_BxAxTx3: jax.Array,
) -> dict[str, jax.Array]:
    """Metrics per example [B]; `neighbor_prediction` are the neighbours' best-mode means (last
    level)."""
    neighbor_valid_BxAxTx2 = neighbors_future_BxAxTx3[..., :2] != 0
    neighbor_pred_BxAxTx2 = neighbor_prediction_BxAxTx2 * neighbor_valid_BxAxTx2
    plan_dist_BxT = jnp.linalg.norm(plan_BxTx3[..., :2] - ego_future_BxTx3[..., :2], axis=-1)
    neighbor_pred_dist_BxAxT = jnp.linalg.norm(
        neighbor_pred_BxAxTx2 - neighbors_future_BxAxTx3[..., :2], axis=-1
    )
    heading_err_BxT = jnp.abs(
        jnp.fmod(plan_BxTx3[..., 2] - ego_future_BxTx3[..., 2] + math.pi, 2 * math.pi) - math.pi
    )

    neighbor_valid_BxA = neighbor_valid_BxAxTx2[:, :, 0, 0]
    count_B = neighbor_valid_BxA.sum(axis=1)

    def over_valid(per_neighbor_BxA: jax.Array) -> jax.Array:
        total = jnp.where(neighbor_valid_BxA, per_neighbor_BxA, 0.0).sum(axis=1)
        return jnp.where(count_B > 0, total / jnp.maximum(count_B, 1), jnp.nan)

    return {
        "plan_ade": plan_dist_BxT.mean(axis=1),
        "plan_fde": plan_dist_BxT[:, -1],
        "plan_ahe": heading_err_BxT.mean(axis=1),
        "plan_fhe": heading_err_BxT[:, -1],
        "pred_ade": over_valid(neighbor_pred_dist_BxAxT.mean(axis=-1)),
        "pred_fde": over_valid(neighbor_pred_dist_BxAxT[..., -1]),
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
    neighbor_prediction_BxAxTx2: jax.Array,
    ego_future_BxTx3: jax.Array,
    neighbors_future_BxAxTx3: jax.Array,
) -> dict[str, jax.Array]:
    """The original's `motion_metrics` for one batch (scalars), from arrays."""
    return aggregate(
        per_example_from_arrays(
            plan_BxTx3, neighbor_prediction_BxAxTx2, ego_future_BxTx3, neighbors_future_BxAxTx3
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
    mu_BxAxTx2 = (terms or {}).get("final_best_mode_mu")
    if mu_BxAxTx2 is None:
        mu_BxAxTx2 = losses.final_best_mode_mu(outputs, targets)
    n_nb = mu_BxAxTx2.shape[1] - 1
    return per_example_from_arrays(
        outputs["ego_plan"],
        mu_BxAxTx2[:, 1:],
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
