"""Hessian-vector products of the mean per-example loss, and exact / CG inverse references.

`hvp` is forward-over-reverse (the JVP of the gradient along v): about 2-3 gradients of cost and
no Hessian ever formed. `hessian`, `exact_inverse_hvp` (dense solve) and `cg_inverse_hvp`
(conjugate gradient on the damped Hessian) are the references LiSSA is checked against; the
dense ones only fit small models.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from valuation.kernels import LossFn, compiler_options_key, jit
from valuation.trees import Data, Params


def mean_loss(loss_fn: LossFn, params: Params, batch: Data) -> jax.Array:
    """The mean over the batch's leading axis of `loss_fn(params, example)`."""
    return jnp.mean(jax.vmap(loss_fn, (None, 0))(params, batch))


def hvp_fn(loss_fn: LossFn) -> Any:
    """The un-jitted `(params, batch, v) -> H v` (for use inside other jitted code)."""

    def hv(params: Params, batch: Data, v: Params) -> Params:
        grad = jax.grad(lambda p: mean_loss(loss_fn, p, batch))
        return jax.jvp(grad, (params,), (v,))[1]

    return hv


def _hvp_jit(loss_fn: LossFn) -> Any:
    return _hvp_cached(loss_fn, compiler_options_key())


@functools.lru_cache(maxsize=32)
def _hvp_cached(loss_fn: LossFn, _options: tuple) -> Any:
    # `_options` only keys the cache: `jit` reads the current options itself.
    return jit(hvp_fn(loss_fn))


def hvp(loss_fn: LossFn, params: Params, batch: Data, v: Params) -> Params:
    """H v, where H is the Hessian of the mean per-example loss over `batch` at `params`."""
    return _hvp_jit(loss_fn)(params, batch, v)


def hessian(loss_fn: LossFn, params: Params, batch: Data) -> np.ndarray:
    """The dense Hessian [F, F] of the mean loss over the F flattened parameters (small models)."""
    flat_F, unravel = ravel_pytree(params)
    h_FxF = jax.jit(jax.hessian(lambda x: mean_loss(loss_fn, unravel(x), batch)))(flat_F)
    return np.asarray(h_FxF, np.float64)


def exact_inverse_hvp(
    loss_fn: LossFn, params: Params, batch: Data, v: Params, *, damping: float
) -> Params:
    """(H + damping I)^-1 v by a dense float64 solve (small models only)."""
    h_FxF = hessian(loss_fn, params, batch)
    v_F, unravel = ravel_pytree(v)
    x_F = np.linalg.solve(h_FxF + damping * np.eye(len(h_FxF)), np.asarray(v_F, np.float64))
    return unravel(jnp.asarray(x_F, v_F.dtype))


def cg_inverse_hvp(
    loss_fn: LossFn,
    params: Params,
    batch: Data,
    v: Params,
    *,
    damping: float,
    tol: float = 1e-6,
    maxiter: int | None = None,
) -> Params:
    """(H + damping I)^-1 v by conjugate gradient with HVPs (needs H + damping I positive
    definite; deterministic, so a ground truth where the dense solve does not fit)."""
    hv = _hvp_jit(loss_fn)

    def matvec(x: Params) -> Params:
        return jax.tree.map(lambda a, b: a + damping * b, hv(params, batch, x), x)

    x, _ = jax.scipy.sparse.linalg.cg(matvec, v, tol=tol, maxiter=maxiter)
    return x


def top_eigenvalue(
    loss_fn: LossFn,
    params: Params,
    batch: Data,
    *,
    iters: int = 20,
    key: jax.Array | None = None,
) -> float:
    """The largest-magnitude Hessian eigenvalue by power iteration with HVPs (for LiSSA's scale:
    it must exceed (lambda_max + damping) / 2)."""
    hv = _hvp_jit(loss_fn)
    flat_F, unravel = ravel_pytree(params)
    x_F = jax.random.normal(
        key if key is not None else jax.random.key(0), flat_F.shape, flat_F.dtype
    )
    x_F = x_F / jnp.linalg.norm(x_F)
    eig = 0.0
    for _ in range(iters):
        y_F = ravel_pytree(hv(params, batch, unravel(x_F)))[0]
        eig = float(x_F @ y_F)
        x_F = y_F / jnp.maximum(jnp.linalg.norm(y_F), 1e-30)
    return eig
