"""The tiny GameFormer: TracIn modes agree with a brute-force loop over jax.grad; the adapter
loads reference checkpoints with their learning rates and writes score files; projected
gradients and TRAK match references built from the loop's gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import valuation_helpers as h

from gf_jax import model
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import PRESETS
from valuation import gameformer, metadata, projection, scores, tracin, trak

PRESET = PRESETS["tiny"]
TINY = PRESET.model
CHUNK = 4  # one chunk size for every test here: each kernel compiles once per session
LRS = (5e-4, 2.5e-4)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sets():
    import scenario_factory

    return scenario_factory.make_scenarios(6, seed=1), scenario_factory.make_scenarios(3, seed=2)


@pytest.fixture(scope="module")
def ckpts():
    return [(model.init_params(TINY, jax.random.key(s)), lr) for s, lr in enumerate(LRS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ckpts):
    store = CheckpointStore(tmp_path_factory.mktemp("reference") / "checkpoints", keep_all=True)
    for epoch, (params, lr) in enumerate(ckpts):
        meta = {"lr": lr, "step": epoch + 1, "history": []}
        store.save(epoch, params, {"count": jnp.zeros(())}, meta, is_best=epoch == 0)
    return store.root.parent


def _close(a, b, rel=1e-5):
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * np.max(np.abs(b)))


def test_tiny_gameformer_modes_agree_with_brute_force(sets, ckpts):
    train = gameformer.examples(sets[0], TINY)
    val = gameformer.examples(sets[1], TINY)
    loss = gameformer.loss_fn(TINY)
    ref = h.brute_force_tracin(loss, ckpts, train, val)
    assert np.all(np.isfinite(ref)) and np.max(np.abs(ref)) > 0
    for mode in ("jvp", "vmap", "loop"):
        s = tracin.tracin_scores(loss, ckpts, train, val, mode=mode, chunk_size=CHUNK)
        _close(s, ref)


def test_load_checkpoints_with_learning_rates(reference):
    all_, info = gameformer.load_checkpoints(reference, "all")
    assert [lr for _, lr in all_] == list(LRS)
    assert [i["epoch"] for i in info] == [0, 1]
    best, info = gameformer.load_checkpoints(reference / "checkpoints", "best")
    assert len(best) == 1 and best[0][1] == LRS[0] and info[0]["checkpoint"] == "best"
    mean, _ = gameformer.load_checkpoints(reference, "all", weighting="mean")
    assert [w for _, w in mean] == [0.5, 0.5]
    with pytest.raises(FileNotFoundError, match="no epoch checkpoints"):
        gameformer.load_checkpoints(reference / "nowhere")


def test_score_file_holds_every_score_and_its_metadata(tmp_path, sets, ckpts, reference):
    train, val = sets
    path = gameformer.score_dataset(
        PRESET, train, val, reference, name="tiny_test", out_dir=tmp_path, chunk_size=CHUNK
    )
    assert path == tmp_path / "tiny_test.npz"
    named, meta = scores.load_scores(path)
    assert set(named) == {*gameformer.DEFAULT_SCORES, "token"}
    assert list(named["token"]) == list(train.meta["token"])

    loss = gameformer.loss_fn(TINY)
    tr, va = gameformer.examples(train, TINY), gameformer.examples(val, TINY)
    _close(named["tracin"], tracin.tracin_scores(loss, ckpts, tr, va, chunk_size=CHUNK))
    np.testing.assert_allclose(named["metadata"], metadata.metadata_scores(train, "weighted"))
    np.testing.assert_allclose(named["metadata_mean"], metadata.metadata_scores(train, "mean"))
    np.testing.assert_allclose(named["hybrid"], scores.hybrid(named["tracin"], named["metadata"]))
    # The loss score is the eval loss at the final epoch's checkpoint (checked against a loop
    # over examples in test_scores.py).
    final = ckpts[-1][0]
    _close(named["loss"], scores.loss_scores(loss, final, tr, chunk_size=CHUNK), rel=1e-6)
    assert not np.allclose(
        named["loss"], scores.loss_scores(loss, ckpts[0][0], tr, chunk_size=CHUNK)
    )
    assert np.all((named["random"] >= 0) & (named["random"] < 1))

    assert meta["preset"] == "tiny" and meta["mode"] == "jvp"
    assert meta["data"]["n_train"] == 6 and meta["data"]["train"] == train.source
    assert [c["lr"] for c in meta["checkpoints"]["used"]] == list(LRS)
    assert meta["checkpoints"]["final_epoch"] == 1
    assert set(meta["seconds"]) == set(gameformer.DEFAULT_SCORES) and meta["total_seconds"] > 0


def test_unknown_score_is_refused(sets, reference):
    with pytest.raises(ValueError, match="unknown score"):
        gameformer.compute_scores(PRESET, *sets, reference, which=("tracin", "magic"))


# ----------------------------------------------------------------------------- projection, TRAK


@functools.lru_cache(maxsize=1)
def _jitted_grad(loss):
    return jax.jit(jax.grad(loss))  # one compile (~20 s) for every call below


def _loop_grads(loss, params, data):
    """Per-example gradients by a loop over jax.grad, stacked into one pytree [N, ...]."""
    grad = _jitted_grad(loss)
    n = len(jax.tree.leaves(data)[0])
    rows = [grad(params, jax.tree.map(lambda a, i=i: a[i], data)) for i in range(n)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)


def test_tiny_gameformer_projection_keeps_inner_products(sets, ckpts):
    # F = 127k: R cannot be materialised here, so the pass (chunked, vmapped, over 4 devices) is
    # checked against projecting the loop's gradients with the same key, and the projected inner
    # products against the exact ones within the Johnson-Lindenstrauss error.
    loss, params = gameformer.loss_fn(TINY), ckpts[0][0]
    train = gameformer.examples(sets[0], TINY)
    key, dim = jax.random.key(3), 256  # the Gaussian blocks of R dominate: 4x less than 1024
    got = projection.project_gradients(loss, params, train, dim=dim, key=key, chunk_size=CHUNK)
    ref_B = _loop_grads(loss, params, train)
    want = np.asarray(projection.project(ref_B, key, dim))
    _close(got, want)  # per-example gradients of two programs, float32 (measured 1e-6)
    g_NxF = np.stack([np.concatenate([np.ravel(x[i]) for x in jax.tree.leaves(ref_B)])
                      for i in range(len(got))]).astype(np.float64)  # fmt: skip
    exact = g_NxF @ g_NxF.T
    norms = np.sqrt(np.diag(exact))
    sketched = got.astype(np.float64) @ got.astype(np.float64).T
    # Each pair's error has SD <= sqrt(2 / dim) |g_i| |g_j| (0.088 here): 5 SDs for 36 pairs.
    assert np.all(np.abs(sketched - exact) <= 5 * np.sqrt(2 / dim) * np.outer(norms, norms))


def test_tiny_gameformer_trak_is_the_kernel_formula_on_its_features(sets, ckpts):
    loss = gameformer.loss_fn(TINY)
    train = gameformer.examples(sets[0], TINY)
    val = gameformer.examples(sets[1], TINY)
    models, key, dim = [p for p, _ in ckpts], jax.random.key(8), 4
    got = trak.trak_scores(loss, models, train, val, dim=dim, key=key, chunk_size=CHUNK)
    want = 0.0
    for m, params in enumerate(models):  # the formula on features of the loop's gradients
        k = jax.random.fold_in(key, m)
        phi_N = np.asarray(projection.project(_loop_grads(loss, params, train), k, dim), np.float64)
        phi_J = np.asarray(projection.project(_loop_grads(loss, params, val), k, dim), np.float64)
        gram = phi_N.T @ phi_N
        lam = trak.RELATIVE_DAMPING * np.trace(gram) / dim
        want = want + phi_N @ np.linalg.solve(gram + lam * np.eye(dim), phi_J.T) / len(models)
    assert got.shape == (6, 3) and got.dtype == np.float64 and np.max(np.abs(want)) > 0
    # Features agree to ~1e-6 relative; the 4 x 4 systems (condition ~3e3) could amplify that to
    # 3e-3 at worst, measured 2.6e-6.
    _close(got, want, rel=1e-4)
