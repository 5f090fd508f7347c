"""The three-phase schedule: phase boundaries, normalisation, quartile ratios, ramp, code mode."""

import numpy as np
import pytest

from curriculum import schedule
from curriculum.schedule import ScheduleConfig


def _scores(n=400, seed=0):
    return np.random.default_rng(seed).normal(size=n)


def test_paper_phases_at_20_epochs():
    cfg = ScheduleConfig()
    phases = [schedule.phase(cfg, e) for e in range(20)]
    assert phases[:3] == ["uniform"] * 3
    assert phases[3:8] == ["ramp"] * 5  # epochs 4-8, the paper's ramp; 8 reaches full weights
    assert phases[8:] == ["focus"] * 12
    assert schedule.paper_phase_ends(20) == (3, 8)
    assert [schedule.ramp_fraction(cfg, e) for e in range(3, 8)] == pytest.approx(
        [0.2, 0.4, 0.6, 0.8, 1.0]
    )


def test_paper_phases_scale_with_epochs():
    assert schedule.paper_phase_ends(10) == (2, 4)
    assert schedule.paper_phase_ends(40) == (6, 16)
    cfg = ScheduleConfig(epochs=10)
    assert [schedule.phase(cfg, e) for e in range(10)] == ["uniform"] * 2 + ["ramp"] * 2 + [
        "focus"
    ] * 6


def test_one_and_two_epoch_schedules():
    s = _scores(40)
    one = ScheduleConfig(epochs=1)
    assert schedule.phase(one, 0) == "uniform" and schedule.ramp_fraction(one, 0) == 0.0
    np.testing.assert_array_equal(schedule.probabilities(one, s, 0), 1 / 40)
    two = ScheduleConfig(epochs=2)
    assert [schedule.ramp_fraction(two, e) for e in range(2)] == [0.0, 1.0]


def test_code_phases_at_20_epochs():
    cfg = ScheduleConfig(mode="code")
    phases = [schedule.phase(cfg, e) for e in range(20)]
    assert phases == ["warmup"] * 6 + ["ramp"] * 7 + ["focus"] * 7


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_probabilities_sum_to_one_and_are_positive(mode):
    s = _scores()
    cfg = ScheduleConfig(mode=mode)
    p = schedule.weight_matrix(cfg, s)
    assert p.shape == (20, len(s))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert (p > 0).all()


def test_uniform_phase_is_exactly_uniform():
    s = _scores(101)
    for e in range(3):
        np.testing.assert_array_equal(schedule.probabilities(ScheduleConfig(), s, e), 1 / 101)
    # code mode is exactly uniform at the end of its warm-up (epoch 6)
    np.testing.assert_allclose(schedule.probabilities(ScheduleConfig(mode="code"), s, 5), 1 / 101)


def test_focus_quartile_ratios_exact():
    s = _scores(400)
    cfg = ScheduleConfig()
    p = schedule.probabilities(cfg, s, 10)
    q = schedule.quartiles(s)
    assert np.bincount(q).tolist() == [100, 100, 100, 100]
    top, q3, q2, bottom = (np.unique(p[q == k]) for k in (3, 2, 1, 0))
    for group in (top, q3, q2, bottom):
        assert group.size == 1  # one probability per quartile
    assert top[0] / bottom[0] == pytest.approx(8.0, rel=1e-12)
    assert top[0] / q3[0] == pytest.approx(2.0, rel=1e-12)
    assert q2[0] / bottom[0] == pytest.approx(2.0, rel=1e-12)
    # Relative to uniform: weights / their mean (2 + 1 + 0.5 + 0.25) / 4 = 0.9375.
    assert top[0] * len(s) == pytest.approx(2.0 / 0.9375, rel=1e-12)
    assert bottom[0] * len(s) == pytest.approx(0.25 / 0.9375, rel=1e-12)
    # the top quartile holds the highest scores
    assert s[q == 3].min() > s[q == 2].max()


def test_ramp_is_monotone_per_quartile():
    s = _scores(400)
    cfg = ScheduleConfig()
    p = schedule.weight_matrix(cfg, s) * len(s)
    q = schedule.quartiles(s)
    top = np.array([p[e, q == 3].mean() for e in range(20)])
    bottom = np.array([p[e, q == 0].mean() for e in range(20)])
    assert (np.diff(top[2:8]) > 0).all(), top  # rises through the ramp (epochs 4-8)
    assert (np.diff(bottom[2:8]) < 0).all(), bottom
    np.testing.assert_allclose(top[7:], top[7])  # then constant
    np.testing.assert_allclose(top[:3], 1.0)
    assert top[2] == pytest.approx(1.0)


def test_quartiles_of_ties_are_balanced():
    q = schedule.quartiles(np.zeros(10))
    assert np.bincount(q).tolist() == [3, 2, 3, 2]


def test_code_mode_weights_match_the_released_formulas():
    s = np.linspace(-1.0, 3.0, 50)
    sn = (s - s.min()) / (s.max() - s.min() + 1e-10)
    cfg = ScheduleConfig(mode="code")
    w0 = schedule.weights(cfg, s, 0)  # p = 0.05: alpha = 1 - 0.05/0.3
    np.testing.assert_allclose(w0, np.maximum(1 - (1 - 0.05 / 0.3) * sn, 0.1))
    assert w0[0] > w0[-1]  # easy (low score) first
    w9 = schedule.weights(cfg, s, 9)  # p = 0.5
    np.testing.assert_allclose(w9, 1 + (0.5 - 0.3) / 0.35 * sn)
    w19 = schedule.weights(cfg, s, 19)
    base = 0.5 + 1.5 * sn
    boosted = sn >= np.percentile(sn, 80)
    np.testing.assert_allclose(w19[boosted], 1.5 * base[boosted])
    np.testing.assert_allclose(w19[~boosted], base[~boosted])
    assert boosted.sum() == 10


def test_scores_are_order_invariant():
    s = _scores(64)
    perm = np.random.default_rng(1).permutation(64)
    for mode in ("paper", "code"):
        cfg = ScheduleConfig(mode=mode)
        a = schedule.probabilities(cfg, s, 15)
        b = schedule.probabilities(cfg, s[perm], 15)
        np.testing.assert_allclose(b, a[perm])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="mode"):
        ScheduleConfig(mode="softmax").validate()
    with pytest.raises(ValueError, match="finite"):
        schedule.weights(ScheduleConfig(), np.array([1.0, np.nan]), 0)
    with pytest.raises(ValueError, match="outside"):
        schedule.weights(ScheduleConfig(epochs=5), np.ones(4), 5)
