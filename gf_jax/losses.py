"""The original GameFormer-Planner training loss (spec 5), per example.

The original averages over the whole batch with padded entries in the denominators
(B x N x T for the GMM term, B x N for the score term, B x T x 3 for the plan). Every example
has the same count, so the batch loss equals the mean over B of the per-example losses computed
here, and example i's loss never depends on the other examples (in eval mode; with dropout on,
a batch-level `rng` draws one mask for the whole batch, so per-example randomness that does not
depend on the batch needs `example_loss` under vmap with one key per example).
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
    nb_BxNbxTx3 = jnp.asarray(targets["neighbor_agents_future"], jnp.float32)[:, :neighbors]
    return ego_BxTx3, nb_BxNbxTx3


def imitation_terms(
    traj_BxNxMxTx4: jax.Array,
    scores_BxNxM: jax.Array,
    gt_BxNxTx3: jax.Array,
    nb_valid_x_BxNbxT: jax.Array,
    best_mode_BxN: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """One level's GMM and score losses per example, its best modes, margins and best means.

    `best_mode_BxN` imposes the best modes instead of the argmin of the time-mean distance
    (e.g. a reference implementation's choice where two modes tie within float noise); the
    margin still describes the distances.
    """
    n_modes = traj_BxNxMxTx4.shape[2]
    # Neighbour modes are zeroed (all 4 channels) where the target x is 0; the ego is not.
    ones_Bx1xT = jnp.ones_like(nb_valid_x_BxNbxT[:, :1], dtype=traj_BxNxMxTx4.dtype)
    valid_BxNxT = jnp.concatenate([ones_Bx1xT, nb_valid_x_BxNbxT.astype(ones_Bx1xT.dtype)], 1)
    traj_BxNxMxTx4 = traj_BxNxMxTx4 * valid_BxNxT[:, :, None, :, None]

    # The best-mode choice carries no gradient; stopping it keeps norm'(0) out of the backward.
    mu_sg = jax.lax.stop_gradient(traj_BxNxMxTx4[..., :2])
    dist_BxNxM = jnp.linalg.norm(mu_sg - gt_BxNxTx3[:, :, None, :, :2], axis=-1).mean(-1)
    if best_mode_BxN is None:
        best_BxN = jnp.argmin(dist_BxNxM, axis=-1)  # ties -> first mode, as torch
    else:
        # dtype=int: the default integer type, the same as argmin's.
        best_BxN = jnp.asarray(best_mode_BxN, dtype=int)
    if n_modes > 1:
        two_smallest = -jax.lax.top_k(-dist_BxNxM, 2)[0]
        margin_BxN = two_smallest[..., 1] - two_smallest[..., 0]
    else:
        margin_BxN = jnp.full(best_BxN.shape, jnp.inf, dist_BxNxM.dtype)

    best_BxNx1xTx4 = jnp.take_along_axis(traj_BxNxMxTx4, best_BxN[:, :, None, None, None], axis=2)
    best_BxNxTx4 = best_BxNx1xTx4[:, :, 0]
    dx = gt_BxNxTx3[..., 0] - best_BxNxTx4[..., 0]
    dy = gt_BxNxTx3[..., 1] - best_BxNxTx4[..., 1]
    log_sx = torch_clamp(best_BxNxTx4[..., 2], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
    log_sy = torch_clamp(best_BxNxTx4[..., 3], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
    nll_BxNxT = (
        log_sx
        + log_sy
        + 0.5 * (jnp.square(dx / jnp.exp(log_sx)) + jnp.square(dy / jnp.exp(log_sy)))
    )

    logp_BxNxM = jax.nn.log_softmax(scores_BxNxM, axis=-1)
    nll_best_BxN = -jnp.take_along_axis(logp_BxNxM, best_BxN[..., None], axis=-1)[..., 0]
    ce_BxN = (1.0 - LABEL_SMOOTHING) * nll_best_BxN - LABEL_SMOOTHING * logp_BxNxM.mean(-1)
    ce_BxN = ce_BxN * (gt_BxNxTx3[:, :, 0, 0] != 0)

    return {
        "gmm": nll_BxNxT.mean(axis=(1, 2)),
        "score": ce_BxN.mean(axis=1),
        "best_mode": best_BxN,
        "mode_margin": margin_BxN,
        "best_mode_mu": best_BxNxTx4[..., :2],
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
    """Every part of the loss per example ([B]), plus per-level best modes [B, N] and mode
    margins (second-best minus best time-mean distance), and `final_best_mode_mu`
    [B, N, T, 2] (last level, used by the prediction metrics).

    `imposed_best_modes` maps a level k to best modes [B, N] used instead of level k's argmin
    (the parity check imposes the reference's choice at numerical ties); other levels choose
    as usual.
    """
    imposed = imposed_best_modes or {}
    ego_BxTx3, nb_BxNbxTx3 = _ground_truth(targets, model_config.neighbors)
    gt_BxNxTx3 = jnp.concatenate([ego_BxTx3[:, None], nb_BxNbxTx3], axis=1)
    nb_valid_x_BxNbxT = nb_BxNbxTx3[..., 0] != 0

    terms: dict[str, jax.Array] = {}
    level_k = jnp.zeros(ego_BxTx3.shape[0], jnp.float32)
    for k in range(model_config.decoder_levels + 1):
        t = imitation_terms(
            outputs[f"level_{k}_interactions"],
            outputs[f"level_{k}_scores"],
            gt_BxNxTx3,
            nb_valid_x_BxNbxT,
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
    """Best-mode means [B, N, T, 2] of the last level, chosen as the loss chooses them."""
    last = num_levels(outputs) - 1
    traj_BxNxMxTx4 = outputs[f"level_{last}_interactions"]
    ego_BxTx3, nb_BxNbxTx3 = _ground_truth(targets, traj_BxNxMxTx4.shape[1] - 1)
    gt_BxNxTx3 = jnp.concatenate([ego_BxTx3[:, None], nb_BxNbxTx3], axis=1)
    t = imitation_terms(
        traj_BxNxMxTx4, outputs[f"level_{last}_scores"], gt_BxNxTx3, nb_BxNbxTx3[..., 0] != 0
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
