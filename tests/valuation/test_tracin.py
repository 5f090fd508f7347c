"""TracIn on an MLP: the three modes agree with each other and with a brute-force loop over
jax.grad; lr weighting, sign, dropout, self-influence; order invariance. (The tiny GameFormer:
test_gameformer_scores.py.)"""

import jax
import numpy as np
import pytest
import valuation_helpers as h

from valuation import tracin


def _close(a, b, rel=1e-5):
    """Agreement to `rel` relative to the largest score (scores near 0 carry rounding only)."""
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * np.max(np.abs(b)))


@pytest.fixture(scope="module")
def mlp():
    return h.mlp_checkpoints(3), h.mlp_data(13, 1), h.mlp_data(7, 2)


def test_mlp_modes_agree_with_brute_force(mlp):
    ckpts, train, val = mlp
    ref = h.brute_force_tracin(h.mlp_loss_nodrop, ckpts, train, val)
    for mode in ("jvp", "vmap", "loop"):
        s = tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val, mode=mode, chunk_size=4)
        assert s.dtype == np.float64 and s.shape == (13,)
        _close(s, ref)


def test_score_is_lr_weighted_sum_and_sign_flips(mlp):
    ckpts, train, val = mlp
    per = [tracin.tracin_scores(h.mlp_loss_nodrop, [(p, 1.0)], train, val) for p, _ in ckpts]
    total = tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val)
    _close(total, sum(lr * s for (_, lr), s in zip(ckpts, per, strict=True)))
    flipped = tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val, sign=-1)
    np.testing.assert_array_equal(flipped, -total)


def test_positive_score_means_a_step_lowers_val_loss(mlp):
    ckpts, train, val = mlp
    params, _ = ckpts[0]
    s = tracin.tracin_scores(h.mlp_loss_nodrop, [(params, 1.0)], train, val)
    val_loss = lambda p: np.mean(jax.vmap(h.mlp_loss_nodrop, (None, 0))(p, val))  # noqa: E731
    for i in (int(np.argmax(s)), int(np.argmin(s))):
        g = jax.grad(h.mlp_loss_nodrop)(params, jax.tree.map(lambda a, i=i: a[i], train))
        stepped = jax.tree.map(lambda p, gi: p - 1e-3 * gi, params, g)
        assert np.sign(val_loss(params) - val_loss(stepped)) == np.sign(s[i])


def test_modes_agree_with_dropout_on(mlp):
    ckpts, train, val = mlp
    key = jax.random.key(5)
    out = [
        tracin.tracin_scores(
            h.mlp_loss, ckpts, train, val, mode=mode, chunk_size=4, dropout_key=key
        )
        for mode in ("jvp", "vmap", "loop")
    ]
    _close(out[1], out[0])
    _close(out[2], out[0])
    off = tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val)
    assert not np.allclose(out[0], off)


def test_self_influence(mlp):
    ckpts, train, _ = mlp
    want = np.zeros(13)
    for p, lr in ckpts:
        for i in range(13):
            g = jax.grad(h.mlp_loss_nodrop)(p, jax.tree.map(lambda a, i=i: a[i], train))
            want[i] += lr * sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(g))
    for mode in ("jvp", "vmap", "loop"):
        got = tracin.tracin_scores(
            h.mlp_loss_nodrop, ckpts, train, None, mode=mode, chunk_size=4, self_influence=True
        )
        _close(got, want)


def test_invariant_to_training_and_validation_order(mlp):
    ckpts, train, val = mlp
    base = tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val, chunk_size=4)
    perm = np.random.default_rng(0).permutation(13)
    shuffled = tracin.tracin_scores(
        h.mlp_loss_nodrop, ckpts, jax.tree.map(lambda a: a[perm], train), val, chunk_size=4
    )
    _close(shuffled, base[perm], rel=1e-6)
    vperm = np.random.default_rng(1).permutation(7)
    vshuf = tracin.tracin_scores(
        h.mlp_loss_nodrop, ckpts, train, jax.tree.map(lambda a: a[vperm], val), chunk_size=4
    )
    _close(vshuf, base, rel=1e-5)


def test_bad_arguments(mlp):
    ckpts, train, val = mlp
    with pytest.raises(ValueError, match="at least one checkpoint"):
        tracin.tracin_scores(h.mlp_loss_nodrop, [], train, val)
    with pytest.raises(ValueError, match="unknown mode"):
        tracin.tracin_scores(h.mlp_loss_nodrop, ckpts, train, val, mode="batch")
