"""Neural planner head: route encoding, cross attention, control MLP and a unicycle rollout.

The rollout copies the original's quirks (spec 3.8): the speed clamp acts on the cumulative
sum, the yaw is wrapped with C-style fmod (sign of the dividend), and each step uses the
already-updated speed and yaw (semi-implicit Euler).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from gf_jax.config import ModelConfig
from gf_jax.data import schema
from gf_jax.model import layers
from gf_jax.model.encoder import VectorMapEncoder

DT = 0.1
MAX_ACCEL = 5.0
MAX_CURVATURE = 0.5


def unicycle_rollout(controls_BxTx2: jax.Array, initial_Bx5: jax.Array) -> jax.Array:
    """(acceleration, curvature) controls -> (x, y, yaw) [B, T, 3] from (x, y, yaw, vx, vy)."""
    speed0_B = jnp.hypot(initial_Bx5[:, 3], initial_Bx5[:, 4])
    accel_BxT = layers.torch_clamp(controls_BxTx2[..., 0], -MAX_ACCEL, MAX_ACCEL)
    speed_BxT = speed0_B[:, None] + jnp.cumsum(accel_BxT * DT, axis=-1)
    speed_BxT = layers.torch_clamp(speed_BxT, lo=0.0)

    yaw_rate_BxT = layers.torch_clamp(controls_BxTx2[..., 1], -MAX_CURVATURE, MAX_CURVATURE)
    yaw_rate_BxT = yaw_rate_BxT * speed_BxT
    yaw_BxT = initial_Bx5[:, None, 2] + jnp.cumsum(yaw_rate_BxT * DT, axis=-1)
    yaw_BxT = jnp.fmod(yaw_BxT, 2 * math.pi)

    x_BxT = initial_Bx5[:, None, 0] + jnp.cumsum(speed_BxT * jnp.cos(yaw_BxT) * DT, axis=-1)
    y_BxT = initial_Bx5[:, None, 1] + jnp.cumsum(speed_BxT * jnp.sin(yaw_BxT) * DT, axis=-1)
    return jnp.stack([x_BxT, y_BxT, yaw_BxT], axis=-1)


class Planner(nnx.Module):
    """Ego plan from the final ego content (6 mode queries) and the route lanes.

    Control MLP widths: the original's 512 -> 256 -> 80*2, i.e. 2*dim -> dim -> 2*T.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d = config.dim
        self.route_fusion = layers.CrossBlock(
            d, config.heads, config.ffn_dim, config.dropout, rngs=rngs
        )
        self.plan_decoder = layers.MLP(
            (2 * d, d, 2 * config.future_steps),
            jax.nn.elu,
            rngs=rngs,
            dropout_rate=config.dropout,
        )
        self.route_encoder = VectorMapEncoder(len(schema.POLYLINE_CHANNELS), config, rngs=rngs)
        self.future_steps = config.future_steps

    def __call__(
        self,
        env_encoding_BxMxD: jax.Array,
        route_lanes_BxLxPx3: jax.Array,
        initial_Bx5: jax.Array,
        *,
        rng: jax.Array | None = None,
        inter: dict[str, jax.Array] | None = None,
    ) -> jax.Array:
        r_route, r_fusion, r_plan = layers.split_rng(rng, 3)
        route_BxSxD, route_mask_raw = self.route_encoder(route_lanes_BxLxPx3, rng=r_route)
        # Token 0 is always a valid key, so a sample without route lanes still attends somewhere.
        route_mask = route_mask_raw.at[:, 0].set(False)
        route_enc_BxMxD = self.route_fusion(
            env_encoding_BxMxD, route_BxSxD, route_mask, rng=r_fusion
        )
        both_BxMx2D = jnp.concatenate([env_encoding_BxMxD, route_enc_BxMxD], axis=-1)
        pooled_Bx2D = both_BxMx2D.max(axis=1)
        controls = self.plan_decoder(pooled_Bx2D, rng=r_plan)
        controls_BxTx2 = controls.reshape(-1, self.future_steps, 2)
        if inter is not None:
            inter.update(
                {
                    "planner.route_tokens": route_BxSxD,
                    "planner.route_mask_raw": route_mask_raw,
                    "planner.route_mask": route_mask,
                    "planner.route_encoding": route_enc_BxMxD,
                    "planner.controls": controls_BxTx2,
                }
            )
        return unicycle_rollout(controls_BxTx2, initial_Bx5)
