"""Sampling with replacement (seeded) and hard top-k selection."""

import subprocess
import sys

import numpy as np
import pytest

from curriculum import sampler, schedule
from gf_jax import sampling


def test_curriculum_is_fit_sampling():
    s = np.random.default_rng(0).normal(size=200)
    cur = sampler.Curriculum(schedule.ScheduleConfig(), s)
    np.testing.assert_array_equal(cur(12), schedule.probabilities(cur.config, s, 12))
    idx = sampling.epoch_indices(200, 12, 3, cur)
    np.testing.assert_array_equal(idx, sampler.draw(cur(12), 12, 3))


def test_import_does_not_start_jax():
    code = "import sys, curriculum.sampler; print(sorted({'jax', 'optax', 'orbax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_draw_is_seeded_and_follows_the_weights():
    p = np.r_[np.full(100, 2.0), np.full(100, 0.25)]
    p /= p.sum()
    a = sampler.draw(p, 5, seed=1)
    np.testing.assert_array_equal(a, sampler.draw(p, 5, seed=1))
    assert not np.array_equal(a, sampler.draw(p, 5, seed=2))
    assert not np.array_equal(a, sampler.draw(p, 6, seed=1))
    assert len(a) == 200  # N draws with replacement
    many = np.concatenate([sampler.draw(p, e, seed=0) for e in range(50)])
    share_top = (many < 100).mean()
    assert share_top == pytest.approx(8 / 9, abs=0.01)


def test_selection_sizes_exact_and_ends_right():
    s = np.arange(100.0)[::-1]  # example 0 has the highest score
    top = sampler.select(s, 0.2, "top")
    assert len(top) == 20 and set(top) == set(range(20))
    bottom = sampler.select(s, 0.2, "bottom")
    assert len(bottom) == 20 and set(bottom) == set(range(80, 100))
    rnd = sampler.select(s, 0.2, "random", seed=3)
    assert len(rnd) == 20 == len(set(rnd))
    np.testing.assert_array_equal(rnd, sampler.select(s, 0.2, "random", seed=3))
    assert not np.array_equal(rnd, sampler.select(s, 0.2, "random", seed=4))
    assert len(sampler.select(np.ones(5148), 0.2)) == 1029  # the released curation's 1,029
    assert len(sampler.select(np.ones(3), 0.01)) == 1


def test_bad_selection_raises():
    with pytest.raises(ValueError, match="fraction"):
        sampler.select(np.ones(10), 0.0)
    with pytest.raises(ValueError, match="selection"):
        sampler.select(np.ones(10), 0.5, "middle")
    with pytest.raises(ValueError, match="finite"):
        sampler.Curriculum(schedule.ScheduleConfig(), np.array([np.inf, 1.0]))
