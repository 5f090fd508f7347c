"""GameFormer-Planner in JAX/Flax NNX with a pure functional API.

params = init_params(model_config, key)              # plain nested dict of float32 arrays
outputs = apply(params, inputs, model_config, rng=None)  # rng given = dropout on
"""

from gf_jax.model.gameformer import (
    INPUT_KEYS,
    GameFormer,
    abstract_params,
    apply,
    apply_with_intermediates,
    graphdef,
    init_params,
    param_count,
)

__all__ = [
    "INPUT_KEYS",
    "GameFormer",
    "abstract_params",
    "apply",
    "apply_with_intermediates",
    "graphdef",
    "init_params",
    "param_count",
]
