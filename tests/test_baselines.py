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


# ----------------------------------------------------------------------------- route following

T_T = 0.1 * np.arange(1, 81)


def _ego_past(v_xy) -> np.ndarray:
    """Ego past [1, 21, 7] ending at the origin, moving at the constant velocity v."""
    past = np.zeros((1, 21, 7), np.float32)
    past[0, :, 0] = v_xy[0] * np.arange(-20, 1) * 0.1
    past[0, :, 1] = v_xy[1] * np.arange(-20, 1) * 0.1
    past[0, :, 3:5] = v_xy
    return past


def _route(*polylines_Px2: np.ndarray) -> np.ndarray:
    """Route lanes [1, 10, 50, 3] from polylines [50, 2] (headings from the next point)."""
    route = np.zeros((1, 10, 50, 3), np.float32)
    for i, xy in enumerate(polylines_Px2):
        step = np.diff(xy, axis=0)
        h = np.arctan2(step[:, 1], step[:, 0])
        route[0, i, :, :2] = xy
        route[0, i, :, 2] = np.concatenate([h, h[-1:]])
    return route


def _line(start, end, points: int = 50) -> np.ndarray:
    return np.linspace(start, end, points)


def _arc(center, radius: float, a0: float, a1: float, points: int = 50) -> np.ndarray:
    """Points on a circle at angles a0..a1 (counter-clockwise when a1 > a0)."""
    a = np.linspace(a0, a1, points)
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], -1)


def _plan(v_xy, *polylines_Px2) -> np.ndarray:
    arrays = {"ego_agent_past": _ego_past(v_xy), "route_lanes": _route(*polylines_Px2)}
    return baselines.route_following(arrays)[0]


def test_route_following_is_exact_on_a_straight_lane_and_beyond_its_end():
    # The lane ends at x = 60 m; at 10 m/s the last 2 s are the straight extension.
    plan = _plan((10.0, 0.0), _line((-30.0, 0.0), (60.0, 0.0)))
    want = np.stack([10.0 * T_T, 0 * T_T, 0 * T_T], -1)
    np.testing.assert_allclose(plan, want, atol=1e-4)


def test_route_following_on_a_circular_arc():
    # Left turn of radius 30 m through the origin, tangent to x there; 64 m of the 75 m arc.
    r, v = 30.0, 8.0
    lane = _arc((0.0, r), r, -np.pi / 2 - 0.5, -np.pi / 2 + 2.5)
    plan = _plan((v, 0.0), lane)
    a_T = v * T_T / r
    want = np.stack([r * np.sin(a_T), r * (1 - np.cos(a_T)), a_T], -1)
    # Chords of 1.8 m on a 30 m radius: sagitta 1.4 cm, chord/arc length ratio 1 - 1.6e-4.
    np.testing.assert_allclose(plan[:, :2], want[:, :2], atol=0.03)
    np.testing.assert_allclose(plan[:, 2], want[:, 2], atol=2e-3)


def _chain_lanes() -> dict[str, np.ndarray]:
    """Straight A (x -20..10), left quarter arc B (radius 20, to (30, 20)), straight C north."""
    return {
        "A": _line((-20.0, 0.0), (10.0, 0.0)),
        "B": _arc((10.0, 20.0), 20.0, -np.pi / 2, 0.0),
        "C": _line((30.0, 20.0), (30.0, 60.0)),
        "before_A": _line((-60.0, 0.0), (-20.0, 0.0)),
        "right_of_A": _line((-20.0, -3.7), (10.0, -3.7)),
        "right_of_B": _arc((10.0, 20.0), 23.7, -np.pi / 2, 0.0),
    }


def _chain_truth(v: float) -> np.ndarray:
    """Pose [80, 3] of driving A, B, C at speed v from the origin."""
    s_T = v * T_T
    on_b = np.clip(s_T - 10.0, 0.0, 10.0 * np.pi)
    a_T = on_b / 20.0
    x = np.minimum(s_T, 10.0) + 20.0 * np.sin(a_T)
    y = 20.0 * (1 - np.cos(a_T)) + np.maximum(s_T - 10.0 - 10.0 * np.pi, 0.0)
    return np.stack([x, y, a_T], -1)


def test_route_following_chains_consecutive_route_polylines():
    lanes = _chain_lanes()
    # Stored out of driving order, with the parallel lanes and the lane behind the ego in between.
    order = ("right_of_A", "C", "before_A", "right_of_B", "B", "A")
    plan = _plan((6.0, 0.0), *(lanes[k] for k in order))  # 48 m: 10 on A, 31.4 on B, 6.6 on C
    want = _chain_truth(6.0)
    np.testing.assert_allclose(plan[:, :2], want[:, :2], atol=0.03)
    # At the curvature jumps (A -> B, B -> C) the vertex tangents blend over one chord of B,
    # which turns 0.032 rad.
    np.testing.assert_allclose(plan[:, 2], want[:, 2], atol=0.01)


def test_route_following_stops_chaining_at_a_gap_and_goes_straight_on():
    # Only the neighbouring lane's arc follows A (3.7 m away): the path ends with A.
    lanes = _chain_lanes()
    assert baselines.MAX_CHAIN_GAP_M < 3.7
    plan = _plan((6.0, 0.0), lanes["A"], lanes["right_of_B"])
    np.testing.assert_allclose(plan, np.stack([6.0 * T_T, 0 * T_T, 0 * T_T], -1), atol=1e-4)


def test_route_following_without_route_lanes_is_constant_velocity():
    past = np.concatenate([_ego_past((3.0, 1.0)), _ego_past((5.0, 0.0))])
    route = np.concatenate([np.zeros((1, 10, 50, 3), np.float32), _route(_arc((0, 30), 30, -2, 0))])
    plan = baselines.route_following({"ego_agent_past": past, "route_lanes": route})
    np.testing.assert_allclose(plan[0], baselines.constant_velocity(past[:1])[0], atol=1e-6)
    assert np.abs(plan[1, -1, 1]) > 5.0  # the other scenario in the batch turns with its route


def test_route_following_stopped_ego_stays_put_and_offsets_are_kept():
    lane = _line((-30.0, 0.5), (60.0, 0.5))  # the ego is 0.5 m right of the centreline
    stopped = _plan((0.0, 0.0), lane)
    np.testing.assert_allclose(stopped, np.zeros((80, 3)), atol=1e-6)
    moving = _plan((5.0, 0.0), lane)
    np.testing.assert_allclose(moving, np.stack([5.0 * T_T, 0 * T_T, 0 * T_T], -1), atol=1e-4)


# ----------------------------------------------------------------------------- neighbours, evaluate


def _constant_velocity_neighbours(s):
    """The factory's neighbours keep their lateral position in the past but not in the future
    (future y is 0): give the futures the past's y, so every neighbour moves at constant velocity."""
    past, fut = s.arrays["neighbor_agents_past"], s.arrays["neighbor_agents_future"]
    real_NxA = np.any(past != 0, axis=(2, 3))
    fut[..., 1] = np.where(real_NxA[..., None], past[:, :, -1:, 1], 0.0)
    return s


def test_constant_velocity_prediction_is_exact_for_constant_velocity_neighbours(scenarios):
    s = _constant_velocity_neighbours(scenarios(3))
    past, fut = s.arrays["neighbor_agents_past"], s.arrays["neighbor_agents_future"]
    # Give neighbour 1 of scenario 0 a diagonal velocity (the factory's move along x).
    v = np.array([2.0, -1.5], np.float32)
    past[0, 1, :, :2] = past[0, 1, -1, :2] + v * (np.arange(-20, 1) * 0.1)[:, None]
    past[0, 1, :, 3:5] = v
    fut[0, 1, :, :2] = past[0, 1, -1, :2] + v * T_T[:, None]
    pred = baselines.constant_velocity_prediction(past)
    assert pred.shape == (3, 10, 80, 2)
    real = np.any(past[:, :10] != 0, axis=(2, 3))
    np.testing.assert_allclose(pred[real], fut[:, :10][real][..., :2], atol=1e-4)
    assert not pred[~real].any()  # padding slots stay zero
    assert baselines.constant_velocity_prediction(past, neighbors=20).shape == (3, 20, 80, 2)


def _one_scenario_with_hand_errors(scenarios):
    """One scenario: neighbour 0 moves at 1 m/s in its past but stands still in its future
    (CV error 0.1 t per step), neighbour 1 is unobserved in the future (not scored), the other
    slots are padding; the ego future drifts 0.3 m/s to the left of its straight past."""
    s = scenarios(1)
    nb_past = np.zeros_like(s.arrays["neighbor_agents_past"])
    nb_fut = np.zeros_like(s.arrays["neighbor_agents_future"])
    nb_past[0, 0, :, 0], nb_past[0, 0, :, 3] = 10.0 + np.arange(-20, 1) * 0.1, 1.0
    nb_past[0, 1, :, 0], nb_past[0, 1, :, 3] = -15.0, 2.0
    nb_fut[0, 0, :, 0] = 10.0
    s.arrays["neighbor_agents_past"], s.arrays["neighbor_agents_future"] = nb_past, nb_fut
    s.arrays["ego_agent_future"][0, :, 1] += 0.3 * T_T
    return s


def test_evaluate_scores_valid_neighbours_only(scenarios):
    s = _one_scenario_with_hand_errors(scenarios)
    for row in baselines.evaluate(s).values():
        assert row["pred_ade"] == pytest.approx(np.mean(T_T), rel=1e-5)  # 4.05 m
        assert row["pred_fde"] == pytest.approx(8.0, rel=1e-5)
        assert row["plan_ade"] == pytest.approx(0.3 * np.mean(T_T), rel=1e-5)  # both go straight


def test_evaluate_rows_and_plan_metrics_match_planning_metrics(scenarios):
    s = _constant_velocity_neighbours(scenarios(6))
    s.arrays["ego_agent_future"][..., 1] += 0.2 * T_T  # non-zero plan errors
    out = baselines.evaluate(s)
    assert set(out) == {"constant_velocity", "route_following"}
    plans = {
        "constant_velocity": baselines.constant_velocity(s.arrays["ego_agent_past"]),
        "route_following": baselines.route_following(s),
    }
    for name, plan in plans.items():
        assert set(out[name]) == set(baselines.metrics.METRIC_NAMES)
        for k, v in baselines.planning_metrics(plan, s).items():
            assert out[name][k] == pytest.approx(v, rel=1e-6), (name, k)
        assert out[name]["pred_ade"] == pytest.approx(0.0, abs=1e-4)  # factory: constant velocity
