"""Per-example losses, gradients and directional derivatives of any JAX model, chunk by chunk.

A model enters only through `loss_fn(params, example) -> scalar` for ONE example (a pytree without
batch axis), or `loss_fn(params, example, rng)` when dropout is on during scoring: with
`dropout_key` given, example i of a dataset gets the key `fold_in(dropout_key, i)`, so its
randomness depends neither on the chunk it lands in, nor on the mode, nor on the device count.
Datasets are pytrees of arrays with leading axis N (host numpy, memory maps or device arrays).

Every pass walks the dataset in chunks of ONE fixed size (`valuation.chunks`); the set-up they
share is `valuation.passes.prepare`. With a mesh of several devices the chunks are split over its
`data` axis and parameters and tangents are replicated. Results stay on the device until a pass
has been dispatched completely: there is no host sync inside a loop.

Three ways to get `<grad l_i, v>` for every i (see `grad_dots`):
  jvp   one forward-mode JVP of the per-example loss VECTOR along v (no backward pass at all);
  vmap  per-example gradients as vmap(grad) over a chunk, contracted with v;
  loop  one jitted batch-1 gradient per example in a Python loop (the paper's approach; reference).

This module is also the valuation package's front door for the machinery it is built on: the
tree helpers, chunks, kernels, compiler options and projection are re-exported under their
`valuation.grads.<name>` names.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from valuation import passes
from valuation.chunks import Chunk, chunk_size_for, collect_trees, iter_chunks, resolve_mesh
from valuation.kernels import (
    Kernels,
    LossFn,
    compiler_options_key,
    jit,
    kernels,
    set_compiler_options,
)
from valuation.projection import PROJECT_BLOCK, project
from valuation.trees import (
    Data,
    Params,
    dots_with,
    example_at,
    num_examples,
    sq_norms,
    tree_add,
    tree_dot,
    tree_scale,
    tree_sum,
    weighted_sum,
)

__all__ = [
    "DEFAULT_CHUNK",
    "MODES",
    "PROJECT_BLOCK",
    "Chunk",
    "Data",
    "Kernels",
    "LossFn",
    "Params",
    "chunk_size_for",
    "compiler_options_key",
    "dots_with",
    "example_at",
    "grad_dots",
    "grad_sq_norms",
    "iter_chunks",
    "jit",
    "kernels",
    "mean_grad",
    "num_examples",
    "per_example_grads",
    "per_example_losses",
    "project",
    "resolve_mesh",
    "set_compiler_options",
    "sq_norms",
    "tree_add",
    "tree_dot",
    "tree_scale",
    "tree_sum",
    "weighted_sum",
]

MODES = ("jvp", "vmap", "loop")
DEFAULT_CHUNK = 64


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")


def per_example_losses(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Loss of every example, float64 [N]."""
    p = passes.prepare(
        loss_fn, params, data, chunk_size=chunk_size, dropout_key=dropout_key, mesh=mesh
    )
    return p.map_chunks(p.losses)


def grad_dots(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    v: Params,
    *,
    mode: str = "jvp",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """`<grad l_i(params), v>` for every example i, float64 [N], by `mode` (see module doc)."""
    _check_mode(mode)
    p = passes.prepare(
        loss_fn,
        params,
        data,
        chunk_size=chunk_size,
        dropout_key=dropout_key,
        mesh=mesh,
        tangent=v,
        per_example=mode == "loop",
    )
    if mode == "loop":
        return p.map_example_grads(lambda g: tree_dot(g, p.tangent))
    if mode == "jvp":
        return p.map_chunks(p.jvp)
    return p.map_chunks(lambda c: dots_with(p.grads(c), p.tangent))


def grad_sq_norms(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    mode: str = "vmap",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """`<grad l_i, grad l_i>` for every example, float64 [N] (needs every g_i: vmap or loop)."""
    if mode not in ("vmap", "loop"):
        raise ValueError(f"squared gradient norms need mode 'vmap' or 'loop', got {mode!r}")
    p = passes.prepare(
        loss_fn,
        params,
        data,
        chunk_size=chunk_size,
        dropout_key=dropout_key,
        mesh=mesh,
        per_example=mode == "loop",
    )
    if mode == "loop":
        return p.map_example_grads(lambda g: tree_dot(g, g))
    return p.map_chunks(lambda c: sq_norms(p.grads(c)))


def mean_grad(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    mode: str = "jvp",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> Params:
    """The exact mean of the per-example gradients over `data` (a device pytree).

    `jvp` mode takes the gradient of each chunk's weighted loss sum (one backward per chunk,
    padding weighted 0); `vmap` sums per-example gradients; `loop` averages batch-1 gradients.
    All three are the same number up to float32 rounding.
    """
    _check_mode(mode)
    p = passes.prepare(
        loss_fn,
        params,
        data,
        chunk_size=chunk_size,
        dropout_key=dropout_key,
        mesh=mesh,
        per_example=mode == "loop",
    )
    if p.n == 0:
        raise ValueError("mean gradient of an empty dataset")
    if mode == "loop":
        total = tree_sum(p.example_grads())
    elif mode == "jvp":
        total = tree_sum(p.grad_sum(c) for c in p.chunks())
    else:
        total = tree_sum(weighted_sum(p.grads(c), c.weight_B) for c in p.chunks())
    return tree_scale(total, jnp.float32(1.0 / p.n))


def per_example_grads(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
    project_dim: int | None = None,
    project_key: jax.Array | None = None,
) -> Any:
    """Every example's gradient: a host pytree of [N, ...] arrays, or with `project_dim` the
    [N, project_dim] float32 random projections `R^T g_i` (`project`), which keep inner products
    in expectation at a fraction of the memory."""
    p = passes.prepare(
        loss_fn, params, data, chunk_size=chunk_size, dropout_key=dropout_key, mesh=mesh
    )
    if project_dim is None:
        return collect_trees([p.grads(c) for c in p.chunks()], p.n)
    key = project_key if project_key is not None else jax.random.key(0)
    return collect_trees([project(p.grads(c), key, project_dim) for c in p.chunks()], p.n)
