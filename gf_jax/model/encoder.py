"""Scene encoder: agent-history LSTMs, vector-map point nets, and the fusion transformer.

Masks are derived from the zero padding exactly as the original (spec 1 and 3.1-3.3):
- an agent token is padding iff x + y + heading + vx + vy at the current frame sums to 0 (so a
  perfectly stationary ego is masked too);
- a 10-point map segment is padding iff any of its points has x == 0.
Padded agents and points are still encoded; only the masks remove them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gf_jax.config import ModelConfig
from gf_jax.data import schema
from gf_jax.model import layers


def point_net_sizes(in_features: int, dim: int) -> tuple[int, ...]:
    """Point MLP widths: the original's in_features -> 64 -> 128 -> 256, scaled with dim."""
    return (in_features, max(dim // 4, 1), max(dim // 2, 1), dim)


class VectorMapEncoder(nnx.Module):
    """Point MLP + sinusoidal point-index code + dropout, max-pooled into segment tokens."""

    def __init__(self, in_features: int, config: ModelConfig, *, rngs: nnx.Rngs):
        self.point_net = layers.MLP(
            point_net_sizes(in_features, config.dim), jax.nn.relu, rngs=rngs
        )
        self.dropout_rate = config.dropout
        self.segment_points = config.segment_points

    def __call__(
        self, map_BxLxPxD: jax.Array, *, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Returns segment tokens [B, S, D], S = L * (P // segment_points) (polyline-major), and
        their mask [B, S] (True = pad)."""
        b, n_lines, n_points, _ = map_BxLxPxD.shape
        s = self.segment_points
        x_BxLxPxD = self.point_net(map_BxLxPxD)
        dim = x_BxLxPxD.shape[-1]
        x_BxLxPxD = x_BxLxPxD + layers.sinusoidal_table(n_points, dim)
        x_BxLxPxD = layers.dropout(x_BxLxPxD, self.dropout_rate, rng)
        # As torch's max_pool2d with kernel (1, segment_points): trailing points that do not fill a
        # segment are dropped. x_BxLxSxPxD: S segments (the tokens) per polyline, P points each.
        n_seg = n_points // s
        x_BxLxSxPxD = x_BxLxPxD[:, :, : n_seg * s].reshape(b, n_lines, n_seg, s, dim)
        tokens_BxSxD = x_BxLxSxPxD.max(axis=3).reshape(b, n_lines * n_seg, dim)
        pad_BxLxSxP = (map_BxLxPxD[:, :, : n_seg * s, 0] == 0).reshape(b, n_lines, n_seg, s)
        mask_BxS = pad_BxLxSxP.any(axis=-1).reshape(b, n_lines * n_seg)
        return tokens_BxSxD, mask_BxS


class AgentEncoder(nnx.Module):
    """2-layer LSTM over the 21 past frames; the encoding is the top output at the last frame."""

    def __init__(self, in_features: int, config: ModelConfig, *, rngs: nnx.Rngs):
        self.motion = layers.LSTM(in_features, config.dim, config.lstm_layers, rngs=rngs)

    def __call__(self, past_BxTxD: jax.Array) -> jax.Array:
        return self.motion(past_BxTxD)[:, -1]


class Encoder(nnx.Module):
    """Agents + lanes + crosswalks -> fused scene encoding [B, 21 + 200 + 15, D] and its mask."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.ego_encoder = AgentEncoder(len(schema.EGO_PAST_CHANNELS), config, rngs=rngs)
        self.agent_encoder = AgentEncoder(len(schema.NEIGHBOR_PAST_CHANNELS), config, rngs=rngs)
        self.lane_encoder = VectorMapEncoder(len(schema.LANE_CHANNELS), config, rngs=rngs)
        self.crosswalk_encoder = VectorMapEncoder(len(schema.POLYLINE_CHANNELS), config, rngs=rngs)
        first = layers.SelfBlock(
            config.dim,
            config.heads,
            config.ffn_dim,
            config.dropout,
            rngs=rngs,
            attention_dropout=True,
        )
        # torch.nn.TransformerEncoder deep-copies one layer, so all layers start identical.
        self.fusion_encoder = nnx.Dict(
            {str(i): first if i == 0 else nnx.clone(first) for i in range(config.encoder_layers)}
        )

    def __call__(
        self,
        inputs: dict[str, jax.Array],
        *,
        rng: jax.Array | None = None,
        inter: dict[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        r_lane, r_cross, r_fusion = layers.split_rng(rng, 3)
        ego_BxTx7 = inputs["ego_agent_past"]
        neighbors_BxAxTx11 = inputs["neighbor_agents_past"]
        b, n_nb, n_t, n_f = neighbors_BxAxTx11.shape
        actors_BxAxTx5 = jnp.concatenate(
            [ego_BxTx7[:, None, :, :5], neighbors_BxAxTx11[..., :5]], axis=1
        )

        encoded_ego_BxD = self.ego_encoder(ego_BxTx7)
        encoded_neighbors_BxAxD = self.agent_encoder(neighbors_BxAxTx11.reshape(b * n_nb, n_t, n_f))
        encoded_neighbors_BxAxD = encoded_neighbors_BxAxD.reshape(b, n_nb, -1)
        actors_BxAxD = jnp.concatenate([encoded_ego_BxD[:, None], encoded_neighbors_BxAxD], axis=1)
        actors_mask_BxA = actors_BxAxTx5[:, :, -1].sum(-1) == 0

        lanes_BxSxD, lanes_mask = self.lane_encoder(inputs["map_lanes"], rng=r_lane)
        cross_BxSxD, cross_mask = self.crosswalk_encoder(inputs["map_crosswalks"], rng=r_cross)

        x_BxSxD = jnp.concatenate([actors_BxAxD, lanes_BxSxD, cross_BxSxD], axis=1)
        mask_BxS = jnp.concatenate([actors_mask_BxA, lanes_mask, cross_mask], axis=1)
        fusion_rngs = layers.split_rng(r_fusion, len(self.fusion_encoder))
        for i in range(len(self.fusion_encoder)):
            x_BxSxD = self.fusion_encoder[str(i)](x_BxSxD, mask_BxS, rng=fusion_rngs[i])

        if inter is not None:
            inter.update(
                {
                    "encoder.actors": actors_BxAxTx5,
                    "encoder.encoded_ego": encoded_ego_BxD,
                    "encoder.encoded_neighbors": encoded_neighbors_BxAxD,
                    "encoder.lane_tokens": lanes_BxSxD,
                    "encoder.lane_mask": lanes_mask,
                    "encoder.crosswalk_tokens": cross_BxSxD,
                    "encoder.crosswalk_mask": cross_mask,
                    "encoder.mask": mask_BxS,
                    "encoder.encoding": x_BxSxD,
                }
            )
        return {"actors": actors_BxAxTx5, "encoding": x_BxSxD, "mask": mask_BxS}
