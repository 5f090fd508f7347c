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

from valuation import grads
from valuation.grads import Data, LossFn, Params


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
    return _hvp_cached(loss_fn, grads.compiler_options_key())


@functools.lru_cache(maxsize=32)
def _hvp_cached(loss_fn: LossFn, _options: tuple) -> Any:
    return grads.jit(hvp_fn(loss_fn))


def hvp(loss_fn: LossFn, params: Params, batch: Data, v: Params) -> Params:
    """H v, where H is the Hessian of the mean per-example loss over `batch` at `params`."""
    return _hvp_jit(loss_fn)(params, batch, v)


def hessian(loss_fn: LossFn, params: Params, batch: Data) -> np.ndarray:
    """The dense Hessian [P, P] of the mean loss over the flattened parameters (small models)."""
    flat, unravel = ravel_pytree(params)
    h = jax.jit(jax.hessian(lambda x: mean_loss(loss_fn, unravel(x), batch)))(flat)
    return np.asarray(h, np.float64)


def exact_inverse_hvp(
    loss_fn: LossFn, params: Params, batch: Data, v: Params, *, damping: float
) -> Params:
    """(H + damping I)^-1 v by a dense float64 solve (small models only)."""
    h = hessian(loss_fn, params, batch)
    flat_v, unravel = ravel_pytree(v)
    x = np.linalg.solve(h + damping * np.eye(len(h)), np.asarray(flat_v, np.float64))
    return unravel(jnp.asarray(x, flat_v.dtype))


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
    flat, unravel = ravel_pytree(params)
    x = jax.random.normal(key if key is not None else jax.random.key(0), flat.shape, flat.dtype)
    x = x / jnp.linalg.norm(x)
    eig = 0.0
    for _ in range(iters):
        y = ravel_pytree(hv(params, batch, unravel(x)))[0]
        eig = float(x @ y)
        x = y / jnp.maximum(jnp.linalg.norm(y), 1e-30)
    return eig
