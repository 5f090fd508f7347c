"""Per-example losses, gradients and directional derivatives of any JAX model, chunk by chunk.

A model enters only through `loss_fn(params, example) -> scalar` for ONE example (a pytree without
batch axis), or `loss_fn(params, example, rng)` when dropout is on during scoring: with
`dropout_key` given, example i of a dataset gets the key `fold_in(dropout_key, i)`, so its
randomness depends neither on the chunk it lands in, nor on the mode, nor on the device count.
Datasets are pytrees of arrays with leading axis N (host numpy, memory maps or device arrays).

Every pass walks the dataset in chunks of ONE fixed size; the last chunk is padded by repeating
its last example with weight 0, so each jitted kernel compiles once per shape. With a mesh of
several devices the chunks are split over its `data` axis and parameters and tangents are
replicated. Results stay on the device until a pass has been dispatched completely: there is no
host sync inside a loop.

Three ways to get `<grad l_i, v>` for every i (see `grad_dots`):
  jvp   one forward-mode JVP of the per-example loss VECTOR along v (no backward pass at all);
  vmap  per-example gradients as vmap(grad) over a chunk, contracted with v;
  loop  one jitted batch-1 gradient per example in a Python loop (the paper's approach; reference).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gf_jax import mesh as mesh_lib

Params = Any
Data = Any
LossFn = Callable[..., jax.Array]
MODES = ("jvp", "vmap", "loop")
DEFAULT_CHUNK = 64

# ----------------------------------------------------------------------------- compilation

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


# ----------------------------------------------------------------------------- tree helpers


@jax.jit
def tree_dot(a: Any, b: Any) -> jax.Array:
    """<a, b> summed over all leaves (float32 scalar)."""
    parts = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
    return functools.reduce(jnp.add, parts, jnp.zeros((), jnp.float32))


@jax.jit
def tree_add(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def tree_scale(a: Any, s: jax.Array) -> Any:
    return jax.tree.map(lambda x: x * s.astype(x.dtype), a)


@jax.jit
def dots_with(grads_C: Any, v: Any) -> jax.Array:
    """[C] inner products of stacked per-example gradients with one vector v."""
    parts = jax.tree.map(
        lambda g, x: jnp.tensordot(g.reshape(g.shape[0], -1), x.reshape(-1), 1), grads_C, v
    )
    return functools.reduce(jnp.add, jax.tree.leaves(parts))


@jax.jit
def sq_norms(grads_C: Any) -> jax.Array:
    """[C] squared norms of stacked per-example gradients."""
    parts = jax.tree.map(lambda g: jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), 1), grads_C)
    return functools.reduce(jnp.add, jax.tree.leaves(parts))


@jax.jit
def weighted_sum(grads_C: Any, weight_C: jax.Array) -> Any:
    """sum_c w_c g_c of stacked per-example gradients."""
    return jax.tree.map(lambda g: jnp.tensordot(weight_C.astype(g.dtype), g, 1), grads_C)


def num_examples(data: Data) -> int:
    """The common leading dimension N of every leaf; raises if they disagree."""
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"dataset leaves disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


# ----------------------------------------------------------------------------- chunks


def resolve_mesh(mesh: Mesh | None) -> Mesh:
    """The given mesh, or a `data` mesh over every device."""
    return mesh if mesh is not None else mesh_lib.data_mesh()


def chunk_size_for(n: int, chunk_size: int, mesh: Mesh) -> int:
    """The one chunk size a pass over n examples uses: at most `chunk_size` (no larger than
    needed for n), rounded up to a multiple of the device count."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return mesh_lib.round_up_to_devices(max(1, min(chunk_size, n)), mesh)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A fixed-size slice of a dataset, placed on the devices."""

    data: Any  # pytree, leading axis C
    weight_C: jax.Array  # 1 for real examples, 0 for padding
    index_C: jax.Array  # int32 global example index (padding repeats the last real one)
    start: int
    n_valid: int


def iter_chunks(data: Data, chunk_size: int, mesh: Mesh) -> Iterator[Chunk]:
    """Chunks of exactly `chunk_size` examples (use `chunk_size_for`) split over `mesh`."""
    n = num_examples(data)
    if chunk_size % mesh.devices.size:
        raise ValueError(f"chunk size {chunk_size} is not divisible by {mesh.devices.size} devices")
    sharding = NamedSharding(mesh, PartitionSpec(mesh_lib.DATA_AXIS))
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        idx = np.arange(start, start + chunk_size)
        idx[stop - start :] = stop - 1
        weight = (np.arange(start, start + chunk_size) < stop).astype(np.float32)
        host = jax.tree.map(functools.partial(_take, idx=idx, start=start, stop=stop), data)
        placed = jax.device_put((host, weight, idx.astype(np.int32)), sharding)
        yield Chunk(placed[0], placed[1], placed[2], start, stop - start)


def _take(x: Any, idx: np.ndarray, start: int, stop: int) -> Any:
    # A contiguous slice reads a memory map sequentially; fancy indexing only for the padded tail.
    if stop - start == len(idx):
        return x[start:stop]
    return x[idx] if isinstance(x, jax.Array) else np.asarray(x)[idx]


def example_at(data: Data, i: int) -> Any:
    """Example i without batch axis."""
    return jax.tree.map(lambda x: x[i], data)


# ----------------------------------------------------------------------------- kernels


class Kernels(NamedTuple):
    """The jitted per-chunk programs for one loss function (compiled once per shape)."""

    losses: Callable  # (params, chunk, key, index_C) -> [C]
    grads: Callable  # (params, chunk, key, index_C) -> pytree [C, ...]
    grad_sum: Callable  # (params, chunk, weight_C, key, index_C) -> pytree
    jvp: Callable  # (params, chunk, v, key, index_C) -> [C]
    example_grad: Callable  # (params, example, key, i) -> pytree


def kernels(loss_fn: LossFn, with_rng: bool) -> Kernels:
    """Jitted kernels for `loss_fn`; cached per function object, so keep loss_fn alive and reuse
    it (a fresh lambda per call recompiles)."""
    return _kernels(loss_fn, with_rng, compiler_options_key())


@functools.lru_cache(maxsize=64)
def _kernels(loss_fn: LossFn, with_rng: bool, _options: tuple) -> Kernels:

    def one(params: Params, example: Any, key: jax.Array, i: jax.Array) -> jax.Array:
        if with_rng:
            return loss_fn(params, example, jax.random.fold_in(key, i))
        return loss_fn(params, example)

    def losses_C(params, chunk, key, index_C):
        return jax.vmap(one, (None, 0, None, 0))(params, chunk, key, index_C)

    def grads_C(params, chunk, key, index_C):
        return jax.vmap(jax.grad(one), (None, 0, None, 0))(params, chunk, key, index_C)

    def grad_sum(params, chunk, weight_C, key, index_C):
        # One backward pass for the whole chunk: grad of the weighted sum, not a sum of grads.
        return jax.grad(lambda p: jnp.sum(losses_C(p, chunk, key, index_C) * weight_C))(params)

    def jvp_C(params, chunk, v, key, index_C):
        return jax.jvp(lambda p: losses_C(p, chunk, key, index_C), (params,), (v,))[1]

    return Kernels(
        losses=jit(losses_C),
        grads=jit(grads_C),
        grad_sum=jit(grad_sum),
        jvp=jit(jvp_C),
        example_grad=jit(jax.grad(one)),
    )


def _key(dropout_key: jax.Array | None) -> jax.Array:
    # Without dropout the key is never read (XLA drops it); one fixed key keeps signatures equal.
    return dropout_key if dropout_key is not None else jax.random.key(0)


def _collect(parts: list[jax.Array], n: int) -> np.ndarray:
    """Concatenates per-chunk device results (one host transfer) and drops the padding."""
    host = jax.device_get(parts)
    if not host:
        return np.zeros(0, np.float64)
    return np.concatenate([np.asarray(p) for p in host])[:n].astype(np.float64)


# ----------------------------------------------------------------------------- passes


def _map_chunks(
    data: Data, n: int, chunk_size: int, mesh: Mesh, fn: Callable[[Chunk], jax.Array]
) -> np.ndarray:
    """`fn` over the padded, sharded chunks of `data`; the [N] float64 results, padding dropped."""
    return _collect(
        [fn(c) for c in iter_chunks(data, chunk_size_for(n, chunk_size, mesh), mesh)], n
    )


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
    mesh = resolve_mesh(mesh)
    k = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    params, key = mesh_lib.replicate((params, _key(dropout_key)), mesh)
    return _map_chunks(
        data, n, chunk_size, mesh, lambda c: k.losses(params, c.data, key, c.index_C)
    )


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
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    mesh = resolve_mesh(mesh)
    k = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    key = _key(dropout_key)
    if mode == "loop":
        v = jax.device_put(v, mesh.devices.flat[0])  # v may live on the whole mesh
        return _loop(k, params, data, key, mesh, lambda g: tree_dot(g, v))
    params, v, key = mesh_lib.replicate((params, v, key), mesh)
    if mode == "jvp":
        return _map_chunks(
            data, n, chunk_size, mesh, lambda c: k.jvp(params, c.data, v, key, c.index_C)
        )
    return _map_chunks(
        data, n, chunk_size, mesh, lambda c: dots_with(k.grads(params, c.data, key, c.index_C), v)
    )


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
    mesh = resolve_mesh(mesh)
    k = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    key = _key(dropout_key)
    if mode == "loop":
        return _loop(k, params, data, key, mesh, lambda g: tree_dot(g, g))
    params, key = mesh_lib.replicate((params, key), mesh)
    return _map_chunks(
        data, n, chunk_size, mesh, lambda c: sq_norms(k.grads(params, c.data, key, c.index_C))
    )


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
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    mesh = resolve_mesh(mesh)
    k = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    if n == 0:
        raise ValueError("mean gradient of an empty dataset")
    key = _key(dropout_key)
    total = None
    if mode == "loop":
        device = mesh.devices.flat[0]
        params, key = jax.device_put((params, key), device)
        for i in range(n):
            g = k.example_grad(params, jax.device_put(example_at(data, i), device), key, i)
            total = g if total is None else tree_add(total, g)
        return tree_scale(total, jnp.float32(1.0 / n))
    params, key = mesh_lib.replicate((params, key), mesh)
    for c in iter_chunks(data, chunk_size_for(n, chunk_size, mesh), mesh):
        if mode == "jvp":
            g = k.grad_sum(params, c.data, c.weight_C, key, c.index_C)
        else:
            g = weighted_sum(k.grads(params, c.data, key, c.index_C), c.weight_C)
        total = g if total is None else tree_add(total, g)
    return tree_scale(total, jnp.float32(1.0 / n))


def _loop(
    k: Kernels,
    params: Params,
    data: Data,
    key: jax.Array,
    mesh: Mesh,
    reduce: Callable[[Params], jax.Array],
) -> np.ndarray:
    """Batch-1 gradients one example at a time on one device (a single example cannot be split)."""
    device = mesh.devices.flat[0]
    params, key = jax.device_put((params, key), device)
    n = num_examples(data)
    parts = []
    for i in range(n):
        g = k.example_grad(params, jax.device_put(example_at(data, i), device), key, i)
        parts.append(reduce(g)[None])
    return _collect(parts, n)


# ----------------------------------------------------------------------------- projection


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
    mesh = resolve_mesh(mesh)
    k = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    params, key = mesh_lib.replicate((params, _key(dropout_key)), mesh)
    if project_dim is not None:
        pkey = project_key if project_key is not None else jax.random.key(0)
    parts = []
    for c in iter_chunks(data, chunk_size_for(n, chunk_size, mesh), mesh):
        g = k.grads(params, c.data, key, c.index_C)
        parts.append(g if project_dim is None else project(g, pkey, project_dim))
    host = jax.device_get(parts)
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *host)


PROJECT_BLOCK = 4096


@functools.partial(jax.jit, static_argnames=("dim",))
def project(grads_C: Any, key: jax.Array, dim: int) -> jax.Array:
    """[C, dim] Gaussian random projections of stacked per-example gradients.

    The matrix R (P x dim, entries N(0, 1/dim)) is never stored: each leaf's rows are drawn in
    blocks of PROJECT_BLOCK from `fold_in(fold_in(key, leaf), block)`, so the same key projects
    every vector with the same R, and E[<R^T a, R^T b>] = <a, b>.
    """
    out = None
    for leaf_i, g in enumerate(jax.tree.leaves(grads_C)):
        c = g.shape[0]
        m = math.prod(g.shape[1:])
        block = min(m, PROJECT_BLOCK)
        nb = -(-m // block)
        flat = jnp.pad(g.reshape(c, m), ((0, 0), (0, nb * block - m))).reshape(c, nb, block)
        leaf_key = jax.random.fold_in(key, leaf_i)

        def body(b, acc, flat=flat, leaf_key=leaf_key, block=block):
            r = jax.random.normal(jax.random.fold_in(leaf_key, b), (block, dim), jnp.float32)
            rows = jax.lax.dynamic_index_in_dim(flat, b, axis=1, keepdims=False)
            return acc + rows.astype(jnp.float32) @ r

        acc = jax.lax.fori_loop(0, nb, body, jnp.zeros((c, dim), jnp.float32))
        out = acc if out is None else out + acc
    return out / jnp.sqrt(jnp.float32(dim))
