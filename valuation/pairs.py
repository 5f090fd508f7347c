"""Per-pair attribution: a score for every (training example, validation target) pair.

    matrix_NxJ[i, j] = sum_k lr_k * s(g_i(theta_k), g_j(theta_k))

N training examples, J validation targets (one per validation example; shape letter J is local
to this module and `valuation.trak`), K checkpoints `(params, lr)`, g the per-example gradient
of `loss_fn`. The pair score s is, by `method`:

  tracin   <g_i, g_j>, the gradient dot product (TracIn per target). Its row means are TracIn:
           mean_j <g_i, g_j> = <g_i, gbar_val>, so `per_example(score_matrix(...))` equals
           `valuation.tracin.tracin_scores` to float32 rounding.
  cosine   <g_i, g_j> / (|g_i| |g_j|) (0 where a gradient vanishes), so every entry lies in
           [-sum_k lr_k, sum_k lr_k].

Self-influence, sum_k lr_k <g_i, g_i>, is a vector, not a matrix: `self_influence`.

Exact (`dim=None`): per checkpoint, the validation gradients of `val_block` targets are held on
every device (all J by default: memory J x F) while the training set is walked chunk by chunk, so
at most [chunk, F] training gradients exist at once; N x F is never held. With a smaller
`val_block` the training gradients are recomputed once per block of targets. Projected (`dim`
given): gradients are sketched to `dim` with `valuation.projection` (the same R, from `key`, for
every checkpoint and both sets) and the products are taken in float64 on the host.

Positive means helpful, as in TracIn: a gradient step on z_i lowers target j's loss. Dropout
while scoring (`dropout_key`) uses the key streams of `valuation.tracin`, so the row means still
equal `tracin_scores` with the same key.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gf_jax import mesh as mesh_lib
from valuation import passes, projection, tracin
from valuation.chunks import Chunk, chunk_size_for, collect, resolve_mesh
from valuation.grads import DEFAULT_CHUNK, Data, LossFn, Params
from valuation.tracin import Checkpoint
from valuation.trees import num_examples, sq_norms

METHODS = ("tracin", "cosine")
_TRAIN, _VAL = 0, 1  # the dropout key streams of valuation.tracin (train, val)
_HIGHEST = jax.lax.Precision.HIGHEST


def _stream_key(dropout_key: jax.Array | None, k: int, stream: int) -> jax.Array | None:
    # Same derivation as valuation.tracin, so example i meets the same mask in both.
    if dropout_key is None:
        return None
    return jax.random.fold_in(jax.random.fold_in(dropout_key, k), stream)


def learning_rates(checkpoints: Sequence[Checkpoint]) -> np.ndarray:
    """lr_K float64 of `(params, lr)` checkpoints; raises on none or a non-finite rate."""
    if not checkpoints:
        raise ValueError("per-pair scores need at least one checkpoint (params, learning_rate)")
    lr_K = np.asarray([float(lr) for _, lr in checkpoints], np.float64)
    if not np.isfinite(lr_K).all():
        raise ValueError(f"checkpoint learning rates must be finite, got {lr_K.tolist()}")
    return lr_K


def per_example(matrix_NxJ: np.ndarray) -> np.ndarray:
    """The curriculum's per-example score: the mean over validation targets, float64 [N].

    For `method="tracin"` this is TracIn against the mean validation gradient.
    """
    matrix_NxJ = np.asarray(matrix_NxJ, np.float64)
    if matrix_NxJ.ndim != 2 or matrix_NxJ.shape[1] == 0:
        raise ValueError(f"expected an [N, J] matrix with J >= 1, got shape {matrix_NxJ.shape}")
    return matrix_NxJ.mean(axis=1)


@functools.partial(jax.jit, static_argnames=("normalise",))
def cross_dots(grads_B: Params, grads_J: Params, normalise: bool = False) -> jax.Array:
    """[B, J] inner products (or cosines) of two stacked gradient pytrees [B, ...], [J, ...]."""
    parts = jax.tree.map(
        lambda a, b: jnp.matmul(
            a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1).T, precision=_HIGHEST
        ),
        grads_B,
        grads_J,
    )
    dots_BxJ = functools.reduce(jnp.add, jax.tree.leaves(parts))
    if not normalise:
        return dots_BxJ
    norms_BxJ = jnp.sqrt(sq_norms(grads_B))[:, None] * jnp.sqrt(sq_norms(grads_J))[None, :]
    return jnp.where(norms_BxJ > 0, dots_BxJ / jnp.where(norms_BxJ > 0, norms_BxJ, 1.0), 0.0)


def _held_val_blocks(val_pass: passes.Pass, val_block: int) -> Iterator[tuple[int, int, Params]]:
    """(start, stop, gradients [>= stop - start, ...] replicated over the mesh) per block of
    about `val_block` targets (whole chunks; padding rows past `stop` are dropped later)."""
    per_block = max(1, -(-val_block // val_pass.chunk_size))
    group: list[Chunk] = []
    for chunk in val_pass.chunks():
        group.append(chunk)
        if len(group) == per_block or chunk.start + chunk.n_valid == val_pass.n:
            grads = [val_pass.grads(c) for c in group]
            stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs), *grads)
            stop = group[-1].start + group[-1].n_valid
            yield group[0].start, stop, mesh_lib.replicate(stacked, val_pass.mesh)
            group = []


def _exact_matrix(
    loss_fn: LossFn,
    params: Params,
    train: Data,
    val: Data,
    *,
    normalise: bool,
    chunk: int,
    val_block: int,
    keys: tuple[jax.Array | None, jax.Array | None],
    mesh: Mesh,
) -> np.ndarray:
    """[N, J] float64 exact pair scores at one checkpoint, not yet lr-weighted."""
    common = {"chunk_size": chunk, "mesh": mesh}
    train_pass = passes.prepare(loss_fn, params, train, dropout_key=keys[0], **common)
    val_pass = passes.prepare(loss_fn, params, val, dropout_key=keys[1], **common)
    out_NxJ = np.empty((train_pass.n, val_pass.n), np.float64)
    for start, stop, held in _held_val_blocks(val_pass, val_block):
        parts = [cross_dots(train_pass.grads(c), held, normalise) for c in train_pass.chunks()]
        out_NxJ[:, start:stop] = collect(parts, train_pass.n)[:, : stop - start]
    return out_NxJ


def _projected(
    loss_fn: LossFn, params: Params, data: Data, *, normalise: bool, **options
) -> np.ndarray:
    """[N, dim] float64 projected gradients, each row scaled to unit norm if `normalise`."""
    phi_NxF = projection.project_gradients(loss_fn, params, data, **options).astype(np.float64)
    if normalise:
        norm_N = np.linalg.norm(phi_NxF, axis=1, keepdims=True)
        phi_NxF = np.divide(phi_NxF, norm_N, out=np.zeros_like(phi_NxF), where=norm_N > 0)
    return phi_NxF


def _pair_matrix(
    loss_fn: LossFn,
    params: Params,
    train: Data,
    val: Data,
    *,
    normalise: bool,
    dim: int | None,
    key: jax.Array,
    kind: str,
    chunk: int,
    val_block: int,
    keys: tuple[jax.Array | None, jax.Array | None],
    mesh: Mesh,
) -> np.ndarray:
    """[N, J] float64 pair scores at one checkpoint, exact or projected, not yet lr-weighted."""
    if dim is None:
        return _exact_matrix(
            loss_fn,
            params,
            train,
            val,
            normalise=normalise,
            chunk=chunk,
            val_block=val_block,
            keys=keys,
            mesh=mesh,
        )
    common = {"normalise": normalise, "dim": dim, "key": key, "kind": kind, "mesh": mesh}
    phi_train = _projected(loss_fn, params, train, chunk_size=chunk, dropout_key=keys[0], **common)
    phi_val = _projected(loss_fn, params, val, chunk_size=chunk, dropout_key=keys[1], **common)
    return phi_train @ phi_val.T


def score_matrix(
    loss_fn: LossFn,
    checkpoints: Sequence[Checkpoint],
    train: Data,
    val: Data,
    *,
    method: str = "tracin",
    dim: int | None = None,
    key: jax.Array | None = None,
    kind: str = "gaussian",
    chunk_size: int = DEFAULT_CHUNK,
    val_block: int | None = None,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Per-pair scores of every training example for every validation target, float64 [N, J].

    Args:
      loss_fn: `loss_fn(params, example) -> scalar` for ONE example (no batch axis), as for
        `tracin_scores`; with `dropout_key`, `loss_fn(params, example, rng)`.
      checkpoints: `(params, learning_rate)` pairs; scores are the lr-weighted sum over them.
      train, val: pytrees with leading axes N and J.
      method: `tracin` (gradient dot) or `cosine` (see the module doc).
      dim: None for exact scores; else the projected dimension (`valuation.projection`).
      key: the projection's key (default `jax.random.key(0)`); unused when exact.
      kind: projection kind, `gaussian` or `orthogonal` (dim = F, exact; for tests).
      chunk_size: examples per jitted call (rounded to the device count); bounds memory.
      val_block: exact mode: validation targets whose gradients are held at once (default all).
      dropout_key: dropout on while scoring, with `valuation.tracin`'s key streams.
      mesh: devices to split chunks over (default: every device).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if val_block is not None and val_block < 1:
        raise ValueError(f"val_block must be >= 1, got {val_block}")
    lr_K = learning_rates(checkpoints)
    mesh = resolve_mesh(mesh)
    n, j = num_examples(train), num_examples(val)
    # One chunk size for both sets, as in tracin: the per-example gradient compiles once.
    chunk = chunk_size_for(max(n, j, 1), chunk_size, mesh)
    total_NxJ = np.zeros((n, j), np.float64)
    if n == 0 or j == 0:
        return total_NxJ
    options = {
        "normalise": method == "cosine",
        "dim": dim,
        "key": key if key is not None else jax.random.key(0),
        "kind": kind,
        "chunk": chunk,
        "val_block": j if val_block is None else val_block,
        "mesh": mesh,
    }
    for k, (params, _) in enumerate(checkpoints):
        keys = (_stream_key(dropout_key, k, _TRAIN), _stream_key(dropout_key, k, _VAL))
        total_NxJ += lr_K[k] * _pair_matrix(loss_fn, params, train, val, keys=keys, **options)
    return total_NxJ


def self_influence(
    loss_fn: LossFn,
    checkpoints: Sequence[Checkpoint],
    train: Data,
    *,
    dim: int | None = None,
    key: jax.Array | None = None,
    kind: str = "gaussian",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Self-influence sum_k lr_k <g_i, g_i> of every training example, float64 [N].

    The diagonal of the tracin pair matrix of the training set with itself. Exact (`dim=None`)
    it is `tracin_scores(..., self_influence=True)`; projected, sum_k lr_k |R^T g_i|^2, an
    unbiased estimate with relative error about sqrt(2 / dim).
    """
    if dim is None:
        return tracin.tracin_scores(
            loss_fn,
            checkpoints,
            train,
            None,
            mode="vmap",
            chunk_size=chunk_size,
            dropout_key=dropout_key,
            self_influence=True,
            mesh=mesh,
        )
    lr_K = learning_rates(checkpoints)
    key = key if key is not None else jax.random.key(0)
    out_N = np.zeros(num_examples(train), np.float64)
    for k, (params, _) in enumerate(checkpoints):
        phi_NxF = _projected(
            loss_fn,
            params,
            train,
            normalise=False,
            dim=dim,
            key=key,
            kind=kind,
            chunk_size=chunk_size,
            dropout_key=_stream_key(dropout_key, k, _TRAIN),
            mesh=mesh,
        )
        out_N += lr_K[k] * np.einsum("nf,nf->n", phi_NxF, phi_NxF)
    return out_N
