"""Constant-velocity baseline: exact on constant-velocity motion, metrics against hand values."""

import numpy as np
import pytest

from gf_jax import baselines


def test_constant_velocity_is_exact_for_straight_constant_speed(scenarios):
    s = scenarios(4)  # these scenarios move along x at constant speed
    plan = baselines.constant_velocity(s.arrays["ego_agent_past"])
    np.testing.assert_allclose(plan[..., :2], s.arrays["ego_agent_future"][..., :2], atol=1e-4)
    m = baselines.planning_metrics(plan, s)
    assert m["plan_ade"] == pytest.approx(0.0, abs=1e-4)


def test_constant_velocity_heading_and_error():
    past = np.zeros((1, 21, 7), np.float32)
    past[0, -1, 3:5] = (3.0, 4.0)
    plan = baselines.constant_velocity(past)
    np.testing.assert_allclose(plan[0, 9], [3.0, 4.0, np.arctan2(4, 3)], rtol=1e-6)
    stopped = baselines.constant_velocity(np.zeros((1, 21, 7), np.float32))
    assert not stopped.any()
