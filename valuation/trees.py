"""Pytree algebra for parameters, gradients and datasets: inner products, sums, example access.

Parameters and gradients are pytrees of arrays (`Params`); a dataset is a pytree of arrays with a
common leading axis N (`Data`: host numpy, memory maps or device arrays). Stacked per-example
gradients carry a leading batch axis B (one chunk of examples). The reductions are jitted once
per tree structure and shape.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = Any
Data = Any


@jax.jit
def tree_dot(a: Any, b: Any) -> jax.Array:
    """<a, b> summed over all leaves (float32 scalar)."""
    parts = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
    return functools.reduce(jnp.add, parts, jnp.zeros((), jnp.float32))


@jax.jit
def tree_add(a: Any, b: Any) -> Any:
    """a + b leaf by leaf."""
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def tree_scale(a: Any, s: jax.Array) -> Any:
    """s * a leaf by leaf, in each leaf's dtype."""
    return jax.tree.map(lambda x: x * s.astype(x.dtype), a)


def tree_sum(trees: Iterable[Any]) -> Any:
    """The sum of one or more pytrees, added left to right as they come (so a generator of
    per-chunk results is dispatched one chunk at a time)."""
    return functools.reduce(tree_add, trees)


@jax.jit
def dots_with(grads_B: Any, v: Any) -> jax.Array:
    """[B] inner products of stacked per-example gradients with one vector v."""
    parts = jax.tree.map(
        lambda g, x: jnp.tensordot(g.reshape(g.shape[0], -1), x.reshape(-1), 1), grads_B, v
    )
    return functools.reduce(jnp.add, jax.tree.leaves(parts))


@jax.jit
def sq_norms(grads_B: Any) -> jax.Array:
    """[B] squared norms of stacked per-example gradients."""
    parts = jax.tree.map(lambda g: jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), 1), grads_B)
    return functools.reduce(jnp.add, jax.tree.leaves(parts))


@jax.jit
def weighted_sum(grads_B: Any, weight_B: jax.Array) -> Any:
    """sum_b w_b g_b of stacked per-example gradients."""
    return jax.tree.map(lambda g: jnp.tensordot(weight_B.astype(g.dtype), g, 1), grads_B)


def num_examples(data: Data) -> int:
    """The common leading dimension N of every leaf; raises if they disagree."""
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"dataset leaves disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def example_at(data: Data, i: int) -> Any:
    """Example i without batch axis."""
    return jax.tree.map(lambda x: x[i], data)
