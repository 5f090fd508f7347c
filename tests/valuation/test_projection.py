"""Projected per-example gradients: one fixed R for every example, chunking and device count;
inner products within the Johnson-Lindenstrauss error; the orthogonal kind at d = F is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h

from gf_jax import mesh as mesh_lib
from valuation import projection

WIDE_IN, WIDE_HIDDEN = 90, 50  # w: 4500 scalars, more than one PROJECT_BLOCK (4096)


def wide_params(seed: int = 0) -> dict:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "w": jax.random.normal(k1, (WIDE_IN, WIDE_HIDDEN)) / np.sqrt(WIDE_IN),
        "v": jax.random.normal(k2, (WIDE_HIDDEN,)) / np.sqrt(WIDE_HIDDEN),
        "c": jnp.zeros(()),
    }


def wide_loss(params: dict, example: dict) -> jax.Array:
    out = jnp.tanh(example["x"] @ params["w"]) @ params["v"] + params["c"]
    return jnp.square(out - example["y"])


def wide_data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, WIDE_IN)).astype(np.float32),
        "y": rng.normal(size=n).astype(np.float32),
    }


@pytest.fixture(scope="module")
def mlp():
    params = h.mlp_params(1)
    data = h.mlp_data(11, 5)
    return params, data, h.flat_grads(h.mlp_loss_nodrop, params, data).astype(np.float64)


@pytest.fixture(scope="module")
def wide():
    params, data = wide_params(0), wide_data(12, 3)
    return params, data, h.flat_grads(wide_loss, params, data).astype(np.float64)


def test_rows_are_the_gradients_times_one_fixed_matrix(mlp):
    params, data, g_NxF = mlp
    key, dim = jax.random.key(4), 512
    r = projection.materialise(params, dim=dim, key=key)  # R itself: [F, dim]
    assert r.shape == (projection.num_params(params), dim) == (66, dim)
    got = projection.project_gradients(h.mlp_loss_nodrop, params, data, dim=dim, key=key)
    assert got.shape == (11, dim) and got.dtype == np.float32
    want = g_NxF @ r
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.max(np.abs(want)))
    # Entries of R are N(0, 1/dim): the mean of dim * R^2 over 33,792 entries is 1 with standard
    # error sqrt(2 / 33792) = 0.008, so 0.05 is six standard errors.
    assert abs(np.mean(dim * r**2) - 1) < 0.05
    other = projection.project_gradients(
        h.mlp_loss_nodrop, params, data, dim=dim, key=jax.random.key(5)
    )
    assert not np.allclose(other, got)


def test_inner_products_within_the_johnson_lindenstrauss_error(wide):
    params, data, g_NxF = wide
    dim = 512
    phi_NxF = projection.project_gradients(
        wide_loss, params, data, dim=dim, key=jax.random.key(0), chunk_size=5
    ).astype(np.float64)
    exact = g_NxF @ g_NxF.T
    approx = phi_NxF @ phi_NxF.T
    norms = np.linalg.norm(g_NxF, axis=1)
    upper = np.triu_indices(len(g_NxF))  # 78 pairs i <= j, norms included
    err = (np.abs(approx - exact) / np.outer(norms, norms))[upper]
    # For Gaussian R the normalised error of one pair has mean 0 and SD s = sqrt((1 + cos^2)/d)
    # <= sqrt(2/d) (0.0625 here). Its mean absolute value is about 0.8 s; even if all 78 errors
    # were perfectly correlated, a mean of 3 s is 3.7 SDs of |N(0, s^2)| away. Each pair is a
    # sum of d products of Gaussians, so Bernstein's inequality bounds P(error > 6 s) by
    # ~2e-7 per pair, 2e-5 over the 78 pairs.
    s = np.sqrt(2 / dim)
    assert np.mean(err) < 3 * s and np.max(err) < 6 * s
    # Not vacuous: the errors have the expected size, not 0 (which would mean R is trivial).
    assert np.mean(err) > 0.1 * s


def test_same_rows_for_any_chunking_and_device_count(wide):
    params, data, _ = wide
    key = jax.random.key(1)
    one = mesh_lib.data_mesh(jax.devices()[:1])
    assert jax.device_count() == 4
    runs = [
        projection.project_gradients(
            wide_loss, params, data, dim=64, key=key, chunk_size=chunk, mesh=mesh
        )
        for chunk, mesh in ((3, one), (64, one), (3, None), (5, None), (64, None))
    ]
    base = runs[0]
    # R is the same; the per-example GRADIENTS differ by float32 rounding between batch shapes
    # (XLA blocks the vmapped matmuls per shape), and an F-term sum grows that to about
    # eps32 sqrt(F) of the entries' scale (F = 4551: 8e-6); four times that bounds it.
    f = projection.num_params(params)
    atol = 4 * np.finfo(np.float32).eps * np.sqrt(f) * np.max(np.abs(base))
    for other in runs[1:]:
        np.testing.assert_allclose(other, base, rtol=0, atol=atol)
    # And one chunk through `project` gives the same rows: R does not depend on the pass.
    grads_B = jax.vmap(jax.grad(wide_loss), (None, 0))(params, data)
    direct = np.asarray(projection.project(grads_B, key, 64))
    np.testing.assert_allclose(direct, base, rtol=0, atol=atol)


def test_orthogonal_projection_at_full_dimension_is_exact(mlp):
    params, data, g_NxF = mlp
    f = projection.num_params(params)
    key = jax.random.key(2)
    q_FxF = projection.orthogonal_matrix(key, f).astype(np.float64)
    np.testing.assert_allclose(q_FxF.T @ q_FxF, np.eye(f), rtol=0, atol=1e-6)
    phi_NxF = projection.project_gradients(
        h.mlp_loss_nodrop, params, data, dim=f, key=key, kind="orthogonal", chunk_size=4
    ).astype(np.float64)
    np.testing.assert_allclose(phi_NxF, g_NxF @ q_FxF, rtol=0, atol=1e-6 * np.max(np.abs(g_NxF)))
    exact = g_NxF @ g_NxF.T
    np.testing.assert_allclose(
        phi_NxF @ phi_NxF.T, exact, rtol=0, atol=1e-6 * np.max(np.abs(exact))
    )


def test_bad_arguments(mlp):
    params, data, _ = mlp
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="dim must be F=66"):
        projection.project_gradients(
            h.mlp_loss_nodrop, params, data, dim=65, key=key, kind="orthogonal"
        )
    with pytest.raises(ValueError, match="unknown projection kind"):
        projection.project_gradients(h.mlp_loss_nodrop, params, data, dim=8, key=key, kind="sjlt")
    with pytest.raises(ValueError, match="dim must be >= 1"):
        projection.project_gradients(h.mlp_loss_nodrop, params, data, dim=0, key=key)
    with pytest.raises(ValueError, match="F <= 4096"):
        projection.orthogonal_matrix(key, projection.ORTHOGONAL_MAX + 1)
    empty = jax.tree.map(lambda a: a[:0], data)
    out = projection.project_gradients(h.mlp_loss_nodrop, params, empty, dim=8, key=key)
    assert out.shape == (0, 8)
