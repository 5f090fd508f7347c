"""The jitted per-chunk programs of one loss function, and the XLA options they compile with.

A model enters only through `loss_fn(params, example) -> scalar` for ONE example (a pytree without
batch axis), or `loss_fn(params, example, rng)` when dropout is on during scoring: example i then
gets the key `fold_in(dropout_key, i)`, so its randomness depends neither on the chunk it lands
in, nor on the mode, nor on the device count.

Kernels are cached per (loss function object, dropout on/off, compiler options): keep `loss_fn`
alive and reuse it, since a fresh lambda per call recompiles. Every cache of compiled valuation
code (here, `valuation.hvp`, `valuation.lissa`) is keyed on `compiler_options_key()`, so
`set_compiler_options` never serves a program compiled under other options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from valuation.trees import Params

LossFn = Callable[..., jax.Array]

_COMPILER_OPTIONS: dict[str, Any] = {}


def set_compiler_options(options: dict[str, Any] | None) -> None:
    """XLA options for valuation kernels compiled from now on (None: XLA's defaults).

    `{"xla_backend_optimization_level": 0}` compiles CPU programs about 2.5x faster and runs
    them about 3x slower: the right trade for tests of a model that takes 25 s to compile.
    """
    _COMPILER_OPTIONS.clear()
    _COMPILER_OPTIONS.update(options or {})


def compiler_options_key() -> tuple:
    """The current options as a hashable key (kernel caches are keyed on it)."""
    return tuple(sorted(_COMPILER_OPTIONS.items()))


def jit(fn: Callable, **kwargs: Any) -> Any:
    """`jax.jit` with the current valuation compiler options."""
    return jax.jit(fn, compiler_options=dict(_COMPILER_OPTIONS) or None, **kwargs)


def default_key(dropout_key: jax.Array | None) -> jax.Array:
    """The key a kernel is called with: `dropout_key`, or one fixed key without dropout.

    Without dropout the key is never read (XLA drops it); one fixed key keeps signatures equal.
    """
    return dropout_key if dropout_key is not None else jax.random.key(0)


class Kernels(NamedTuple):
    """The jitted per-chunk programs for one loss function (compiled once per shape)."""

    losses: Callable  # (params, chunk, key, index_B) -> [B]
    grads: Callable  # (params, chunk, key, index_B) -> pytree [B, ...]
    grad_sum: Callable  # (params, chunk, weight_B, key, index_B) -> pytree
    jvp: Callable  # (params, chunk, v, key, index_B) -> [B]
    example_grad: Callable  # (params, example, key, i) -> pytree


def kernels(loss_fn: LossFn, with_rng: bool) -> Kernels:
    """Jitted kernels for `loss_fn`; cached per function object, so keep loss_fn alive and reuse
    it (a fresh lambda per call recompiles)."""
    return _kernels(loss_fn, with_rng, compiler_options_key())


@functools.lru_cache(maxsize=64)
def _kernels(loss_fn: LossFn, with_rng: bool, _options: tuple) -> Kernels:
    # `_options` only keys the cache: `jit` reads the current options itself.

    def one(params: Params, example: Any, key: jax.Array, i: jax.Array) -> jax.Array:
        if with_rng:
            return loss_fn(params, example, jax.random.fold_in(key, i))
        return loss_fn(params, example)

    def losses_B(params, chunk, key, index_B):
        return jax.vmap(one, (None, 0, None, 0))(params, chunk, key, index_B)

    def grads_B(params, chunk, key, index_B):
        return jax.vmap(jax.grad(one), (None, 0, None, 0))(params, chunk, key, index_B)

    def grad_sum(params, chunk, weight_B, key, index_B):
        # One backward pass for the whole chunk: grad of the weighted sum, not a sum of grads.
        return jax.grad(lambda p: jnp.sum(losses_B(p, chunk, key, index_B) * weight_B))(params)

    def jvp_B(params, chunk, v, key, index_B):
        return jax.jvp(lambda p: losses_B(p, chunk, key, index_B), (params,), (v,))[1]

    return Kernels(
        losses=jit(losses_B),
        grads=jit(grads_B),
        grad_sum=jit(grad_sum),
        jvp=jit(jvp_B),
        example_grad=jit(jax.grad(one)),
    )
