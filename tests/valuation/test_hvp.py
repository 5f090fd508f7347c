"""Hessian-vector products against jax.hessian, and the exact / CG inverse references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h
from jax.flatten_util import ravel_pytree

from valuation import hvp


def test_hvp_matches_dense_hessian_times_v():
    params = h.mlp_params(2)
    data = h.mlp_data(9, 3)
    flat, unravel = ravel_pytree(params)
    v = unravel(jnp.sin(jnp.arange(flat.size, dtype=jnp.float32)))

    def f(x):
        return jnp.mean(jax.vmap(h.mlp_loss_nodrop, (None, 0))(unravel(x), data))

    dense = jax.jit(jax.hessian(f))(flat)
    want = dense @ ravel_pytree(v)[0]
    got = ravel_pytree(hvp.hvp(h.mlp_loss_nodrop, params, data, v))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.max(np.abs(want)))
    np.testing.assert_allclose(
        hvp.hessian(h.mlp_loss_nodrop, params, data), dense, rtol=1e-5, atol=1e-6
    )


def test_exact_and_cg_inverse_solve_the_damped_system():
    loss, s, params, data = h.quadratic()
    v = {"x": jnp.linspace(-1.0, 1.0, 6)}
    want = np.linalg.solve(np.asarray(s, np.float64) + 0.1 * np.eye(6), np.asarray(v["x"]))
    exact = hvp.exact_inverse_hvp(loss, params, data, v, damping=0.1)
    cg = hvp.cg_inverse_hvp(loss, params, data, v, damping=0.1, tol=1e-7)
    np.testing.assert_allclose(exact["x"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cg["x"], want, rtol=1e-4, atol=1e-5)


def test_power_iteration_finds_the_top_eigenvalue():
    loss, _, params, data = h.quadratic(eig=(0.5, 10.0))
    assert hvp.top_eigenvalue(loss, params, data, iters=200) == pytest.approx(10.0, rel=1e-3)
