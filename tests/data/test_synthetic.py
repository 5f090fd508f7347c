"""The procedural world: layout, GameFormer conventions, plausibility, labels, noise, determinism."""

import re

import numpy as np
import pytest
from PIL import Image

from gf_jax.data import synthetic
from gf_jax.data.schema import CITY_MAP_NAMES, LAYOUT, NUPLAN_SCENARIO_TYPES, DataError, ScenarioSet

N = 40


@pytest.fixture(scope="module")
def clean() -> ScenarioSet:
    return synthetic.generate(N, seed=7)


@pytest.fixture(scope="module")
def noisy() -> ScenarioSet:
    return synthetic.generate(N, seed=7, noise_fraction=0.25)


def _real(poly):
    return np.any(poly[..., :2] != 0, axis=(-1, -2))


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def test_layout_dtypes_and_metadata(clean):
    clean.validate()
    assert len(clean) == N
    for key, (shape, _) in LAYOUT.items():
        assert clean.arrays[key].shape == (N, *shape)
        assert clean.arrays[key].dtype == np.float32
    m = clean.meta
    assert m["corrupted"].dtype == np.bool_ and not m["corrupted"].any()
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in m["token"])
    assert len(set(m["token"])) == N
    assert all(CITY_MAP_NAMES[c] == name for c, name in zip(m["city"], m["map_name"], strict=True))
    allowed = set(NUPLAN_SCENARIO_TYPES) | {"following_lane_without_lead"}
    assert set(m["scenario_type"]) <= allowed
    assert clean.source == "synthetic(seed=7)"


def test_ego_frame_and_neighbour_conventions(clean):
    a = clean.arrays
    assert np.all(a["ego_agent_past"][:, -1, :3] == 0.0)
    nb = a["neighbor_agents_past"]
    real = np.any(nb != 0, axis=(2, 3))
    assert real.sum(1).min() >= 1
    # Packed, sorted by current distance to the ego, padding all zero (also in the future).
    assert not np.any(real[:, 1:] & ~real[:, :-1])
    d = np.linalg.norm(nb[:, :, -1, :2], axis=-1)
    for i in range(N):
        k = real[i].sum()
        assert np.all(np.diff(d[i, :k]) >= -1e-4)
        assert np.all(nb[i, k:] == 0) and np.all(a["neighbor_agents_future"][i, k:] == 0)
    # One-hot agent type and box sizes in plausible ranges.
    cur = nb[real][:, -1]
    assert np.allclose(cur[:, 8:11].sum(-1), 1.0)
    veh = cur[:, 8] == 1
    assert np.all(
        (cur[veh, 6] > 3.5) & (cur[veh, 6] < 13) & (cur[veh, 7] > 1.5) & (cur[veh, 7] < 2.8)
    )
    ped = cur[:, 9] == 1
    assert np.all((cur[ped, 6] < 1.0) & (cur[ped, 7] < 1.0))
    # Back-filled pasts: no all-zero frame inside a real agent's rows.
    assert not np.any(real[:, :, None] & np.all(nb == 0, axis=3))


def test_map_headings_follow_polylines(clean):
    a = clean.arrays
    for key in ("lanes", "route_lanes", "crosswalks"):
        poly = a[key]
        real = _real(poly)
        assert real.any(), key
        p = poly[real]
        step = np.diff(p[:, :, :2], axis=1)
        want = np.arctan2(step[..., 1], step[..., 0])
        assert np.abs(_wrap(p[:, :-1, 2] - want)).max() < 1e-3, key
        assert np.allclose(p[:, -1, 2], p[:, -2, 2]), key
    # Closed crosswalk rings; every scenario has lanes and a route.
    cw = a["crosswalks"][_real(a["crosswalks"])]
    assert np.allclose(cw[:, 0, :2], cw[:, -1, :2], atol=1e-3)
    assert _real(a["lanes"]).any(1).all() and _real(a["route_lanes"]).any(1).all()
    tl = a["lanes"][_real(a["lanes"])][:, 0, 3:]
    assert np.allclose(tl.sum(-1), 1.0)
    assert tl[:, 0].any() and tl[:, 2].any()  # some green and some red connectors


def test_neighbour_headings_agree_with_motion(clean):
    nb = clean.arrays["neighbor_agents_past"]
    real = np.any(nb != 0, axis=(2, 3))
    p = nb[real]
    step = np.diff(p[:, :, :2], axis=1)
    moving = np.linalg.norm(step, axis=-1) > 0.3  # faster than 3 m/s
    motion = np.arctan2(step[..., 1], step[..., 0])
    err = np.abs(_wrap(motion - p[:, 1:, 2]))[moving]
    assert moving.sum() > 100
    assert np.quantile(err, 0.99) < 0.4 and err.max() < 0.8
    # Velocities are consistent with displacements (ego frame, m/s).
    v_disp = step / 0.1
    v_feat = 0.5 * (p[:, 1:, 3:5] + p[:, :-1, 3:5])
    assert np.quantile(np.linalg.norm(v_disp - v_feat, axis=-1)[moving], 0.95) < 1.0


def _kinematics(future):
    xy = np.concatenate([np.zeros((len(future), 1, 2)), future[:, :, :2]], 1)
    h = np.concatenate([np.zeros((len(future), 1)), future[:, :, 2]], 1)
    v = np.linalg.norm(np.diff(xy, axis=1), axis=-1) / 0.1
    acc = np.diff(v, axis=1) / 0.1
    yaw = np.diff(np.unwrap(h, axis=1), axis=1) / 0.1
    return v, acc, yaw


def test_ego_future_is_kinematically_plausible_unless_corrupted(noisy):
    f = noisy.arrays["ego_agent_future"]
    ok = ~noisy.meta["corrupted"]
    v, acc, yaw = _kinematics(f[ok])
    assert v.max() < 35.0
    assert np.abs(acc).max() < 8.0
    assert np.abs(yaw).max() < 1.2
    # Continuous with the past: the first future step matches the present speed.
    v_now = noisy.arrays["ego_agent_past"][ok, -1, 3]
    assert np.abs(v[:, 0] - v_now).max() < 1.5


def test_noise_exact_count_and_detectable(clean, noisy):
    corrupted = noisy.meta["corrupted"]
    assert corrupted.sum() == round(0.25 * N)
    assert not clean.meta["corrupted"].any()
    delta = np.abs(noisy.arrays["ego_agent_future"] - clean.arrays["ego_agent_future"])[
        ..., :2
    ].max(axis=(1, 2))
    assert np.all(delta[corrupted] > 1.0)
    assert np.all(delta[~corrupted] == 0)
    for k in synthetic.ARRAY_KEYS:
        if k != "ego_agent_future":
            assert np.array_equal(noisy.arrays[k], clean.arrays[k])
    assert synthetic.generate(7, seed=1, noise_fraction=0.5).meta["corrupted"].sum() == round(3.5)


def test_deterministic_per_seed(clean):
    again = synthetic.generate(N, seed=7)
    for k in synthetic.ARRAY_KEYS:
        assert np.array_equal(again.arrays[k], clean.arrays[k])
    assert list(again.meta["scenario_type"]) == list(clean.meta["scenario_type"])
    other = synthetic.generate(8, seed=8)
    assert not np.array_equal(
        other.arrays["ego_agent_future"], clean.arrays["ego_agent_future"][:8]
    )
    # A scenario depends on (seed, index) only: a prefix equals a smaller build.
    prefix = synthetic.generate(8, seed=7, chunk_size=4)
    assert np.array_equal(prefix.arrays["lanes"], clean.arrays["lanes"][:8])


def test_city_mix_is_followed():
    s = synthetic.generate(12, seed=3, city_mix={"boston": 1.0})
    assert set(s.meta["city"]) == {"boston"} and set(s.meta["map_name"]) == {"us-ma-boston"}
    mixed = synthetic.generate(60, seed=3, city_mix=(("pittsburgh", 1.0), ("singapore", 1.0)))
    assert set(mixed.meta["city"]) == {"pittsburgh", "singapore"}


def _oncoming_side(s: ScenarioSet) -> np.ndarray:
    """Per scenario: mean lateral offset of oncoming traffic minus that of same-direction traffic."""
    nb = s.arrays["neighbor_agents_past"][:, :, -1]
    out = []
    for k in range(len(s)):
        veh = (
            (nb[k, :, 8] == 1)
            & (np.hypot(nb[k, :, 3], nb[k, :, 4]) > 2.0)
            & (np.abs(nb[k, :, 0]) < 40)
        )
        same = veh & (np.abs(nb[k, :, 2]) < 0.3)
        onc = veh & (np.abs(nb[k, :, 2]) > np.pi - 0.3)
        if same.any() and onc.any():
            out.append(nb[k, onc, 1].mean() - nb[k, same, 1].mean())
    return np.array(out)


def test_left_hand_city_drives_on_the_left():
    mix = {"high_magnitude_speed": 1.0, "following_lane_with_lead": 1.0}
    right = _oncoming_side(
        synthetic.generate(24, seed=5, city_mix={"las_vegas": 1.0}, scenario_mix=mix)
    )
    left = _oncoming_side(
        synthetic.generate(24, seed=5, city_mix={"singapore": 1.0}, scenario_mix=mix)
    )
    assert len(right) >= 10 and len(left) >= 10
    assert (right > 0).mean() > 0.9  # oncoming traffic on the ego's left
    assert (left < 0).mean() > 0.9  # ... and on its right where traffic keeps left


@pytest.mark.parametrize(
    "scenario_type",
    [
        "high_magnitude_speed",
        "starting_left_turn",
        "waiting_for_pedestrian_to_cross",
        "changing_lane",
    ],
)
def test_scenario_labels_follow_the_mix(scenario_type):
    s = synthetic.generate(16, seed=11, scenario_mix={scenario_type: 1.0})
    assert (s.meta["scenario_type"] == scenario_type).mean() >= 0.75


def test_default_mix_covers_the_types():
    assert {t for t, _ in synthetic.DEFAULT_SCENARIO_MIX} <= set(NUPLAN_SCENARIO_TYPES)
    s = synthetic.generate(64, seed=2, chunk_size=64)
    assert len(set(s.meta["scenario_type"])) >= 10


def test_options_are_validated():
    with pytest.raises(ValueError, match="city_mix"):
        synthetic.generate(2, seed=0, city_mix={"paris": 1.0})
    with pytest.raises(ValueError, match="scenario_mix"):
        synthetic.generate(2, seed=0, scenario_mix={"flying": 1.0})
    with pytest.raises(ValueError, match="noise_fraction"):
        synthetic.generate(2, seed=0, noise_fraction=1.5)
    with pytest.raises(TypeError, match="unknown world option"):
        synthetic.generate(2, seed=0, colour="red")
    assert synthetic.WorldConfig().noise_fraction == 0.0
    assert synthetic.PRESETS["train"].noise_fraction == 0.05
    assert len(synthetic.generate(0, seed=0)) == 0


def test_corrupted_arrays_still_validate(noisy):
    noisy.validate()
    bad = ScenarioSet(dict(noisy.arrays), noisy.meta, noisy.source)
    bad.arrays["lanes"] = bad.arrays["lanes"].astype(np.float64)
    with pytest.raises(DataError):
        bad.validate()


def test_preview_cli_writes_pngs(tmp_path):
    out = tmp_path / "preview"
    assert (
        synthetic.main(
            ["preview", "--n", "2", "--out", str(out), "--seed", "4", "--city", "singapore"]
        )
        == 0
    )
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3 and (out / "contact_sheet.png").exists()
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.size[0] > 200 and im.size[1] > 200
