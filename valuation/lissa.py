"""LiSSA (Agarwal et al. 2017): a stochastic Neumann series for (H + damping I)^-1 v.

    h_0 = v,   h_j = v + h_{j-1} - (H_j h_{j-1} + damping h_{j-1}) / scale,   result h_J / scale

with H_j the Hessian of the mean loss on a mini-batch sampled afresh at every step (or the whole
batch). Its fixed point is (H + damping I)^-1 v. It converges when every eigenvalue of
I - (H + damping I) / scale lies in (-1, 1): scale must exceed (lambda_max(H) + damping) / 2 and
damping must exceed -lambda_min(H) (non-convex losses). The error shrinks like
(1 - (lambda_min + damping) / scale)^J, so the depth J must reach about scale / (lambda_min +
damping). The recursion runs in `lax.fori_loop` on the device; a repeat is one host sync.

Every setting travels as one `LissaOptions`; `LissaBudget` is the part of it a caller fixes
before damping and scale are known (`valuation.gameformer.auto_lissa_options` picks those).

Divergence: with an exact H the step norm ||h_j - h_{j-1}|| never grows (the iteration matrix
is a symmetric contraction), so a non-finite iterate or a final step norm above
`divergence_factor` x the first one means the spectrum left (-1, 1); `LissaDivergenceError` says
so and names scale and damping.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from valuation import hvp
from valuation.kernels import LossFn, compiler_options_key, jit
from valuation.trees import Data, Params, num_examples, tree_scale, tree_sum


class LissaDivergenceError(FloatingPointError):
    """The LiSSA recursion diverged (scale too small or damping too small)."""


class LissaBudget(Protocol):
    """How much work a LiSSA estimate does, before damping and scale are chosen.

    Any object with these three attributes: a `LissaOptions`, or an experiment's own settings
    (`experiments.runconfig.LissaOptions`), which then travel as one object.
    """

    @property
    def depth(self) -> int: ...

    @property
    def repeats(self) -> int: ...

    @property
    def batch_size(self) -> int | None: ...


@dataclasses.dataclass(frozen=True)
class LissaOptions:
    """The settings of one LiSSA estimate of (H + damping I)^-1 v (see the module doc).

    Attributes:
      damping: added to H's diagonal, >= 0; must exceed -lambda_min(H) for non-convex losses.
      scale: divides every step, > 0; must exceed (lambda_max(H) + damping) / 2.
      depth: recursion steps J per repeat, >= 1; the error shrinks like
        (1 - (lambda_min + damping) / scale)^J.
      repeats: independent chains (own mini-batch draws), >= 1; estimates are averaged.
      batch_size: examples per Hessian-vector mini-batch, drawn afresh at every step, >= 1;
        None (or at least the number of examples) uses the whole batch (deterministic).
    """

    damping: float = 0.01
    scale: float = 100.0
    depth: int = 200
    repeats: int = 3
    batch_size: int | None = 32

    def __post_init__(self) -> None:
        if self.scale <= 0 or self.damping < 0 or self.depth < 1 or self.repeats < 1:
            raise ValueError(
                f"LiSSA needs scale > 0, damping >= 0, depth >= 1, repeats >= 1; got "
                f"scale={self.scale}, damping={self.damping}, depth={self.depth}, "
                f"repeats={self.repeats}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"LiSSA batch_size must be None or >= 1, got {self.batch_size}")


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
    return _recursion_cached(loss_fn, batch_size, compiler_options_key())


@functools.lru_cache(maxsize=32)
def _recursion_cached(loss_fn: LossFn, batch_size: int | None, _options: tuple) -> Any:
    """The jitted recursion for one loss and mini-batch size; scale, damping and depth are
    traced, so sweeping them never recompiles."""
    hv = hvp.hvp_fn(loss_fn)

    def run(params, batch, v, key, damping, scale, depth):
        n = num_examples(batch)

        def sample(j):
            if batch_size is None:
                return batch
            index_B = jax.random.choice(jax.random.fold_in(key, j), n, (batch_size,), replace=False)
            return jax.tree.map(lambda x: x[index_B], batch)

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

    return jit(run)


def _check_converged(run: LissaRun, repeat: int, options: LissaOptions, factor: float) -> None:
    """Raises `LissaDivergenceError` if the repeat's iterate or step norm says it diverged."""
    first, last, finite = run.first_step_norm, run.last_step_norm, run.finite
    if not finite or not np.isfinite(last) or last > factor * max(first, 1e-30):
        raise LissaDivergenceError(
            f"LiSSA diverged in repeat {repeat} (depth {options.depth}): the step norm went "
            f"from {first:.3g} to {last:.3g}{'' if finite else ' (non-finite iterate)'}. The "
            f"iteration needs every eigenvalue of I - (H + damping I)/scale in (-1, 1): "
            f"increase scale (now {options.scale}; it must exceed (lambda_max(H) + damping) / 2)"
            f" or damping (now {options.damping}; it must exceed -lambda_min(H))."
        )


def lissa_runs(
    loss_fn: LossFn,
    params: Params,
    batch: Data,
    v: Params,
    options: LissaOptions,
    *,
    key: jax.Array,
    divergence_factor: float = 100.0,
) -> list[LissaRun]:
    """Every repeat's estimate of (H + damping I)^-1 v; raises `LissaDivergenceError`.

    H is the Hessian of the mean loss over `batch` (leading axis N); `options.batch_size` None
    (or >= N) uses the whole batch at every step (deterministic).
    """
    n = num_examples(batch)
    bs = options.batch_size
    run = _recursion(loss_fn, None if bs is None or bs >= n else int(bs))
    batch = jax.tree.map(jnp.asarray, batch)
    runs = []
    for r in range(options.repeats):
        est, first, last, finite = run(
            params,
            batch,
            v,
            jax.random.fold_in(key, r),
            jnp.float32(options.damping),
            jnp.float32(options.scale),
            options.depth,
        )
        out = LissaRun(est, float(first), float(last), bool(finite))
        _check_converged(out, r, options, divergence_factor)
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
    each step uses a fresh mini-batch of `batch_size` examples (None: all of them). The keywords
    are those of `LissaOptions`.
    """
    options = LissaOptions(damping, scale, depth, repeats, batch_size)
    runs = lissa_runs(
        loss_fn, params, batch, v, options, key=key if key is not None else jax.random.key(0)
    )
    total = tree_sum(r.estimate for r in runs)
    return tree_scale(total, jnp.float32(1.0 / len(runs)))
