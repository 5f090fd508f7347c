"""Per-example passes: JVP vs finite differences, chunk padding, sharding, dropout keys, projection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h

from gf_jax import mesh as mesh_lib
from valuation import grads, passes


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.fixture(scope="module")
def setup():
    params = h.mlp_params(1)
    data = h.mlp_data(11, 5)
    v = jax.tree.map(
        lambda x: jnp.cos(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape), params
    )
    return params, data, v


def test_jvp_matches_central_finite_difference(setup):
    params, data, v = setup
    jvp = grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode="jvp", chunk_size=4)
    eps = 1e-2
    shift = lambda s: jax.tree.map(lambda p, t: p + s * eps * t, params, v)  # noqa: E731
    plus = grads.per_example_losses(h.mlp_loss_nodrop, shift(1.0), data, chunk_size=4)
    minus = grads.per_example_losses(h.mlp_loss_nodrop, shift(-1.0), data, chunk_size=4)
    fd = (plus - minus) / (2 * eps)
    assert _rel(jvp, fd) < 2e-3


def test_modes_give_the_same_directional_derivatives(setup):
    params, data, v = setup
    out = {
        mode: grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode=mode, chunk_size=4)
        for mode in grads.MODES
    }
    assert out["jvp"].dtype == np.float64 and out["jvp"].shape == (11,)
    assert _rel(out["vmap"], out["loop"]) < 1e-5 and _rel(out["jvp"], out["loop"]) < 1e-5


def test_padded_last_chunk_equals_no_chunking(setup):
    params, data, v = setup
    for mode in ("jvp", "vmap"):
        whole = grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode=mode, chunk_size=64)
        padded = grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode=mode, chunk_size=8)
        np.testing.assert_allclose(padded, whole, rtol=1e-6, atol=1e-7)
    g_whole = grads.mean_grad(h.mlp_loss_nodrop, params, data, chunk_size=64)
    g_padded = grads.mean_grad(h.mlp_loss_nodrop, params, data, chunk_size=8)
    g_loop = grads.mean_grad(h.mlp_loss_nodrop, params, data, mode="loop")
    for a, b, c in zip(
        jax.tree.leaves(g_whole), jax.tree.leaves(g_padded), jax.tree.leaves(g_loop), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)


def test_mean_grad_is_the_exact_mean(setup):
    params, data, _ = setup
    per = [jax.grad(h.mlp_loss_nodrop)(params, grads.example_at(data, i)) for i in range(11)]
    want = jax.tree.map(lambda *g: np.mean(np.stack(g), 0), *per)
    for mode in grads.MODES:
        got = grads.mean_grad(h.mlp_loss_nodrop, params, data, mode=mode, chunk_size=4)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sharded_over_four_devices_equals_one(setup):
    params, data, v = setup
    assert jax.device_count() == 4
    one = mesh_lib.data_mesh(jax.devices()[:1])
    four = mesh_lib.data_mesh()
    for mode in ("jvp", "vmap"):
        a = grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode=mode, chunk_size=4, mesh=one)
        b = grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode=mode, chunk_size=4, mesh=four)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    # The reference loop runs on one device even when v lives on the whole mesh.
    v_mesh = mesh_lib.replicate(v, four)
    loop = grads.grad_dots(h.mlp_loss_nodrop, params, data, v_mesh, mode="loop", mesh=four)
    np.testing.assert_allclose(loop, a, rtol=1e-5, atol=1e-6)
    key = jax.random.key(7)
    a = grads.per_example_losses(h.mlp_loss, params, data, dropout_key=key, mesh=one)
    b = grads.per_example_losses(h.mlp_loss, params, data, dropout_key=key, mesh=four)
    np.testing.assert_allclose(b, a, rtol=1e-6)


def test_dropout_key_per_example_does_not_depend_on_chunking(setup):
    params, data, _ = setup
    key = jax.random.key(3)
    a = grads.per_example_losses(h.mlp_loss, params, data, chunk_size=4, dropout_key=key)
    b = grads.per_example_losses(h.mlp_loss, params, data, chunk_size=64, dropout_key=key)
    c = grads.per_example_losses(h.mlp_loss, params, data, chunk_size=64)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(a, c)  # dropout really is on


def test_per_example_grads_and_projection(setup):
    params, data, v = setup
    full = grads.per_example_grads(h.mlp_loss_nodrop, params, data, chunk_size=4)
    g3 = jax.grad(h.mlp_loss_nodrop)(params, grads.example_at(data, 3))
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(g3), strict=True):
        np.testing.assert_allclose(a[3], b, rtol=1e-5, atol=1e-6)
    flat = np.concatenate([x.reshape(11, -1) for x in jax.tree.leaves(full)], 1)
    pk = jax.random.key(1)
    proj = grads.per_example_grads(
        h.mlp_loss_nodrop, params, data, chunk_size=4, project_dim=4096, project_key=pk
    )
    assert proj.shape == (11, 4096)
    # Linear in the gradient, and inner products preserved up to JL error (~1/sqrt(dim)).
    p_v = np.asarray(grads.project(jax.tree.map(lambda x: x[None], v), pk, 4096))[0]
    flat_v = np.concatenate([np.ravel(x) for x in jax.tree.leaves(v)])
    exact = flat @ flat_v
    approx = proj @ p_v
    scale = np.linalg.norm(flat, axis=1) * np.linalg.norm(flat_v)
    assert np.max(np.abs(approx - exact) / scale) < 0.08
    twice = grads.project(jax.tree.map(lambda x: 2 * x[None], v), pk, 4096)
    np.testing.assert_allclose(np.asarray(twice)[0], 2 * p_v, rtol=1e-5, atol=1e-5)


def test_bad_arguments_raise(setup):
    params, data, v = setup
    with pytest.raises(ValueError, match="unknown mode"):
        grads.grad_dots(h.mlp_loss_nodrop, params, data, v, mode="fast")
    with pytest.raises(ValueError, match="disagree"):
        grads.num_examples({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="vmap' or 'loop"):
        grads.grad_sq_norms(h.mlp_loss_nodrop, params, data, mode="jvp")


def test_names_other_code_uses_stay_on_grads(setup):
    # experiments/, notebooks/ and tests reach the machinery through `valuation.grads`.
    for name in (
        "DEFAULT_CHUNK", "MODES", "Params", "Data", "LossFn", "chunk_size_for", "dots_with",
        "example_at", "grad_dots", "grad_sq_norms", "iter_chunks", "kernels", "mean_grad",
        "num_examples", "per_example_grads", "per_example_losses", "project", "resolve_mesh",
        "set_compiler_options", "compiler_options_key", "jit", "tree_dot", "tree_add",
        "tree_scale",
    ):  # fmt: skip
        assert hasattr(grads, name), name
    _, data, _ = setup
    mesh = grads.resolve_mesh(None)
    chunk = next(grads.iter_chunks(data, grads.chunk_size_for(11, 8, mesh), mesh))
    assert chunk.index_B.shape == chunk.weight_B.shape


def test_a_pass_is_prepared_once_for_every_map(setup):
    params, data, v = setup
    p = passes.prepare(
        h.mlp_loss_nodrop, params, data, chunk_size=8, dropout_key=None, mesh=None, tangent=v
    )
    assert p.n == 11 and p.chunk_size == 8 and len(list(p.chunks())) == 2
    np.testing.assert_allclose(
        p.map_chunks(p.jvp), grads.grad_dots(h.mlp_loss_nodrop, params, data, v, chunk_size=8)
    )
    loop = passes.prepare(
        h.mlp_loss_nodrop, params, data, chunk_size=8, dropout_key=None, mesh=None, per_example=True
    )
    assert loop.params["w1"].sharding.device_set == {jax.devices()[0]}
    norms = loop.map_example_grads(lambda g: grads.tree_dot(g, g))
    want = grads.grad_sq_norms(h.mlp_loss_nodrop, params, data, mode="loop")
    np.testing.assert_array_equal(norms, want)
