"""Gaussian random projections of stacked per-example gradients (Johnson-Lindenstrauss sketches).

The projection matrix R (F x dim, entries N(0, 1/dim), F the flattened gradient dimension) is
never stored: each leaf's rows are drawn in blocks of PROJECT_BLOCK from
`fold_in(fold_in(key, leaf), block)`, so the same key projects every vector with the same R, and
E[<R^T a, R^T b>] = <a, b>.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

PROJECT_BLOCK = 4096


@functools.partial(jax.jit, static_argnames=("dim",))
def project(grads_B: Any, key: jax.Array, dim: int) -> jax.Array:
    """[B, dim] Gaussian random projections `R^T g_b` of stacked per-example gradients."""
    out_BxF = None
    for leaf_i, g in enumerate(jax.tree.leaves(grads_B)):
        acc_BxF = _project_leaf(g, jax.random.fold_in(key, leaf_i), dim)
        out_BxF = acc_BxF if out_BxF is None else out_BxF + acc_BxF
    return out_BxF / jnp.sqrt(jnp.float32(dim))


def _project_leaf(g: jax.Array, leaf_key: jax.Array, dim: int) -> jax.Array:
    """[B, dim] unscaled projection of one leaf [B, ...], its rows of R drawn block by block."""
    batch = g.shape[0]
    width = math.prod(g.shape[1:])
    block = min(width, PROJECT_BLOCK)
    n_blocks = -(-width // block)
    # [B, n_blocks, block]: the leaf's flattened gradient, zero-padded to whole blocks.
    blocks = jnp.pad(g.reshape(batch, width), ((0, 0), (0, n_blocks * block - width)))
    blocks = blocks.reshape(batch, n_blocks, block)

    def body(b: jax.Array, acc_BxF: jax.Array) -> jax.Array:
        r = jax.random.normal(jax.random.fold_in(leaf_key, b), (block, dim), jnp.float32)
        rows = jax.lax.dynamic_index_in_dim(blocks, b, axis=1, keepdims=False)  # [B, block]
        return acc_BxF + rows.astype(jnp.float32) @ r

    return jax.lax.fori_loop(0, n_blocks, body, jnp.zeros((batch, dim), jnp.float32))
