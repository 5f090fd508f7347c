"""Per-pair scores [N_train, N_val]: exact against a loop over jax.grad, row means equal to TracIn
(MLP and the tiny GameFormer), cosine, self-influence, projection, and invariance to chunking,
validation blocks and device count."""

import jax
import numpy as np
import pytest
import valuation_helpers as h

from gf_jax import mesh as mesh_lib
from valuation import pairs, projection, tracin

LOSS = h.mlp_loss_nodrop


def _close(a, b, rel=1e-5):
    """Agreement to `rel` relative to the largest entry (entries near 0 carry rounding only)."""
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * np.max(np.abs(b)))


def reference(ckpts, train, val, *, cosine=False) -> np.ndarray:
    """sum_k lr_k s(g_i, g_j) in float64 from explicit gradients."""
    out = 0.0
    for params, lr in ckpts:
        g_train, g_val = h.flat_grads(LOSS, params, train), h.flat_grads(LOSS, params, val)
        if cosine:
            g_train /= np.linalg.norm(g_train, axis=1, keepdims=True)
            g_val /= np.linalg.norm(g_val, axis=1, keepdims=True)
        out = out + lr * g_train @ g_val.T
    return out


@pytest.fixture(scope="module")
def mlp():
    return h.mlp_checkpoints(3), h.mlp_data(13, 1), h.mlp_data(7, 2)


@pytest.fixture(scope="module")
def exact(mlp):
    ckpts, train, val = mlp
    return pairs.score_matrix(LOSS, ckpts, train, val, chunk_size=4)


def test_exact_matrix_equals_a_loop_over_jax_grad(mlp, exact):
    ckpts, train, val = mlp
    assert exact.shape == (13, 7) and exact.dtype == np.float64
    _close(exact, reference(ckpts, train, val))


def test_row_means_are_tracin_scores(mlp, exact):
    ckpts, train, val = mlp
    scores = pairs.per_example(exact)
    np.testing.assert_array_equal(scores, exact.mean(axis=1))
    for mode in ("jvp", "vmap"):
        _close(scores, tracin.tracin_scores(LOSS, ckpts, train, val, mode=mode, chunk_size=4))
    # With dropout on, both sides give example i the same mask (tracin's key streams).
    key = jax.random.key(9)
    with_dropout = pairs.score_matrix(h.mlp_loss, ckpts, train, val, chunk_size=4, dropout_key=key)
    want = tracin.tracin_scores(h.mlp_loss, ckpts, train, val, chunk_size=4, dropout_key=key)
    _close(pairs.per_example(with_dropout), want)
    assert not np.allclose(with_dropout, exact)


def test_chunks_validation_blocks_and_devices_do_not_change_the_matrix(mlp, exact):
    ckpts, train, val = mlp
    one = mesh_lib.data_mesh(jax.devices()[:1])
    runs = [
        pairs.score_matrix(LOSS, ckpts, train, val, chunk_size=64),  # one chunk holds all
        pairs.score_matrix(LOSS, ckpts, train, val, chunk_size=4, val_block=1),
        pairs.score_matrix(LOSS, ckpts, train, val, chunk_size=4, val_block=5),
        pairs.score_matrix(LOSS, ckpts, train, val, chunk_size=3, mesh=one),
    ]
    # Equal up to float32 rounding of the gradients, which XLA computes per batch shape.
    for other in runs:
        _close(other, exact, rel=1e-6)


def test_cosine_matches_a_loop_and_is_bounded(mlp):
    ckpts, train, val = mlp
    cos = pairs.score_matrix(LOSS, ckpts, train, val, method="cosine", chunk_size=4)
    _close(cos, reference(ckpts, train, val, cosine=True))
    lr_K = np.asarray([lr for _, lr in ckpts])
    assert np.all(np.abs(cos) <= lr_K.sum() * (1 + 1e-6))
    assert lr_K.sum() <= len(ckpts) * lr_K.max()
    # Scaling one example's loss scales its gradients but not its cosines.
    scaled = jax.tree.map(lambda a: a.copy(), train)
    scaled["w"][0] *= 5.0
    again = pairs.score_matrix(LOSS, ckpts, scaled, val, method="cosine", chunk_size=4)
    _close(again, cos)


def test_self_influence_is_the_diagonal(mlp):
    ckpts, train, _ = mlp
    diag = np.diag(pairs.score_matrix(LOSS, ckpts, train, train, chunk_size=4))
    got = pairs.self_influence(LOSS, ckpts, train, chunk_size=4)
    _close(got, diag)
    _close(got, tracin.tracin_scores(LOSS, ckpts, train, None, mode="loop", self_influence=True))
    f = projection.num_params(ckpts[0][0])
    rotated = pairs.self_influence(
        LOSS, ckpts, train, dim=f, key=jax.random.key(1), kind="orthogonal"
    )
    _close(rotated, diag)


def test_orthogonal_projection_at_full_dimension_is_exact(mlp, exact):
    ckpts, train, val = mlp
    f = projection.num_params(ckpts[0][0])
    options = {"dim": f, "key": jax.random.key(3), "kind": "orthogonal", "chunk_size": 4}
    _close(pairs.score_matrix(LOSS, ckpts, train, val, **options), exact)
    cos = pairs.score_matrix(LOSS, ckpts, train, val, method="cosine", **options)
    _close(cos, reference(ckpts, train, val, cosine=True))


def test_gaussian_projection_within_the_johnson_lindenstrauss_error(mlp):
    ckpts, train, val = mlp
    params, _ = ckpts[0]
    dim = 1024
    got = pairs.score_matrix(LOSS, [(params, 1.0)], train, val, dim=dim, key=jax.random.key(2))
    g_train, g_val = h.flat_grads(LOSS, params, train), h.flat_grads(LOSS, params, val)
    scale = np.outer(np.linalg.norm(g_train, axis=1), np.linalg.norm(g_val, axis=1))
    err = np.abs(got - g_train @ g_val.T) / scale
    # As in test_projection: per pair SD <= s = sqrt(2/d); the mean of 91 |errors| stays below
    # 3 s and the largest below 6 s except with probability ~1e-5 (Bernstein, union bound).
    s = np.sqrt(2 / dim)
    assert np.mean(err) < 3 * s and np.max(err) < 6 * s


def test_bad_arguments(mlp):
    ckpts, train, val = mlp
    with pytest.raises(ValueError, match="unknown method"):
        pairs.score_matrix(LOSS, ckpts, train, val, method="trak")
    with pytest.raises(ValueError, match="val_block"):
        pairs.score_matrix(LOSS, ckpts, train, val, val_block=0)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        pairs.score_matrix(LOSS, [], train, val)
    with pytest.raises(ValueError, match="finite"):
        pairs.score_matrix(LOSS, [(ckpts[0][0], float("nan"))], train, val)
    with pytest.raises(ValueError, match=r"\[N, J\] matrix"):
        pairs.per_example(np.zeros(3))
    empty = jax.tree.map(lambda a: a[:0], val)
    assert pairs.score_matrix(LOSS, ckpts, train, empty).shape == (13, 0)


# The tiny GameFormer: the same identity on the real model (compiles for ~20 s).
@pytest.mark.slow
def test_tiny_gameformer_row_means_are_tracin_scores():
    import scenario_factory

    from gf_jax import model
    from gf_jax.config import PRESETS
    from valuation import gameformer

    cfg = PRESETS["tiny"].model
    loss = gameformer.loss_fn(cfg)
    train = gameformer.examples(scenario_factory.make_scenarios(6, seed=1), cfg)
    val = gameformer.examples(scenario_factory.make_scenarios(3, seed=2), cfg)
    ckpts = [(model.init_params(cfg, jax.random.key(s)), lr) for s, lr in ((0, 5e-4), (1, 2e-4))]
    matrix = pairs.score_matrix(loss, ckpts, train, val, chunk_size=4)
    want = tracin.tracin_scores(loss, ckpts, train, val, chunk_size=4)  # jvp mode
    assert matrix.shape == (6, 3) and np.all(np.isfinite(matrix)) and np.max(np.abs(matrix)) > 0
    _close(pairs.per_example(matrix), want)
