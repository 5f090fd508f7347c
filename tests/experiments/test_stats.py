"""Report statistics: the paper's own numbers come back from its raw per-seed ADEs (§1.6)."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats
from paper_numbers import PAPER_ADE

from experiments import stats


@pytest.mark.parametrize(
    "method, cv_percent",
    [("tracin", 1.7), ("metadata", 0.7), ("baseline", 7.6), ("hybrid", 3.9), ("loss", 19.5)],
)
def test_paper_cvs_use_the_population_sd(method, cv_percent):
    assert round(100 * stats.summarize(PAPER_ADE[method])["cv"], 1) == cv_percent


def test_paper_tracin_vs_metadata_paired_test():
    r = stats.paired_test(PAPER_ADE["tracin"], PAPER_ADE["metadata"])
    assert round(r["p"], 3) == 0.021
    assert round(r["t"], 2) == -6.72
    # Signed as a - b: TracIn's lower ADE gives a negative d_z; the paper quotes |d_z| = 3.88.
    assert round(r["dz"], 2) == -3.88
    d = np.subtract(PAPER_ADE["tracin"], PAPER_ADE["metadata"])
    assert round(abs(d.mean() / d.std(ddof=0)), 2) == 4.75  # the ddof=0 value we must not return
    assert round(abs(r["dz"]), 2) != 4.75
    assert r["n"] == 3 and r["mean_diff"] == pytest.approx(d.mean())
    swapped = stats.paired_test(PAPER_ADE["metadata"], PAPER_ADE["tracin"])
    assert swapped["t"] == pytest.approx(-r["t"]) and swapped["dz"] == pytest.approx(-r["dz"])
    assert swapped["p"] == pytest.approx(r["p"])


def test_summarize_matches_numpy():
    v = np.random.default_rng(0).normal(2.0, 0.3, 7)
    s = stats.summarize(v)
    assert s["mean"] == pytest.approx(v.mean()) and s["sd"] == pytest.approx(v.std())
    assert s["cv"] == pytest.approx(v.std() / v.mean())
    assert (s["n"], s["min"], s["max"]) == (7, v.min(), v.max())
    assert stats.summarize([1.5])["sd"] == 0.0


def test_paired_test_constant_differences_do_not_crash():
    shifted = stats.paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted["t"] == math.inf and shifted["p"] == 0.0 and math.isnan(shifted["dz"])
    lower = stats.paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert lower["t"] == -math.inf and math.isnan(lower["dz"])
    same = stats.paired_test([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(same["t"]) and math.isnan(same["p"]) and math.isnan(same["dz"])


def test_paired_test_rejects_bad_input():
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_test([1.0], [2.0])
    with pytest.raises(ValueError, match="empty"):
        stats.summarize([])


def _brute_auroc(score, labels, low_is_positive):
    s = -np.asarray(score) if low_is_positive else np.asarray(score)
    pos, neg = s[labels], s[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("low_is_positive", [True, False])
def test_auroc_is_the_pairwise_count_with_half_ties(low_is_positive):
    rng = np.random.default_rng(1)
    score = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.random(40) < 0.3
    got = stats.auroc(score, labels, low_is_positive)
    assert got == pytest.approx(_brute_auroc(score, labels, low_is_positive))
    assert stats.auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 1.0
    with pytest.raises(ValueError, match="one label per score"):
        stats.auroc([0.1, 0.2], [True])


def test_spearman_and_its_matrix():
    x = np.arange(10.0)
    assert stats.spearman(x, x**3) == pytest.approx(1.0)
    assert stats.spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(stats.spearman(x, np.ones(10)))
    names, m = stats.spearman_matrix({"a": x, "b": -x, "c": x**2})
    assert names == ["a", "b", "c"]
    np.testing.assert_allclose(m, [[1, -1, 1], [-1, 1, -1], [1, -1, 1]])


def test_format_and_markdown_table():
    assert stats.format_mean_sd([1.0, 2.0]) == "1.500 ± 0.500"
    assert stats.format_mean_sd([1.0, 2.0], digits=1) == "1.5 ± 0.5"
    assert stats.format_mean_sd([1.25]) == "1.250"  # one seed: no spread to show
    table = stats.markdown_table(
        [{"method": "tracin", "ade": 1.70412, "note": "a|b"}, {"method": "uniform"}],
        ["method", "ade", "note"],
    )
    assert table.splitlines() == [
        "| method | ade | note |",
        "|---|---|---|",
        "| tracin | 1.704 | a\\|b |",
        "| uniform |  |  |",
    ]


def test_paired_power_matches_a_monte_carlo_t_test():
    rng = np.random.default_rng(0)
    n, effect, trials = 9, 0.8, 20000
    d = rng.normal(effect, 1.0, size=(trials, n))  # paired differences, SD 1
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    crit = scipy.stats.t.ppf(0.975, n - 1)
    simulated = np.mean(np.abs(t) > crit)
    assert stats.paired_power(n, effect) == pytest.approx(simulated, abs=4 * 0.0035)
    assert stats.paired_power(n, -effect) == stats.paired_power(n, effect)  # two-sided


@pytest.mark.parametrize("effect, n", [(1.0, 10), (0.8, 15), (0.5, 34), (0.2, 199)])
def test_seeds_needed_matches_published_sample_sizes(effect, n):
    # Paired t-test, alpha 0.05 two-sided, power 0.8 (the values G*Power and Cohen's tables give).
    assert stats.seeds_needed(effect) == n
    assert stats.paired_power(n, effect) >= 0.8 > stats.paired_power(n - 1, effect)


def test_seeds_needed_edge_cases():
    assert stats.seeds_needed(0.0, max_n=50) == 51  # no effect: never
    assert stats.seeds_needed(0.001, max_n=1000) == 1001
    assert stats.seeds_needed(50.0) == 2
    with pytest.raises(ValueError, match="power"):
        stats.seeds_needed(0.5, power=1.0)
    with pytest.raises(ValueError, match="nan"):
        stats.seeds_needed(math.nan)
    with pytest.raises(ValueError, match="finite"):
        stats.paired_power(5, math.nan)
    assert stats.seeds_needed(math.inf) == 2
