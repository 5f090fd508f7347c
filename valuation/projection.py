"""Random projections of per-example gradients (Johnson-Lindenstrauss sketches), chunk by chunk.

A projection R maps a flattened gradient g in R^F (F the parameter count; leaves in
`jax.tree.leaves` order, each flattened row-major) to R^dim, with E[R R^T] = I so that
E[<R^T g_i, R^T g_j>] = <g_i, g_j>. Two kinds:

  gaussian    entries N(0, 1/dim), never materialised: each leaf's rows of R are drawn in blocks of
              PROJECT_BLOCK from `fold_in(fold_in(key, leaf), block)`, so the same key projects
              every example, in any chunk and on any number of devices, with the same R. For two
              vectors the relative error of the projected inner product has standard deviation
              sqrt((1 + cos^2) / dim) <= sqrt(2 / dim).
  orthogonal  a Haar-random orthogonal F x F matrix built from the key (dim must equal F): inner
              products are preserved exactly, up to float32 rounding. It IS materialised, so only
              for small models (F <= ORTHOGONAL_MAX); it exists to test exact code paths.

`project` sketches the stacked gradients of one chunk; `project_gradients` runs a whole pass of a
loss over a dataset (`valuation.passes`), chunked over examples and split over the mesh;
`materialise` writes R out, for references in tests of small models. Every contraction runs at
HIGHEST precision: on GPUs the default float32 matmul rounds its inputs to TF32, which would make
the orthogonal kind inexact and rows depend on the backend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gf_jax import mesh as mesh_lib
from valuation import passes
from valuation.chunks import collect_trees
from valuation.kernels import LossFn
from valuation.trees import Data, Params

PROJECT_BLOCK = 4096
KINDS = ("gaussian", "orthogonal")
ORTHOGONAL_MAX = 4096  # an F x F float64 QR: ~1 s and 128 MiB at this size
_HIGHEST = jax.lax.Precision.HIGHEST


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
        return acc_BxF + jnp.matmul(rows.astype(jnp.float32), r, precision=_HIGHEST)

    return jax.lax.fori_loop(0, n_blocks, body, jnp.zeros((batch, dim), jnp.float32))


def num_params(params: Params) -> int:
    """F: the number of scalars in a parameter (or gradient) pytree."""
    return sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params))


def orthogonal_matrix(key: jax.Array, f: int) -> np.ndarray:
    """A Haar-random orthogonal [F, F] float32 matrix drawn from `key` (F <= ORTHOGONAL_MAX).

    QR in float64 on the host, so the only error left is the final rounding to float32.
    """
    if not 1 <= f <= ORTHOGONAL_MAX:
        raise ValueError(f"an orthogonal projection needs 1 <= F <= {ORTHOGONAL_MAX}, got F={f}")
    gauss = np.asarray(jax.random.normal(key, (f, f), jnp.float32), np.float64)
    q, r = np.linalg.qr(gauss)
    # Signs of R's diagonal make Q Haar-distributed (plain QR is biased towards some signs).
    return (q * np.sign(np.diag(r))).astype(np.float32)


@jax.jit
def rotate(grads_B: Any, q_FxF: jax.Array) -> jax.Array:
    """[B, F] flattened stacked gradients times a materialised [F, F] matrix."""
    leaves = jax.tree.leaves(grads_B)
    flat_BxF = jnp.concatenate([g.reshape(g.shape[0], -1).astype(jnp.float32) for g in leaves], 1)
    return jnp.matmul(flat_BxF, q_FxF, precision=_HIGHEST)


def projector(
    params: Params, *, dim: int, key: jax.Array, kind: str = "gaussian", mesh: Mesh | None = None
) -> Callable[[Any], jax.Array]:
    """The chunk map `grads_B -> [B, dim]` of one projection, set up once for a pass.

    `params` only gives F (checked against `dim` for the orthogonal kind); the orthogonal matrix
    is built once and replicated over `mesh` rather than once per chunk.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown projection kind {kind!r}; choose one of {KINDS}")
    if dim < 1:
        raise ValueError(f"projection dim must be >= 1, got {dim}")
    if kind == "gaussian":
        # Replicated like the parameters, so a key committed to one device still meets every
        # device's shard of the chunk.
        key = mesh_lib.replicate(key, mesh) if mesh is not None else key
        return functools.partial(project, key=key, dim=dim)
    f = num_params(params)
    if dim != f:
        raise ValueError(f"an orthogonal projection keeps every dimension: dim must be F={f}")
    q_FxF = jnp.asarray(orthogonal_matrix(key, f))
    if mesh is not None:
        q_FxF = mesh_lib.replicate(q_FxF, mesh)
    return functools.partial(rotate, q_FxF=q_FxF)


def materialise(params: Params, *, dim: int, key: jax.Array, kind: str = "gaussian") -> np.ndarray:
    """The projection R itself, float64 [F, dim], for references in tests of small models:
    row f is the projection of the f-th unit vector of the flattened parameters."""
    leaves, treedef = jax.tree.flatten(params)
    f = num_params(params)
    eye_FxF = np.eye(f, dtype=np.float32)
    starts = np.cumsum([0] + [math.prod(np.shape(x)) for x in leaves])
    columns = [
        eye_FxF[:, a:b].reshape(f, *np.shape(x))
        for a, b, x in zip(starts[:-1], starts[1:], leaves, strict=True)
    ]
    basis = treedef.unflatten(columns)
    proj = projector(params, dim=dim, key=key, kind=kind)
    return np.asarray(proj(basis), np.float64)


def project_gradients(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    dim: int,
    key: jax.Array,
    kind: str = "gaussian",
    chunk_size: int = 64,  # grads.DEFAULT_CHUNK (grads imports this module, not the reverse)
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Projected per-example gradients `R^T grad loss_fn(params, z_i)`, float32 [N, dim].

    Args:
      loss_fn: `loss_fn(params, example) -> scalar` for ONE example (no batch axis); with
        `dropout_key`, called as `loss_fn(params, example, rng)` (see `valuation.grads`).
      params: the parameters the gradients are taken at.
      data: pytree with leading axis N.
      dim: the projected dimension (F for the orthogonal kind).
      key: chooses R; the same key gives the same R for every example, chunking and mesh.
      kind: `gaussian` (default) or `orthogonal` (exact; see the module doc).
      chunk_size: examples per jitted call (rounded to the device count); bounds memory to one
        chunk of full gradients, [chunk_size, F], plus one block of R, [PROJECT_BLOCK, dim].
      mesh: devices to split chunks over (default: every device).
    """
    p = passes.prepare(
        loss_fn, params, data, chunk_size=chunk_size, dropout_key=dropout_key, mesh=mesh
    )
    proj = projector(params, dim=dim, key=key, kind=kind, mesh=p.mesh)
    if p.n == 0:
        return np.zeros((0, dim), np.float32)
    return collect_trees([proj(p.grads(c)) for c in p.chunks()], p.n)
