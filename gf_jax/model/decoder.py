"""Level-k decoder: level-0 prediction from learned queries, then K interaction levels.

All K interaction levels share ONE future encoder (as the original, whose state dict merely
lists it once per level). Agents are decoded jointly (the original loops over them with the
same weights; batching them changes nothing). Shape letters: N predicted agents (ego + first
`neighbors` slots), M modes, T future steps, S scene tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gf_jax.config import ModelConfig
from gf_jax.model import layers

FUTURE_DT = 0.1


class GMMHead(nnx.Module):
    """Per query: (mu_x, mu_y, log_sigma_x, log_sigma_y) for every future step, and a mode logit.

    Widths are the original's 256 -> 512 -> 80*4 and 256 -> 64 -> 1, scaled with dim.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d = config.dim
        self.gaussian = layers.MLP(
            (d, 2 * d, config.future_steps * 4),
            jax.nn.elu,
            rngs=rngs,
            dropout_rate=config.dropout,
        )
        self.score = layers.MLP((d, max(d // 4, 1), 1), jax.nn.elu, rngs=rngs)
        self.future_steps = config.future_steps

    def __call__(
        self, content_BxNxMxD: jax.Array, *, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        traj = self.gaussian(content_BxNxMxD, rng=rng)
        traj_BxNxMxTx4 = traj.reshape(*content_BxNxMxD.shape[:-1], self.future_steps, 4)
        scores_BxNxM = self.score(content_BxNxMxD)[..., 0]
        return traj_BxNxMxTx4, scores_BxNxM


def add_current_xy(traj_BxNxMxTx4: jax.Array, current_BxNx5: jax.Array) -> jax.Array:
    """The head predicts offsets; the original adds the agent's current (x, y) to mu."""
    offset = (
        jnp.zeros_like(traj_BxNxMxTx4[:, :, :1, :1])
        .at[..., :2]
        .set(current_BxNx5[:, :, None, None, :2])
    )
    return traj_BxNxMxTx4 + offset


class FutureEncoder(nnx.Module):
    """Encodes each mode's (x, y) future as (x, y, heading, vx, vy) per step, MLP, max over time."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.mlp = layers.MLP((5, max(config.dim // 4, 1), config.dim), jax.nn.relu, rngs=rngs)

    def __call__(self, xy_BxNxMxTx2: jax.Array, current_BxNx5: jax.Array) -> jax.Array:
        start = jnp.broadcast_to(
            current_BxNx5[:, :, None, None, :2], (*xy_BxNxMxTx2.shape[:3], 1, 2)
        )
        d_BxNxMxTx2 = jnp.diff(jnp.concatenate([start, xy_BxNxMxTx2], axis=3), axis=3)
        # atan2(dy, max(dx, 1e-6)): the original's heading, confined to about (-pi/2, pi/2].
        theta = jnp.arctan2(d_BxNxMxTx2[..., 1], jnp.maximum(d_BxNxMxTx2[..., 0], 1e-6))
        feats_BxNxMxTx5 = jnp.concatenate(
            [xy_BxNxMxTx2, theta[..., None], d_BxNxMxTx2 / FUTURE_DT], axis=-1
        )
        # The original detaches the features: no gradient into the previous level's trajectories.
        feats_BxNxMxTx5 = jax.lax.stop_gradient(feats_BxNxMxTx5)
        return self.mlp(feats_BxNxMxTx5).max(axis=-2)


class InitialDecoder(nnx.Module):
    """Level 0: queries = agent encoding + mode embedding + agent embedding, cross block, head."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.mode_embedding = layers.Embedding(config.modalities, config.dim, rngs=rngs)
        self.agent_embedding = layers.Embedding(config.neighbors + 1, config.dim, rngs=rngs)
        self.query_encoder = layers.CrossBlock(
            config.dim, config.heads, config.ffn_dim, config.dropout, rngs=rngs
        )
        self.predictor = GMMHead(config, rngs=rngs)
        self.agents = config.neighbors + 1

    def __call__(
        self,
        current_BxAx5: jax.Array,
        encoding_BxSxD: jax.Array,
        mask_BxS: jax.Array,
        *,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        r_query, r_head = layers.split_rng(rng, 2)
        n = self.agents
        query_BxNxMxD = (
            encoding_BxSxD[:, :n, None]
            + self.mode_embedding()[None, None, :, :]
            + self.agent_embedding()[None, :, None, :]
        )
        content_BxNxMxD = self.query_encoder(
            query_BxNxMxD, encoding_BxSxD, mask_BxS[:, None, :], rng=r_query
        )
        traj_BxNxMxTx4, scores_BxNxM = self.predictor(content_BxNxMxD, rng=r_head)
        return content_BxNxMxD, add_current_xy(traj_BxNxMxTx4, current_BxAx5[:, :n]), scores_BxNxM


class InteractionDecoder(nnx.Module):
    """One level-k stage: future summaries, agent self-attention, per-agent cross block, head."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        args = (config.dim, config.heads, config.ffn_dim, config.dropout)
        self.interaction_encoder = layers.SelfBlock(*args, rngs=rngs)
        self.query_encoder = layers.CrossBlock(*args, rngs=rngs)
        self.decoder = GMMHead(config, rngs=rngs)

    def __call__(
        self,
        future_encoder: FutureEncoder,
        current_BxAx5: jax.Array,
        last_traj_BxNxMxTx4: jax.Array,
        last_scores_BxNxM: jax.Array,
        last_content_BxNxMxD: jax.Array,
        encoding_BxSxD: jax.Array,
        mask_BxS: jax.Array,
        *,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, ...]:
        r_inter, r_query, r_head = layers.split_rng(rng, 3)
        n = last_traj_BxNxMxTx4.shape[1]
        current_BxNx5 = current_BxAx5[:, :n]
        futures_BxNxMxD = future_encoder(last_traj_BxNxMxTx4[..., :2], current_BxNx5)
        probs_BxNxM = jax.nn.softmax(last_scores_BxNxM, axis=-1)
        # Mean, not sum, over modes of the probability-weighted encodings (as the original).
        summary_BxNxD = jnp.mean(futures_BxNxMxD * probs_BxNxM[..., None], axis=2)
        interaction_BxNxD = self.interaction_encoder(summary_BxNxD, mask_BxS[:, :n], rng=r_inter)

        context_BxCxD = jnp.concatenate([interaction_BxNxD, encoding_BxSxD], axis=1)
        context_mask_BxC = jnp.concatenate([mask_BxS[:, :n], mask_BxS], axis=1)
        # Agent i does not see its own previous-level future, only the others'.
        own_NxC = jnp.eye(n, context_mask_BxC.shape[1], dtype=bool)
        context_mask_BxNxC = context_mask_BxC[:, None, :] | own_NxC[None]

        query_BxNxMxD = last_content_BxNxMxD + futures_BxNxMxD
        content_BxNxMxD = self.query_encoder(
            query_BxNxMxD, context_BxCxD, context_mask_BxNxC, rng=r_query
        )
        traj_BxNxMxTx4, scores_BxNxM = self.decoder(content_BxNxMxD, rng=r_head)
        traj_BxNxMxTx4 = add_current_xy(traj_BxNxMxTx4, current_BxNx5)
        return content_BxNxMxD, traj_BxNxMxTx4, scores_BxNxM, futures_BxNxMxD, interaction_BxNxD


class Decoder(nnx.Module):
    """Level 0 and `decoder_levels` interaction levels; returns all levels and the ego content."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.initial_predictor = InitialDecoder(config, rngs=rngs)
        # Only interaction levels use it; the original has none when decoder_levels == 0.
        if config.decoder_levels > 0:
            self.future_encoder = FutureEncoder(config, rngs=rngs)
        self.interaction_stage = nnx.Dict(
            {str(k): InteractionDecoder(config, rngs=rngs) for k in range(config.decoder_levels)}
        )

    def __call__(
        self,
        actors_BxAxTx5: jax.Array,
        encoding_BxSxD: jax.Array,
        mask_BxS: jax.Array,
        *,
        rng: jax.Array | None = None,
        inter: dict[str, jax.Array] | None = None,
    ) -> tuple[dict[str, jax.Array], jax.Array]:
        levels = len(self.interaction_stage)
        rngs = layers.split_rng(rng, levels + 1)
        current_BxAx5 = actors_BxAxTx5[:, :, -1]
        content, traj, scores = self.initial_predictor(
            current_BxAx5, encoding_BxSxD, mask_BxS, rng=rngs[0]
        )
        outputs = {"level_0_interactions": traj, "level_0_scores": scores}
        if inter is not None:
            inter["decoder.level_0_content"] = content
        for k in range(1, levels + 1):
            content, traj, scores, futures, interaction = self.interaction_stage[str(k - 1)](
                self.future_encoder,
                current_BxAx5,
                traj,
                scores,
                content,
                encoding_BxSxD,
                mask_BxS,
                rng=rngs[k],
            )
            outputs[f"level_{k}_interactions"] = traj
            outputs[f"level_{k}_scores"] = scores
            if inter is not None:
                inter[f"decoder.level_{k}_content"] = content
                inter[f"decoder.level_{k}_future_encoding"] = futures
                inter[f"decoder.level_{k}_interaction"] = interaction
        env_encoding_BxMxD = content[:, 0]
        if inter is not None:
            inter["decoder.env_encoding"] = env_encoding_BxMxD
        return outputs, env_encoding_BxMxD
