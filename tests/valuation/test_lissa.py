"""LiSSA converges to (H + damping I)^-1 v on a convex problem, detects divergence, and its
influence scores equal the exact formula."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h

from valuation import grads, hvp, influence, lissa


@pytest.fixture(scope="module")
def problem():
    loss, s, params, data = h.quadratic(eig=(0.5, 10.0))
    v = {"x": jnp.linspace(-1.0, 1.0, 6)}
    return loss, np.asarray(s, np.float64), params, data, v


def test_converges_to_the_damped_solve(problem):
    loss, s, params, data, v = problem
    damping = 0.1
    want = np.asarray(jnp.linalg.solve(jnp.asarray(s) + damping * jnp.eye(6), v["x"]))
    # Error contracts like (1 - (0.5 + 0.1) / 12)^J: J = 600 leaves ~1e-13.
    got = lissa.inverse_hvp(
        loss,
        params,
        data,
        v,
        damping=damping,
        scale=12.0,
        depth=600,
        repeats=2,
        batch_size=None,
        key=jax.random.key(0),
    )
    np.testing.assert_allclose(got["x"], want, rtol=1e-4, atol=1e-5)


def test_sampled_minibatches_converge_too(problem):
    # The quadratic's Hessian is the same on every mini-batch; only the linear term varies, and
    # it does not enter H, so mini-batch LiSSA must still reach the exact solve.
    loss, s, params, data, v = problem
    want = np.linalg.solve(s + 0.1 * np.eye(6), np.asarray(v["x"]))
    got = lissa.inverse_hvp(
        loss,
        params,
        data,
        v,
        damping=0.1,
        scale=12.0,
        depth=600,
        repeats=3,
        batch_size=4,
        key=jax.random.key(1),
    )
    np.testing.assert_allclose(got["x"], want, rtol=1e-4, atol=1e-5)


def test_divergence_is_detected_when_scale_is_too_small(problem):
    loss, _, params, data, v = problem
    with pytest.raises(lissa.LissaDivergenceError, match="increase scale") as e:
        lissa.inverse_hvp(loss, params, data, v, damping=0.1, scale=2.0, depth=100)
    assert "scale (now 2.0" in str(e.value) and "damping (now 0.1" in str(e.value)


def test_bad_hyperparameters_raise(problem):
    loss, _, params, data, v = problem
    with pytest.raises(ValueError, match="scale > 0"):
        lissa.inverse_hvp(loss, params, data, v, damping=0.1, scale=0.0, depth=10)
    for bad in ({"damping": -1.0}, {"depth": 0}, {"repeats": 0}):
        with pytest.raises(ValueError, match="depth >= 1"):
            lissa.LissaOptions(**bad)
    with pytest.raises(ValueError, match="batch_size"):
        lissa.LissaOptions(batch_size=0)


def test_options_object_equals_the_keywords(problem):
    # inverse_hvp's keywords are a LissaOptions unpacked: the runs it averages are the same.
    loss, _, params, data, v = problem
    options = lissa.LissaOptions(damping=0.1, scale=12.0, depth=50, repeats=2, batch_size=4)
    runs = lissa.lissa_runs(loss, params, data, v, options, key=jax.random.key(2))
    mean = (runs[0].estimate["x"] + runs[1].estimate["x"]) / 2
    got = lissa.inverse_hvp(
        loss, params, data, v, **dataclasses.asdict(options), key=jax.random.key(2)
    )
    np.testing.assert_allclose(got["x"], mean, rtol=1e-6)


def test_influence_scores_equal_the_exact_formula():
    params = h.mlp_params(4)
    train, val = h.mlp_data(10, 6), h.mlp_data(5, 7)
    # Damping above -lambda_min keeps the (non-convex) MLP system positive definite.
    lam = np.linalg.eigvalsh(hvp.hessian(h.mlp_loss_nodrop, params, train))
    damping = max(0.0, -lam.min()) + 0.5
    scale = float(lam.max() + damping)
    g_val = grads.mean_grad(h.mlp_loss_nodrop, params, val)
    s_val = hvp.exact_inverse_hvp(h.mlp_loss_nodrop, params, train, g_val, damping=damping)
    want = grads.grad_dots(h.mlp_loss_nodrop, params, train, s_val, mode="loop")
    depth = int(40 * scale / (lam.min() + damping))
    options = lissa.LissaOptions(damping, scale, depth, repeats=2, batch_size=None)
    got = influence.lissa_influence(
        h.mlp_loss_nodrop, params, train, val, options=options, key=jax.random.key(0)
    )
    np.testing.assert_allclose(got.scores, want, rtol=1e-3, atol=1e-4 * np.max(np.abs(want)))
    assert got.per_repeat.shape == (2, 10) and got.repeat_spearman == pytest.approx(1.0)
    flipped = influence.lissa_influence(
        h.mlp_loss_nodrop,
        params,
        train,
        val,
        options=dataclasses.replace(options, repeats=1),
        sign=-1.0,
    )
    np.testing.assert_allclose(flipped.scores, -got.scores, rtol=1e-5)
