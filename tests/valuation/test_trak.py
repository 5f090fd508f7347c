"""TRAK: against a direct numpy computation from explicit gradients and the same projection; at
d = F with an orthogonal projection and lambda = 0 it is the exact gradient-kernel formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h

from valuation import projection, trak

EPS32 = np.finfo(np.float32).eps
D_X, D_Y = 6, 4  # linear model: F = 6 * 4 + 4 = 28 parameters


def direct_tau(phi_NxF, phi_JxF, lam) -> np.ndarray:
    """phi_j^T (Phi^T Phi + lambda I)^-1 phi_i by np.linalg.solve: [N, J]."""
    gram = phi_NxF.T @ phi_NxF + lam * np.eye(phi_NxF.shape[1])
    return phi_NxF @ np.linalg.solve(gram, phi_JxF.T)


def linear_loss(params: dict, example: dict) -> jax.Array:
    return jnp.sum(jnp.square(example["x"] @ params["w"] + params["b"] - example["y"]))


def linear_problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    data = {
        "x": rng.normal(size=(n, D_X)).astype(np.float32),
        "y": rng.normal(size=(n, D_Y)).astype(np.float32),
    }
    models = [
        {
            "w": jnp.asarray(rng.normal(size=(D_X, D_Y)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=D_Y), jnp.float32),
        }
        for _ in range(2)
    ]
    return models, data


@pytest.fixture(scope="module")
def mlp():
    models = [h.mlp_params(seed) for seed in (10, 11)]
    return models, h.mlp_data(40, 1), h.mlp_data(5, 2)


@pytest.mark.parametrize("damping", [None, 0.5])
def test_matches_numpy_with_the_same_projection(mlp, damping):
    models, train, val = mlp
    key, dim = jax.random.key(7), 16
    want, on_features, conds = 0.0, 0.0, []
    for m, params in enumerate(models):
        # Model m is projected with fold_in(key, m); R materialised from unit vectors.
        r = projection.materialise(params, dim=dim, key=jax.random.fold_in(key, m))
        phi_train = h.flat_grads(h.mlp_loss_nodrop, params, train) @ r
        phi_val = h.flat_grads(h.mlp_loss_nodrop, params, val) @ r
        gram = phi_train.T @ phi_train
        lam = 1e-3 * np.trace(gram) / dim if damping is None else damping
        conds.append(np.linalg.cond(gram + lam * np.eye(dim)))
        want = want + direct_tau(phi_train, phi_val, lam) / len(models)
        # The same formula on the float32 features the library computes itself.
        options = {"dim": dim, "key": jax.random.fold_in(key, m)}
        own_train = projection.project_gradients(h.mlp_loss_nodrop, params, train, **options)
        own_val = projection.project_gradients(h.mlp_loss_nodrop, params, val, **options)
        own_train, own_val = own_train.astype(np.float64), own_val.astype(np.float64)
        own_lam = 1e-3 * np.trace(own_train.T @ own_train) / dim if damping is None else damping
        on_features = on_features + direct_tau(own_train, own_val, own_lam) / len(models)
    # Against explicit gradients: the features agree to float32 rounding (~eps32 sqrt(F)
    # relative, F = 66), which solving the system amplifies by at most its condition number.
    tol = 4 * EPS32 * np.sqrt(66) * max(conds)
    assert tol < 0.1  # otherwise the comparison would say nothing
    for chunk_size in (3, 64):  # chunks smaller than N, and one chunk for all (the default)
        got = trak.trak_scores(
            h.mlp_loss_nodrop,
            models,
            train,
            val,
            dim=dim,
            key=key,
            damping=damping,
            chunk_size=chunk_size,
        )
        assert got.shape == (40, 5) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.max(np.abs(want)))
    # From the very same float32 features (same chunking) only float64 rounding separates the
    # library's Cholesky from LU here (cond < 1e4): the scores are the formula, exactly.
    np.testing.assert_allclose(got, on_features, rtol=0, atol=1e-10 * np.max(np.abs(want)))


def test_full_dimension_orthogonal_without_damping_is_the_gradient_kernel():
    models, data = linear_problem(60, seed=0)
    train = jax.tree.map(lambda a: a[:50], data)
    val = jax.tree.map(lambda a: a[50:], data)
    f = projection.num_params(models[0])
    got = trak.trak_scores(
        linear_loss,
        models,
        train,
        val,
        dim=f,
        key=jax.random.key(1),
        damping=0.0,
        kind="orthogonal",
    )
    want, conds = 0.0, []
    for params in models:
        g_train, g_val = (
            h.flat_grads(linear_loss, params, train),
            h.flat_grads(linear_loss, params, val),
        )
        gram = g_train.T @ g_train
        conds.append(np.linalg.cond(gram))
        want = want + g_train @ np.linalg.solve(gram, g_val.T) / len(models)
    tol = 4 * EPS32 * np.sqrt(f) * max(conds)
    assert max(conds) < 1e4  # well-conditioned: 50 examples, 28 parameters
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.max(np.abs(want)))


def test_heavy_damping_tends_to_the_projected_gradient_dot():
    # lambda (Phi^T Phi + lambda I)^-1 = I - Phi^T Phi / lambda + ..., so lambda tau -> <phi_j,
    # phi_i>: TRAK has TracIn's sign (positive = helpful), up to relative O(|Phi^T Phi| / lambda).
    rng = np.random.default_rng(0)
    phi_train, phi_val = rng.normal(size=(30, 8)), rng.normal(size=(4, 8))
    lam = 1e8 * np.linalg.norm(phi_train.T @ phi_train, 2)
    got = lam * trak.kernel_scores(phi_train, phi_val, lam)
    want = phi_train @ phi_val.T
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.max(np.abs(want)))


def test_bad_arguments(mlp):
    _, train, val = mlp
    with pytest.raises(ValueError, match="at least one model"):
        trak.trak_scores(h.mlp_loss_nodrop, [], train, val, dim=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="features disagree"):
        trak.kernel_scores(np.zeros((3, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="damping"):
        trak.kernel_scores(np.ones((3, 2)), np.ones((2, 2)), damping=-1.0)
    # More projected dimensions than examples and no damping: Phi^T Phi is singular.
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        trak.kernel_scores(np.ones((3, 6)), np.ones((2, 6)), damping=0.0)
