"""TracIn (Pruthi et al. 2020) over checkpoints, for any JAX model: modes jvp | vmap | loop.

    score_i = sign * sum_k lr_k * <grad l(theta_k, z_i), gbar_val(theta_k)>,
    gbar_val(theta_k) = mean_j grad l(theta_k, v_j)   (the exact mean over the validation set)

Positive means a gradient step on z_i lowers the validation loss (Pruthi's convention); the
paper's released code reports the negated value (`sign=-1`). Per checkpoint the work is: one
validation gradient (a backward pass over the val set), then one pass over the training set,
which in `jvp` mode is a single forward-mode JVP of the per-example loss vector along gbar_val
(about the cost of a forward and a tangent pass, no backward, no per-example gradient ever
materialised). `vmap` materialises per-example gradients chunk by chunk; `loop` is the paper's
batch-1 approach and the reference. All three agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from valuation import grads
from valuation.grads import DEFAULT_CHUNK, MODES, Data, LossFn, Params

Checkpoint = tuple[Params, float]  # (params, learning rate used after it)
_TRAIN, _VAL = 0, 1  # dropout key streams: train and val examples never share a mask


def _stream_key(dropout_key: jax.Array | None, k: int, stream: int) -> jax.Array | None:
    if dropout_key is None:
        return None
    return jax.random.fold_in(jax.random.fold_in(dropout_key, k), stream)


def validation_gradient(
    loss_fn: LossFn,
    params: Params,
    val: Data,
    *,
    mode: str = "jvp",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Mesh | None = None,
) -> Params:
    """gbar_val: the exact mean of the per-example validation gradients (a device pytree)."""
    return grads.mean_grad(
        loss_fn, params, val, mode=mode, chunk_size=chunk_size, dropout_key=dropout_key, mesh=mesh
    )


def checkpoint_dots(
    loss_fn: LossFn,
    checkpoints: Sequence[Checkpoint],
    train: Data,
    val: Data | None,
    *,
    mode: str = "jvp",
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    self_influence: bool = False,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """[K, N] float64: `<g_i, gbar_val>` (or `<g_i, g_i>`) at each checkpoint, not yet weighted.

    Train and val share one chunk size, so `vmap` mode compiles its per-example gradient once.
    With `dropout_key`, checkpoint k uses `fold_in(fold_in(key, k), 0)` for training examples and
    `... 1)` for validation examples, each example folding in its own index.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if not checkpoints:
        raise ValueError("TracIn needs at least one checkpoint (params, learning_rate)")
    mesh = grads.resolve_mesh(mesh)
    n_train = grads.num_examples(train)
    n_max = n_train if self_influence else max(n_train, grads.num_examples(val))
    chunk = grads.chunk_size_for(n_max, chunk_size, mesh)
    common = {"chunk_size": chunk, "mesh": mesh}
    rows = []
    for k, (params, _) in enumerate(checkpoints):
        train_key = _stream_key(dropout_key, k, _TRAIN)
        if self_influence:
            # A JVP gives <g_i, v> for one v shared by all i; <g_i, g_i> needs every g_i.
            sq_mode = "loop" if mode == "loop" else "vmap"
            rows.append(
                grads.grad_sq_norms(
                    loss_fn, params, train, mode=sq_mode, dropout_key=train_key, **common
                )
            )
            continue
        val_key = _stream_key(dropout_key, k, _VAL)
        g_val = validation_gradient(loss_fn, params, val, mode=mode, dropout_key=val_key, **common)
        rows.append(
            grads.grad_dots(
                loss_fn, params, train, g_val, mode=mode, dropout_key=train_key, **common
            )
        )
    return np.stack(rows)


def tracin_scores(
    loss_fn: LossFn,
    checkpoints: Sequence[Checkpoint],
    train: Data,
    val: Data | None,
    *,
    mode: str = "jvp",
    chunk_size: int = DEFAULT_CHUNK,
    sign: float = 1.0,
    dropout_key: jax.Array | None = None,
    self_influence: bool = False,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """TracIn scores of the training set, float64 [N].

    Args:
      loss_fn: `loss_fn(params, example) -> scalar` for ONE example (no batch axis); with
        `dropout_key`, called as `loss_fn(params, example, rng)`.
      checkpoints: `(params, learning_rate)` pairs; scores are the lr-weighted sum over them.
      train, val: pytrees with leading axis N (val unused with `self_influence`).
      mode: `jvp` (default, fastest), `vmap` or `loop` (the batch-1 reference).
      chunk_size: examples per jitted call (rounded to the device count); bounds memory.
      sign: +1 (positive = helpful, Pruthi) or -1 (the released code's sign).
      dropout_key: dropout on while scoring (the released code left it on); one key per example.
      self_influence: score `<g_i, g_i>` instead (uses `vmap` when mode is `jvp`).
      mesh: devices to split chunks over (default: every device).
    """
    lr_K = np.asarray([float(lr) for _, lr in checkpoints], np.float64)
    if not np.isfinite(lr_K).all():
        raise ValueError(f"checkpoint learning rates must be finite, got {lr_K.tolist()}")
    dots_KxN = checkpoint_dots(
        loss_fn,
        checkpoints,
        train,
        val,
        mode=mode,
        chunk_size=chunk_size,
        dropout_key=dropout_key,
        self_influence=self_influence,
        mesh=mesh,
    )
    return float(sign) * (lr_K @ dots_KxN)
