"""The original GameFormer-Planner training loss (spec 5), per example.

The original averages over the whole batch with padded entries in the denominators
(B x A x T for the GMM term, B x A for the score term, B x T x 3 for the plan). Every example
has the same count, so the batch loss equals the mean over B of the per-example losses computed
here, and example i's loss never depends on the other examples (in eval mode; with dropout on,
a batch-level `rng` draws one mask for the whole batch, so per-example randomness that does not
depend on the batch needs `example_loss` under vmap with one key per example).

Shape letters as in `gf_jax.data.schema`; A counts the predicted agents (the ego, then the
first `neighbors` neighbour slots).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gf_jax.config import ModelConfig
from gf_jax.model import gameformer
from gf_jax.model.layers import torch_clamp

LABEL_SMOOTHING = 0.2
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -2.0, 2.0


def _ground_truth(targets: dict[str, jax.Array], neighbors: int) -> tuple[jax.Array, jax.Array]:
    ego_BxTx3 = jnp.asarray(targets["ego_agent_future"], jnp.float32)
    neighbor_BxAxTx3 = jnp.asarray(targets["neighbor_agents_future"], jnp.float32)[:, :neighbors]
    return ego_BxTx3, neighbor_BxAxTx3


def imitation_terms(
    traj_BxAxMxTx4: jax.Array,
    scores_BxAxM: jax.Array,
    gt_BxAxTx3: jax.Array,
    neighbor_valid_x_BxAxT: jax.Array,
    best_mode_BxA: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """One level's GMM and score losses per example, its best modes, margins and best means.

    `best_mode_BxA` imposes the best modes instead of the argmin of the time-mean distance
    (e.g. a reference implementation's choice where two modes tie within float noise); the
    margin still describes the distances.
    """
    n_modes = traj_BxAxMxTx4.shape[2]
    # Neighbour modes are zeroed (all 4 channels) where the target x is 0; the ego is not.
    ones_Bx1xT = jnp.ones_like(neighbor_valid_x_BxAxT[:, :1], dtype=traj_BxAxMxTx4.dtype)
    valid_BxAxT = jnp.concatenate([ones_Bx1xT, neighbor_valid_x_BxAxT.astype(ones_Bx1xT.dtype)], 1)
    traj_BxAxMxTx4 = traj_BxAxMxTx4 * valid_BxAxT[:, :, None, :, None]

    # The best-mode choice carries no gradient; stopping it keeps norm'(0) out of the backward.
    mu_sg = jax.lax.stop_gradient(traj_BxAxMxTx4[..., :2])
    dist_BxAxM = jnp.linalg.norm(mu_sg - gt_BxAxTx3[:, :, None, :, :2], axis=-1).mean(-1)
    if best_mode_BxA is None:
        best_BxA = jnp.argmin(dist_BxAxM, axis=-1)  # ties -> first mode, as torch
    else:
        # dtype=int: the default integer type, the same as argmin's.
        best_BxA = jnp.asarray(best_mode_BxA, dtype=int)
    if n_modes > 1:
        two_smallest = -jax.lax.top_k(-dist_BxAxM, 2)[0]
        margin_BxA = two_smallest[..., 1] - two_smallest[..., 0]
    else:
        margin_BxA = jnp.full(best_BxA.shape, jnp.inf, dist_BxAxM.dtype)

    best_BxAx1xTx4 = jnp.take_along_axis(traj_BxAxMxTx4, best_BxA[:, :, None, None, None], axis=2)
    best_BxAxTx4 = best_BxAx1xTx4[:, :, 0]
    dx = gt_BxAxTx3[..., 0] - best_BxAxTx4[..., 0]
    dy = gt_BxAxTx3[..., 1] - best_BxAxTx4[..., 1]
    log_sx = torch_clamp(best_BxAxTx4[..., 2], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
    log_sy = torch_clamp(best_BxAxTx4[..., 3], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
    nll_BxAxT = (
        log_sx
        + log_sy
        + 0.5 * (jnp.square(dx / jnp.exp(log_sx)) + jnp.square(dy / jnp.exp(log_sy)))
    )

    logp_BxAxM = jax.nn.log_softmax(scores_BxAxM, axis=-1)
    nll_best_BxA = -jnp.take_along_axis(logp_BxAxM, best_BxA[..., None], axis=-1)[..., 0]
    ce_BxA = (1.0 - LABEL_SMOOTHING) * nll_best_BxA - LABEL_SMOOTHING * logp_BxAxM.mean(-1)
    ce_BxA = ce_BxA * (gt_BxAxTx3[:, :, 0, 0] != 0)

    return {
        "gmm": nll_BxAxT.mean(axis=(1, 2)),
        "score": ce_BxA.mean(axis=1),
        "best_mode": best_BxA,
        "mode_margin": margin_BxA,
        "best_mode_mu": best_BxAxTx4[..., :2],
    }


def smooth_l1(d: jax.Array) -> jax.Array:
    """torch's smooth-L1 with beta 1, elementwise."""
    a = jnp.abs(d)
    return jnp.where(a < 1.0, 0.5 * d * d, a - 0.5)


def planning_loss(plan_BxTx3: jax.Array, ego_future_BxTx3: jax.Array) -> jax.Array:
    """Per example: smooth-L1 mean over all steps and channels plus over the final step [B]."""
    d_BxTx3 = plan_BxTx3 - ego_future_BxTx3
    return smooth_l1(d_BxTx3).mean(axis=(1, 2)) + smooth_l1(d_BxTx3[:, -1]).mean(axis=1)


def loss_terms(
    outputs: dict[str, jax.Array],
    targets: dict[str, jax.Array],
    model_config: ModelConfig,
    imposed_best_modes: Mapping[int, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """Every part of the loss per example ([B]), plus per-level best modes [B, A] and mode
    margins (second-best minus best time-mean distance), and `final_best_mode_mu`
    [B, A, T, 2] (last level, used by the prediction metrics).

    `imposed_best_modes` maps a level k to best modes [B, A] used instead of level k's argmin
    (the parity check imposes the reference's choice at numerical ties); other levels choose
    as usual.
    """
    imposed = imposed_best_modes or {}
    ego_BxTx3, neighbor_BxAxTx3 = _ground_truth(targets, model_config.neighbors)
    gt_BxAxTx3 = jnp.concatenate([ego_BxTx3[:, None], neighbor_BxAxTx3], axis=1)
    neighbor_valid_x_BxAxT = neighbor_BxAxTx3[..., 0] != 0

    terms: dict[str, jax.Array] = {}
    level_k = jnp.zeros(ego_BxTx3.shape[0], jnp.float32)
    for k in range(model_config.decoder_levels + 1):
        t = imitation_terms(
            outputs[f"level_{k}_interactions"],
            outputs[f"level_{k}_scores"],
            gt_BxAxTx3,
            neighbor_valid_x_BxAxT,
            imposed.get(k),
        )
        terms[f"level_{k}_gmm"] = t["gmm"]
        terms[f"level_{k}_score"] = t["score"]
        terms[f"level_{k}_best_mode"] = t["best_mode"]
        terms[f"level_{k}_mode_margin"] = t["mode_margin"]
        level_k = level_k + t["gmm"] + t["score"]
        terms["final_best_mode_mu"] = t["best_mode_mu"]
    terms["level_k"] = level_k
    terms["planning"] = planning_loss(outputs["ego_plan"], ego_BxTx3)
    terms["total"] = terms["level_k"] + terms["planning"]
    return terms


def num_levels(outputs: dict[str, jax.Array]) -> int:
    """How many decoder levels (level 0 included) the outputs hold."""
    return sum(1 for key in outputs if key.startswith("level_") and key.endswith("_scores"))


def final_best_mode_mu(outputs: dict[str, jax.Array], targets: dict[str, jax.Array]) -> jax.Array:
    """Best-mode means [B, A, T, 2] of the last level, chosen as the loss chooses them."""
    last = num_levels(outputs) - 1
    traj_BxAxMxTx4 = outputs[f"level_{last}_interactions"]
    ego_BxTx3, neighbor_BxAxTx3 = _ground_truth(targets, traj_BxAxMxTx4.shape[1] - 1)
    gt_BxAxTx3 = jnp.concatenate([ego_BxTx3[:, None], neighbor_BxAxTx3], axis=1)
    t = imitation_terms(
        traj_BxAxMxTx4, outputs[f"level_{last}_scores"], gt_BxAxTx3, neighbor_BxAxTx3[..., 0] != 0
    )
    return t["best_mode_mu"]


def per_example_loss(
    outputs: dict[str, jax.Array],
    targets: dict[str, jax.Array],
    model_config: ModelConfig,
    imposed_best_modes: Mapping[int, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """`total` [B] and its parts (`level_k`, `planning`, `level_{k}_gmm`, `level_{k}_score`).

    The mean over B of each equals the original's batch value of that part.
    `imposed_best_modes`: as in `loss_terms`.
    """
    terms = loss_terms(outputs, targets, model_config, imposed_best_modes)
    keys = ["total", "level_k", "planning"]
    for k in range(model_config.decoder_levels + 1):
        keys += [f"level_{k}_gmm", f"level_{k}_score"]
    return {key: terms[key] for key in keys}


def loss_fn(
    params: Any,
    batch: dict[str, jax.Array],
    model_config: ModelConfig,
    rng: jax.Array | None = None,
) -> jax.Array:
    """The original's training objective for a batch (inputs and targets in one dict)."""
    outputs = gameformer.apply(params, batch, model_config, rng=rng)
    return per_example_loss(outputs, batch, model_config)["total"].mean()


def example_loss(
    params: Any,
    example: dict[str, jax.Array],
    model_config: ModelConfig,
    rng: jax.Array | None = None,
) -> jax.Array:
    """The loss of ONE example given without batch axis (a scalar); vmap it over examples."""
    batch = jax.tree.map(lambda x: jnp.asarray(x)[None], dict(example))
    return loss_fn(params, batch, model_config, rng)
