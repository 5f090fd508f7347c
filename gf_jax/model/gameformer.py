"""GameFormer-Planner as Flax NNX modules behind a pure functional API.

`init_params` returns a plain nested dict of float32 arrays; `apply` merges it with a graph
definition cached per (frozen, hashable) ModelConfig and runs the forward pass. Nothing else is
stored: position tables and index ranges are recomputed, dropout keys come from `rng`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from gf_jax.config import ModelConfig
from gf_jax.model import layers
from gf_jax.model.decoder import Decoder
from gf_jax.model.encoder import Encoder
from gf_jax.model.planner import Planner

Params = dict[str, Any]

INPUT_KEYS = (
    "ego_agent_past",
    "neighbor_agents_past",
    "map_lanes",
    "map_crosswalks",
    "route_lanes",
)


class GameFormer(nnx.Module):
    """Encoder -> level-k decoder -> neural planner (the original's `GameFormer`)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)
        self.planner = Planner(config, rngs=rngs)

    def __call__(
        self,
        inputs: dict[str, jax.Array],
        *,
        rng: jax.Array | None = None,
        inter: dict[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        r_enc, r_dec, r_plan = layers.split_rng(rng, 3)
        enc = self.encoder(inputs, rng=r_enc, inter=inter)
        outputs, env_encoding_BxMxD = self.decoder(
            enc["actors"], enc["encoding"], enc["mask"], rng=r_dec, inter=inter
        )
        initial_Bx5 = enc["actors"][:, 0, -1]
        outputs["ego_plan"] = self.planner(
            env_encoding_BxMxD, inputs["route_lanes"], initial_Bx5, rng=r_plan, inter=inter
        )
        return outputs


@functools.lru_cache(maxsize=32)
def _abstract_model(model_config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    model = nnx.eval_shape(lambda: GameFormer(model_config, rngs=nnx.Rngs(0)))
    return nnx.split(model)


def graphdef(model_config: ModelConfig) -> nnx.GraphDef:
    """The module graph for a config, built abstractly (no arrays allocated) and cached."""
    return _abstract_model(model_config)[0]


def _nest(flat: dict[tuple[str, ...], Any]) -> Params:
    tree: Params = {}
    for path, value in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return tree


@functools.lru_cache(maxsize=32)
def _jitted_init(model_config: ModelConfig):
    leaves = [
        (tuple(str(p) for p in path), var.shape, var.get_metadata()["init"])
        for path, var in nnx.to_flat_state(_abstract_model(model_config)[1])
    ]

    def init(key: jax.Array) -> Params:
        # Two flat draws (uniform, normal) sliced into all tensors: the same distributions as
        # drawing tensor by tensor, at a fraction of the compile time.
        sizes = {"uniform": 0, "normal": 0}
        for _, shape, (kind, _) in leaves:
            if kind in sizes:
                sizes[kind] += math.prod(shape)
        k_uniform, k_normal = jax.random.split(key)
        pools = {
            "uniform": jax.random.uniform(k_uniform, (sizes["uniform"],), jnp.float32, -1.0, 1.0),
            "normal": jax.random.normal(k_normal, (sizes["normal"],), jnp.float32),
        }
        offsets = {"uniform": 0, "normal": 0}
        flat = {}
        for path, shape, (kind, scale) in leaves:
            if kind == "constant":
                flat[path] = jnp.full(shape, scale, jnp.float32)
                continue
            n = math.prod(shape)
            flat[path] = scale * pools[kind][offsets[kind] : offsets[kind] + n].reshape(shape)
            offsets[kind] += n
        params = _nest(flat)
        # torch.nn.TransformerEncoder deep-copies one layer: all fusion layers start identical.
        fusion = params["encoder"]["fusion_encoder"]
        for name in fusion:
            fusion[name] = fusion["0"]
        return params

    return jax.jit(init)


def init_params(model_config: ModelConfig, key: jax.Array) -> Params:
    """Fresh parameters with PyTorch's default initialisation distributions (spec 3.10)."""
    model_config.validate()
    return _jitted_init(model_config)(key)


def abstract_params(model_config: ModelConfig) -> Params:
    """Shapes and dtypes of the parameter tree (jax.ShapeDtypeStruct leaves), nothing allocated."""
    return jax.eval_shape(lambda: init_params(model_config, jax.random.key(0)))


def param_count(params: Params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


def _model_inputs(inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    missing = [k for k in INPUT_KEYS if k not in inputs]
    if missing:
        raise KeyError(f"model inputs lack {missing}; got {sorted(inputs)}")
    return {k: jnp.asarray(inputs[k], jnp.float32) for k in INPUT_KEYS}


@functools.partial(jax.jit, static_argnames=("model_config", "intermediates"))
def _forward(
    params: Params,
    inputs: dict[str, jax.Array],
    model_config: ModelConfig,
    rng: jax.Array | None,
    intermediates: bool,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    # Jitted so that eager callers do not dispatch op by op; inside an outer jit/grad/vmap it is
    # simply inlined.
    model = nnx.merge(graphdef(model_config), params)
    inter: dict[str, jax.Array] | None = {} if intermediates else None
    outputs = model(inputs, rng=rng, inter=inter)
    return outputs, inter or {}


def apply(
    params: Params,
    inputs: dict[str, jax.Array],
    model_config: ModelConfig,
    *,
    rng: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The forward pass; pure. `rng` given means dropout on; extra input keys are ignored.

    Returns `level_{k}_interactions` [B, 1+neighbors, M, T, 4] (mu absolute),
    `level_{k}_scores` [B, 1+neighbors, M] for k = 0..decoder_levels, and `ego_plan` [B, T, 3].
    """
    return _forward(params, _model_inputs(inputs), model_config, rng, False)[0]


def apply_with_intermediates(
    params: Params,
    inputs: dict[str, jax.Array],
    model_config: ModelConfig,
    *,
    rng: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """`apply` plus the stage tensors under the parity fixture's `inter.*` names (no prefix)."""
    return _forward(params, _model_inputs(inputs), model_config, rng, True)
