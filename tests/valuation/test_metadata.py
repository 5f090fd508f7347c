"""Metadata features on hand-built scenarios (a head-on approach, an empty road, a crowded
crosswalk) against hand-computed values and a per-scenario port of the released code."""

import numpy as np
import pytest

from gf_jax.data.schema import LAYOUT, ScenarioSet, empty_meta
from valuation import metadata

T_FUT = np.arange(1, 81) * 0.1
T_PAST = np.arange(-20, 1) * 0.1


def _blank(n):
    return {k: np.zeros((n, *shape), np.float32) for k, (shape, _) in LAYOUT.items()}


def _agent(a, i, slot, x, y, vx, vy, heading, ped=False):
    """A neighbour moving at constant velocity through (x, y) at t = 0."""
    past = a["neighbor_agents_past"][i, slot]
    past[:, 0], past[:, 1] = x + vx * T_PAST, y + vy * T_PAST
    past[:, 2], past[:, 3], past[:, 4] = heading, vx, vy
    past[:, 6:8] = (0.5, 0.5) if ped else (4.5, 1.9)
    past[:, 9 if ped else 8] = 1.0
    fut = a["neighbor_agents_future"][i, slot]
    fut[:, 0], fut[:, 1], fut[:, 2] = x + vx * T_FUT, y + vy * T_FUT, heading


def _ego(a, i, v, x0=0.0):
    a["ego_agent_past"][i, :, 0] = v * T_PAST
    a["ego_agent_past"][i, :, 3] = v
    a["ego_agent_future"][i, :, 0] = x0 + v * T_FUT


@pytest.fixture(scope="module")
def scenes():
    a = _blank(3)
    # 0: head-on. Ego at 10 m/s along +x; an oncoming car 100 m ahead, 2 m to the left.
    _ego(a, 0, 10.0)
    _agent(a, 0, 0, 100.0, 2.0, -10.0, 0.0, np.pi)
    # 1: an empty road.
    _ego(a, 1, 8.0)
    # 2: a crowded crosswalk. Ego waits at x = 0.5; five pedestrians cross, two stand at the curb.
    a["ego_agent_future"][2, :, 0] = 0.5
    for slot, (x, y0, vy) in enumerate(
        [(2.5, -6, 1.5), (4.0, -4, 1.5), (4.5, -2, 1.5), (5.0, 0, 1.5), (4.2, 5, -1.2)]
    ):
        _agent(a, 2, slot, x, y0, 0.0, vy, np.sign(vy) * np.pi / 2, ped=True)
    _agent(a, 2, 5, 2.5, 6.0, 0.0, 0.0, 0.0, ped=True)
    _agent(a, 2, 6, 2.5, -6.0, 0.0, 0.0, 0.0, ped=True)
    a["crosswalks"][2, 0, :, 0] = 4.0
    a["crosswalks"][2, 0, :, 1] = np.linspace(-5, 5, 30)
    return ScenarioSet(a, empty_meta(3), "hand-built").validate()


def _released(ego_future, nb_future, nb_past):
    """The released score_scenarios.py, one scenario at a time (loops, no vectorisation)."""
    valid = np.any(nb_past[:, :, :2] != 0, axis=(1, 2))
    if not valid.any():
        return dict(
            d_min=np.inf, ttc_min=np.inf, n_conflict=0, t_prox=0.0, delta_theta_max=0.0, n_active=0
        )
    ego_xy, nb = ego_future[:, :2].astype(float), nb_future[valid].astype(float)
    d = np.linalg.norm(ego_xy[None] - nb[..., :2], axis=-1)
    closing = -np.diff(d, axis=1) / 0.1
    app = closing > 0.1
    ttc = float(np.min(d[:, :-1][app] / closing[app])) if app.any() else np.inf
    dth = []
    for t in range(80):
        x = abs(float(ego_future[t, 2]) - nb[np.argmin(d[:, t]), t, 2])
        dth.append(min(x, 2 * np.pi - x))
    speed = np.hypot(nb_past[valid][..., 3], nb_past[valid][..., 4])
    return dict(
        d_min=float(d.min()),
        ttc_min=ttc,
        n_conflict=int(np.any(d < 3, 0).sum()),
        t_prox=float(np.any(d < 10, 0).sum() * 0.1),
        delta_theta_max=max(dth),
        n_active=int(np.any(speed > 1.0, axis=1).sum()),
    )


def test_head_on_approach_hand_values(scenes):
    f = {k: v[0] for k, v in metadata.features(scenes).items()}
    assert f["d_min"] == pytest.approx(2.0, abs=1e-5)  # abreast at t = 5 s, 2 m apart
    # Approaching at 20 m/s; the smallest d_t / closing_t is at t = 4.8 s (d = sqrt(20)).
    assert f["ttc_min"] == pytest.approx(np.sqrt(20) / (10 * (np.sqrt(20) - np.sqrt(8))), rel=1e-4)
    assert f["n_conflict"] == 3  # |dx| in {-2, 0, 2}
    assert f["t_prox"] == pytest.approx(0.9)  # |dx| <= 8
    assert f["delta_theta_max"] == pytest.approx(np.pi)
    assert f["n_active"] == 1
    terms = [0.5, 2.0, 3 / 80, 0.9 / 8, 1.0, 1 / 20]
    weighted = float(np.dot([0.20, 0.25, 0.20, 0.15, 0.10, 0.10], terms))
    assert metadata.metadata_scores(scenes, "weighted")[0] == pytest.approx(weighted, rel=1e-5)
    assert metadata.metadata_scores(scenes, "mean")[0] == pytest.approx(np.mean(terms), rel=1e-5)


def test_empty_road_scores_zero(scenes):
    f = {k: v[1] for k, v in metadata.features(scenes).items()}
    assert f["d_min"] == np.inf and f["ttc_min"] == np.inf
    assert f["n_conflict"] == f["t_prox"] == f["delta_theta_max"] == f["n_active"] == 0
    assert metadata.metadata_scores(scenes, "weighted")[1] == 0.0
    assert metadata.metadata_scores(scenes, "mean")[1] == 0.0


def test_crowded_crosswalk_hand_values(scenes):
    f = {k: v[2] for k, v in metadata.features(scenes).items()}
    assert f["d_min"] == pytest.approx(2.0, abs=1e-5)  # the nearest walker passes 2 m ahead
    assert f["n_conflict"] == 29  # that walker's |y| < sqrt(5) for t = 2.6 .. 5.4 s
    assert f["t_prox"] == pytest.approx(8.0)  # the curb pedestrians are always within 10 m
    assert f["delta_theta_max"] == pytest.approx(np.pi / 2)
    assert f["n_active"] == 5  # the two standing pedestrians are not active


def test_matches_the_released_code_per_scenario(scenes):
    got = metadata.features(scenes)
    a = scenes.arrays
    for i in range(3):
        want = _released(
            a["ego_agent_future"][i], a["neighbor_agents_future"][i], a["neighbor_agents_past"][i]
        )
        for k in metadata.FEATURES:
            assert got[k][i] == pytest.approx(want[k], rel=1e-6), (i, k)


def test_unobserved_future_steps_count_as_origin_unless_ignored():
    a = _blank(1)
    _ego(a, 0, 0.5)  # creeping ego: its future stays near the origin
    _agent(a, 0, 0, 30.0, 0.0, 0.0, 0.0, 0.0)
    a["neighbor_agents_future"][0, 0, 10:] = 0.0  # unobserved after 1 s
    code = metadata.features(a)
    assert code["d_min"][0] == pytest.approx(a["ego_agent_future"][0, 10, 0], rel=1e-6)
    ours = metadata.features(a, ignore_unobserved=True)
    assert ours["d_min"][0] == pytest.approx(30.0 - a["ego_agent_future"][0, 9, 0], rel=1e-6)


def test_order_invariance_and_tiers(scenes):
    perm = np.array([2, 0, 1])
    np.testing.assert_array_equal(
        metadata.metadata_scores(scenes.subset(perm)), metadata.metadata_scores(scenes)[perm]
    )
    np.testing.assert_array_equal(metadata.tiers(np.arange(10)), [1, 1, 2, 2, 2, 3, 3, 3, 4, 4])
    with pytest.raises(ValueError, match="unknown composite"):
        metadata.metadata_scores(scenes, "median")
