"""Level-k decoder: level-0 prediction from learned queries, then V interaction levels.

All V interaction levels share ONE future encoder (as the original, whose state dict merely
lists it once per level). Agents are decoded jointly (the original loops over them with the
same weights; batching them changes nothing). Shape letters: A predicted agents (ego + first
`neighbors` slots; the encoder's A covers every slot), M modes, T future steps, S attention keys
(scene tokens, and in the interaction levels also the agents' interaction tokens).
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
        self, content_BxAxMxD: jax.Array, *, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        traj = self.gaussian(content_BxAxMxD, rng=rng)
        traj_BxAxMxTx4 = traj.reshape(*content_BxAxMxD.shape[:-1], self.future_steps, 4)
        scores_BxAxM = self.score(content_BxAxMxD)[..., 0]
        return traj_BxAxMxTx4, scores_BxAxM


def add_current_xy(traj_BxAxMxTx4: jax.Array, current_BxAx5: jax.Array) -> jax.Array:
    """The head predicts offsets; the original adds the agent's current (x, y) to mu."""
    offset = (
        jnp.zeros_like(traj_BxAxMxTx4[:, :, :1, :1])
        .at[..., :2]
        .set(current_BxAx5[:, :, None, None, :2])
    )
    return traj_BxAxMxTx4 + offset


class FutureEncoder(nnx.Module):
    """Encodes each mode's (x, y) future as (x, y, heading, vx, vy) per step, MLP, max over time."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.mlp = layers.MLP((5, max(config.dim // 4, 1), config.dim), jax.nn.relu, rngs=rngs)

    def __call__(self, xy_BxAxMxTx2: jax.Array, current_BxAx5: jax.Array) -> jax.Array:
        start = jnp.broadcast_to(
            current_BxAx5[:, :, None, None, :2], (*xy_BxAxMxTx2.shape[:3], 1, 2)
        )
        d_BxAxMxTx2 = jnp.diff(jnp.concatenate([start, xy_BxAxMxTx2], axis=3), axis=3)
        # atan2(dy, max(dx, 1e-6)): the original's heading, confined to about (-pi/2, pi/2].
        theta = jnp.arctan2(d_BxAxMxTx2[..., 1], jnp.maximum(d_BxAxMxTx2[..., 0], 1e-6))
        feats_BxAxMxTx5 = jnp.concatenate(
            [xy_BxAxMxTx2, theta[..., None], d_BxAxMxTx2 / FUTURE_DT], axis=-1
        )
        # The original detaches the features: no gradient into the previous level's trajectories.
        feats_BxAxMxTx5 = jax.lax.stop_gradient(feats_BxAxMxTx5)
        return self.mlp(feats_BxAxMxTx5).max(axis=-2)


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
        query_BxAxMxD = (
            encoding_BxSxD[:, :n, None]
            + self.mode_embedding()[None, None, :, :]
            + self.agent_embedding()[None, :, None, :]
        )
        content_BxAxMxD = self.query_encoder(
            query_BxAxMxD, encoding_BxSxD, mask_BxS[:, None, :], rng=r_query
        )
        traj_BxAxMxTx4, scores_BxAxM = self.predictor(content_BxAxMxD, rng=r_head)
        return content_BxAxMxD, add_current_xy(traj_BxAxMxTx4, current_BxAx5[:, :n]), scores_BxAxM


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
        last_traj_BxAxMxTx4: jax.Array,
        last_scores_BxAxM: jax.Array,
        last_content_BxAxMxD: jax.Array,
        encoding_BxSxD: jax.Array,
        mask_BxS: jax.Array,
        *,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, ...]:
        r_inter, r_query, r_head = layers.split_rng(rng, 3)
        n = last_traj_BxAxMxTx4.shape[1]
        # The predicted agents: the encoder's A covers every neighbour slot, the decoder's only
        # the first `neighbors`.
        predicted_current_BxAx5 = current_BxAx5[:, :n]
        futures_BxAxMxD = future_encoder(last_traj_BxAxMxTx4[..., :2], predicted_current_BxAx5)
        probs_BxAxM = jax.nn.softmax(last_scores_BxAxM, axis=-1)
        # Mean, not sum, over modes of the probability-weighted encodings (as the original).
        summary_BxAxD = jnp.mean(futures_BxAxMxD * probs_BxAxM[..., None], axis=2)
        interaction_BxAxD = self.interaction_encoder(summary_BxAxD, mask_BxS[:, :n], rng=r_inter)

        context_BxSxD = jnp.concatenate([interaction_BxAxD, encoding_BxSxD], axis=1)
        context_mask_BxS = jnp.concatenate([mask_BxS[:, :n], mask_BxS], axis=1)
        # Agent i does not see its own previous-level future, only the others'.
        own_AxS = jnp.eye(n, context_mask_BxS.shape[1], dtype=bool)
        context_mask_BxAxS = context_mask_BxS[:, None, :] | own_AxS[None]

        query_BxAxMxD = last_content_BxAxMxD + futures_BxAxMxD
        content_BxAxMxD = self.query_encoder(
            query_BxAxMxD, context_BxSxD, context_mask_BxAxS, rng=r_query
        )
        traj_BxAxMxTx4, scores_BxAxM = self.decoder(content_BxAxMxD, rng=r_head)
        traj_BxAxMxTx4 = add_current_xy(traj_BxAxMxTx4, predicted_current_BxAx5)
        return content_BxAxMxD, traj_BxAxMxTx4, scores_BxAxM, futures_BxAxMxD, interaction_BxAxD


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
