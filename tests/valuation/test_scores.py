"""Score arithmetic: hybrid equals its definition, normalisations, Spearman, AUROC, score files."""

import numpy as np
import pytest
import scipy.stats
import valuation_helpers as h

from valuation import scores


def test_hybrid_is_the_mean_of_percentile_ranks():
    a = np.array([0.3, -1.0, 2.0, 0.3, 5.0])
    b = np.array([10.0, 20.0, 30.0, 40.0, 0.0])
    ra = np.array([2.5, 1, 4, 2.5, 5]) / 5  # ties share their mean rank
    rb = np.array([2, 3, 4, 5, 1]) / 5
    np.testing.assert_allclose(scores.percentile_rank(a), ra)
    np.testing.assert_allclose(scores.hybrid(a, b), (ra + rb) / 2)
    np.testing.assert_allclose(scores.hybrid(a), ra)


def test_normalisations():
    s = np.array([3.0, -1.0, 1.0, 7.0])
    np.testing.assert_allclose(scores.min_max(s), (s + 1) / (8 + 1e-10))
    np.testing.assert_allclose(scores.rank_normalise(s), [2 / 3, 0, 1 / 3, 1])
    assert scores.min_max(np.ones(3)).tolist() == [0, 0, 0]


def test_spearman_matrix_and_random_control():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    named = {"a": x, "b": x**3, "c": -x, "r": scores.random_scores(50, seed=1)}
    names, rho = scores.spearman_matrix(named)
    assert names == ["a", "b", "c", "r"]
    np.testing.assert_allclose(np.diag(rho), 1.0)
    np.testing.assert_allclose(rho, rho.T)
    assert rho[0, 1] == pytest.approx(1.0) and rho[0, 2] == pytest.approx(-1.0)
    assert rho[0, 3] == pytest.approx(scipy.stats.spearmanr(x, named["r"]).statistic)
    np.testing.assert_array_equal(scores.random_scores(50, seed=1), named["r"])


def test_auroc():
    labels = np.array([True, True, False, False, False])
    assert scores.auroc([0.1, 0.2, 0.5, 0.6, 0.9], labels) == 1.0  # low score = positive
    assert scores.auroc([0.1, 0.2, 0.5, 0.6, 0.9], labels, low_is_positive=False) == 0.0
    assert scores.auroc([0.1, 0.5, 0.5, 0.6, 0.9], labels) == pytest.approx(5.5 / 6)  # one tie
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200), rng.random(200) < 0.3
    pairs = np.mean([(si < sj) + 0.5 * (si == sj) for si in s[y] for sj in s[~y]])
    assert scores.auroc(s, y) == pytest.approx(pairs)
    assert np.isnan(scores.auroc([1.0, 2.0], [True, True]))


def test_loss_scores_are_per_example_losses_in_any_order():
    params, data = h.mlp_params(0), h.mlp_data(9, 1)
    got = scores.loss_scores(h.mlp_loss_nodrop, params, data, chunk_size=4)
    want = [
        float(
            h.mlp_loss_nodrop(
                params, {k: (v[i] if k != "y" else {"t": v["t"][i]}) for k, v in data.items()}
            )
        )
        for i in range(9)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    perm = np.random.default_rng(2).permutation(9)
    shuffled = {"x": data["x"][perm], "y": {"t": data["y"]["t"][perm]}, "w": data["w"][perm]}
    np.testing.assert_allclose(
        scores.loss_scores(h.mlp_loss_nodrop, params, shuffled, chunk_size=4), got[perm], rtol=1e-6
    )


def test_score_file_round_trip(tmp_path):
    named = {"tracin": np.array([1.0, -2.0]), "loss": np.array([0.5, 0.25])}
    path = scores.save_scores(
        tmp_path / "s" / "x.npz", named, {"mode": "jvp", "n": np.int64(2)}, tokens=["a", "b"]
    )
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]  # no temporary left behind
    back, meta = scores.load_scores(path)
    np.testing.assert_array_equal(back["tracin"], named["tracin"])
    assert back["token"].tolist() == ["a", "b"] and meta == {"mode": "jvp", "n": 2}
    with pytest.raises(ValueError, match="different lengths"):
        scores.save_scores(tmp_path / "y.npz", {"a": np.zeros(2), "b": np.zeros(3)}, {})
