"""LiSSA (Agarwal et al. 2017): a stochastic Neumann series for (H + damping I)^-1 v.

    h_0 = v,   h_j = v + h_{j-1} - (H_j h_{j-1} + damping h_{j-1}) / scale,   result h_J / scale

with H_j the Hessian of the mean loss on a mini-batch sampled afresh at every step (or the whole
batch). Its fixed point is (H + damping I)^-1 v. It converges when every eigenvalue of
I - (H + damping I) / scale lies in (-1, 1): scale must exceed (lambda_max(H) + damping) / 2 and
damping must exceed -lambda_min(H) (non-convex losses). The error shrinks like
(1 - (lambda_min + damping) / scale)^J, so the depth J must reach about scale / (lambda_min +
damping). The recursion runs in `lax.fori_loop` on the device; a repeat is one host sync.

Divergence: with an exact H the step norm ||h_j - h_{j-1}|| never grows (the iteration matrix
is a symmetric contraction), so a non-finite iterate or a final step norm above
`divergence_factor` x the first one means the spectrum left (-1, 1); `LissaDivergenceError` says
so and names scale and damping.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from valuation import grads, hvp
from valuation.grads import Data, LossFn, Params


class LissaDivergenceError(FloatingPointError):
    """The LiSSA recursion diverged (scale too small or damping too small)."""


@dataclasses.dataclass(frozen=True)
class LissaRun:
    """One repeat: the estimate and its step-norm diagnostics."""

    estimate: Params
    first_step_norm: float
    last_step_norm: float
    finite: bool


def _tree_norm(t: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(t)))


def _recursion(loss_fn: LossFn, batch_size: int | None) -> Any:
    return _recursion_cached(loss_fn, batch_size, grads.compiler_options_key())


@functools.lru_cache(maxsize=32)
def _recursion_cached(loss_fn: LossFn, batch_size: int | None, _options: tuple) -> Any:
    """The jitted recursion for one loss and mini-batch size; scale, damping and depth are
    traced, so sweeping them never recompiles."""
    hv = hvp.hvp_fn(loss_fn)

    def run(params, batch, v, key, damping, scale, depth):
        n = grads.num_examples(batch)

        def sample(j):
            if batch_size is None:
                return batch
            idx = jax.random.choice(jax.random.fold_in(key, j), n, (batch_size,), replace=False)
            return jax.tree.map(lambda x: x[idx], batch)

        def body(j, carry):
            h, first, _ = carry
            h_new = jax.tree.map(
                lambda v_, h_, hh: v_ + h_ - (hh + damping * h_) / scale,
                v,
                h,
                hv(params, sample(j), h),
            )
            step = _tree_norm(jax.tree.map(jnp.subtract, h_new, h))
            return h_new, jnp.where(j == 0, step, first), step

        zero = jnp.zeros((), jnp.float32)
        h, first, last = jax.lax.fori_loop(0, depth, body, (v, zero, zero))
        estimate = jax.tree.map(lambda x: x / scale, h)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(h)]))
        return estimate, first, last, finite

    return grads.jit(run)


def lissa_runs(
    loss_fn: LossFn,
    params: Params,
    batch: Data,
    v: Params,
    *,
    damping: float,
    scale: float,
    depth: int,
    repeats: int,
    batch_size: int | None,
    key: jax.Array,
    divergence_factor: float = 100.0,
) -> list[LissaRun]:
    """Every repeat's estimate of (H + damping I)^-1 v; raises `LissaDivergenceError`.

    `batch_size` None (or >= N) uses the whole batch at every step (deterministic).
    """
    if scale <= 0 or damping < 0 or depth < 1 or repeats < 1:
        raise ValueError(
            f"LiSSA needs scale > 0, damping >= 0, depth >= 1, repeats >= 1; got scale={scale}, "
            f"damping={damping}, depth={depth}, repeats={repeats}"
        )
    n = grads.num_examples(batch)
    bs = None if batch_size is None or batch_size >= n else int(batch_size)
    run = _recursion(loss_fn, bs)
    batch = jax.tree.map(jnp.asarray, batch)
    runs = []
    for r in range(repeats):
        est, first, last, finite = run(
            params,
            batch,
            v,
            jax.random.fold_in(key, r),
            jnp.float32(damping),
            jnp.float32(scale),
            depth,
        )
        first, last, finite = float(first), float(last), bool(finite)
        out = LissaRun(est, first, last, finite)
        if not finite or not np.isfinite(last) or last > divergence_factor * max(first, 1e-30):
            raise LissaDivergenceError(
                f"LiSSA diverged in repeat {r} (depth {depth}): the step norm went from {first:.3g} "
                f"to {last:.3g}{'' if finite else ' (non-finite iterate)'}. The iteration needs "
                f"every eigenvalue of I - (H + damping I)/scale in (-1, 1): increase scale "
                f"(now {scale}; it must exceed (lambda_max(H) + damping) / 2) or damping "
                f"(now {damping}; it must exceed -lambda_min(H))."
            )
        runs.append(out)
    return runs


def inverse_hvp(
    loss_fn: LossFn,
    params: Params,
    batch: Data,
    v: Params,
    *,
    damping: float,
    scale: float,
    depth: int,
    repeats: int = 1,
    batch_size: int | None = None,
    key: jax.Array | None = None,
) -> Params:
    """LiSSA's estimate of (H + damping I)^-1 v, averaged over `repeats` independent chains.

    H is the Hessian of the mean of `loss_fn(params, example)` over `batch` (leading axis N);
    each step uses a fresh mini-batch of `batch_size` examples (None: all of them).
    """
    runs = lissa_runs(
        loss_fn,
        params,
        batch,
        v,
        damping=damping,
        scale=scale,
        depth=depth,
        repeats=repeats,
        batch_size=batch_size,
        key=key if key is not None else jax.random.key(0),
    )
    total = functools.reduce(grads.tree_add, [r.estimate for r in runs])
    return grads.tree_scale(total, jnp.float32(1.0 / len(runs)))
