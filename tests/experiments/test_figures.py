"""Report figures: every function writes a valid PNG/GIF atomically; the example pickers are exact."""

from pathlib import Path

import numpy as np
import pytest
import scenario_factory
from PIL import Image

from curriculum.schedule import ScheduleConfig, weight_matrix
from experiments import figures, stats
from valuation import metadata

TYPES = [
    "following_lane_with_lead",
    "changing_lane",
    "starting_left_turn",
    "behind_long_vehicle",
    "waiting_for_pedestrian_to_cross",
    "changing_lane",
]


@pytest.fixture(scope="module")
def scenarios():
    s = scenario_factory.make_scenarios(6, seed=0)
    s.meta["scenario_type"] = np.array(TYPES)
    s.meta["city"] = np.array(
        ["boston", "boston", "singapore", "pittsburgh", "boston", "las_vegas"]
    )
    return s


def _valid(path: Path, fmt: str) -> Image.Image:
    """Asserts a complete image of the format with no temporary file left beside it."""
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 0
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    with Image.open(path) as im:
        assert im.format == fmt
        im.verify()
    im = Image.open(path)
    if fmt == "GIF":
        assert im.n_frames > 1
    return im


def test_method_colors_are_consistent():
    assert figures.method_color("tracin") == figures.METHOD_COLORS["tracin"]
    assert figures.method_color("Baseline") == figures.METHOD_COLORS["uniform"]
    assert figures.method_color("tracin_select0.2") == figures.METHOD_COLORS["tracin"]
    other = figures.method_color("influence-x")
    assert other in figures.FALLBACK_COLORS and other == figures.method_color("influence-x")


def test_variants_of_a_method_get_their_own_line_style():
    names = ["tracin-select0.2-top", "uniform", "tracin", "tracin-code", "metadata-select0.2-top"]
    styles = figures.line_styles(names)
    assert styles["tracin"] == styles["uniform"] == "-"  # methods themselves are solid
    assert styles["metadata-select0.2-top"] == "-"  # the only metadata curve
    tracin_family = [styles[n] for n in ("tracin", "tracin-code", "tracin-select0.2-top")]
    assert len({str(s) for s in tracin_family}) == 3
    assert set(figures.METHOD_COLORS) == {
        "uniform", "metadata", "tracin", "hybrid", "loss", "lissa", "random",
    }  # fmt: skip


def test_tier_groups_on_ranks():
    g = figures.tier_groups(np.arange(100.0), per_group=3, seed=0)
    assert list(g) == list(figures.TIERS)
    assert set(g["top 5%"]) <= set(range(95, 100)) and len(g["top 5%"]) == 3
    assert set(g["top 25%"]) <= set(range(75, 95))
    assert set(g["bottom 25%"]) <= set(range(5, 25))
    assert set(g["bottom 5%"]) <= set(range(5))
    assert g["median"] == [49, 50, 48]  # closest to 49.5, ties by index
    assert all(v == sorted(v, reverse=True) for k, v in g.items() if k != "median")
    assert g == figures.tier_groups(np.arange(100.0), per_group=3, seed=0)
    everything = figures.tier_groups(np.arange(100.0), per_group=30, seed=1)
    assert everything["top 5%"] == [99, 98, 97, 96, 95]
    assert everything["bottom 5%"] == [4, 3, 2, 1, 0]
    assert len({i for v in everything.values() for i in v}) == sum(map(len, everything.values()))


def test_quadrant_groups_extreme_and_random():
    x = np.arange(8.0)
    y = np.array([0.0, 7, 1, 6, 2, 5, 3, 4])
    extreme = figures.quadrant_groups(x, y, per_group=2, pick="extreme")
    assert extreme == {
        "high/high": [7, 5],
        "high/low": [6, 4],
        "low/high": [1, 3],
        "low/low": [0, 2],
    }
    full = figures.quadrant_groups(x, y, per_group=10, seed=3)
    assert full == {"high/high": [5, 7], "high/low": [4, 6], "low/high": [1, 3], "low/low": [0, 2]}
    one = figures.quadrant_groups(x, y, per_group=1, seed=5)
    assert all(len(v) == 1 and v[0] in full[q] for q, v in one.items())
    assert one == figures.quadrant_groups(x, y, per_group=1, seed=5)
    with pytest.raises(ValueError):
        figures.quadrant_groups(x, y[:-1])


def test_score_figures(tmp_path):
    rng = np.random.default_rng(0)
    tr, md = rng.normal(size=200), rng.random(200)
    out = tmp_path / "new" / "dir"
    _valid(figures.score_distribution(tr, out / "dist.png"), "PNG")
    _valid(figures.score_scatter(tr, md, out / "scatter.png"), "PNG")
    named = {"tracin": tr, "metadata": md, "loss": tr + rng.normal(size=200)}
    names, m = stats.spearman_matrix(named)
    _valid(figures.spearman_heatmap(names, m, out / "rho.png"), "PNG")
    _valid(figures.top_ranked(named, out / "top.png", k=5), "PNG")
    with pytest.raises(ValueError):
        figures.top_ranked(named, out / "bad.png", ref="lissa")
    assert sorted(p.name for p in out.iterdir()) == [
        "dist.png",
        "rho.png",
        "scatter.png",
        "top.png",
    ]


def test_scenario_figures(scenarios, tmp_path):
    score = np.linspace(0.0, 1.0, len(scenarios))
    groups = figures.quadrant_groups(score, score[::-1], per_group=2)
    _valid(figures.scenario_grid(scenarios, groups, tmp_path / "quad.png"), "PNG")
    tiers = figures.tier_groups(score, per_group=1)
    path = figures.scenario_grid(
        scenarios, tiers, tmp_path / "tiers.png", titles={0: "first"}, colors={"median": "k"}
    )
    _valid(path, "PNG")
    _valid(figures.interaction_types(scenarios, tmp_path / "types.png"), "PNG")
    _valid(figures.interaction_types(scenarios, tmp_path / "two.png", types=TYPES[:2]), "PNG")
    with pytest.raises(ValueError):
        figures.interaction_types(scenarios, tmp_path / "none.png", types=["no_such_type"])


def test_dataset_figures(scenarios, tmp_path):
    feats = metadata.features(scenarios)
    score = metadata.composite(feats)
    _valid(
        figures.composition_by_city(
            scenarios.meta["city"], scenarios.meta["scenario_type"], score, tmp_path / "c.png"
        ),
        "PNG",
    )
    feats["d_min"][0] = feats["ttc_min"][1] = np.inf  # no neighbour / never closing
    _valid(figures.difficulty_radar(feats, metadata.tiers(score), tmp_path / "r.png"), "PNG")


def test_unit_features_handle_inf():
    feats = {k: np.array([1.0, 2.0, 3.0]) for k in metadata.FEATURES}
    feats["d_min"] = np.array([np.inf, 1.0, 4.0])
    unit = figures.unit_features(feats)
    assert all(np.isfinite(v).all() and v.min() >= 0 and v.max() <= 1 for v in unit.values())
    np.testing.assert_allclose(unit["d_min"], [0.0, 1.0, 0.25])  # 1/d scaled: inf = no contact
    custom = figures.unit_features({"a": np.array([np.inf, 0.0, 2.0]), "b": np.ones(3)})
    np.testing.assert_allclose(custom["a"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(custom["b"], 0.0)


def test_training_figures(tmp_path):
    score = np.random.default_rng(1).normal(size=40)
    prob = weight_matrix(ScheduleConfig(epochs=8), score)
    _valid(figures.curriculum_weights(prob, score, tmp_path / "w.png", title="paper"), "PNG")
    e = np.arange(8)
    hist = {"uniform": 2.5 - 0.08 * e, "tracin": 2.4 - 0.1 * e, "tracin_select0.2": 2.6 - e[:6] / 9}
    png, gif = figures.training_race(
        hist, tmp_path / "race.png", tmp_path / "race.gif", bands={"tracin": 0.05 + 0 * e}
    )
    _valid(png, "PNG")
    assert _valid(gif, "GIF").n_frames == 8
    assert figures.training_race({"a": [1.0, 0.9]}, tmp_path / "solo.png") == [
        tmp_path / "solo.png"
    ]
    values = {
        m: {"plan ADE": [1.7, 1.8, 1.75], "plan FDE": [4.0, 4.2, 4.1]}
        for m in ("uniform", "tracin")
    }
    values["metadata"] = {"plan ADE": [1.83]}  # a missing metric leaves that row empty
    _valid(figures.dot_whisker(values, tmp_path / "dots.png"), "PNG")


def test_prediction_comparison(scenarios, tmp_path):
    gt = scenarios.arrays["ego_agent_future"]
    plans = {"uniform": gt + 1.5, "tracin": gt[..., :2] * 0.9}
    png, gif = figures.prediction_comparison(
        scenarios, [0, 3], plans, tmp_path / "pred.png", tmp_path / "pred.gif"
    )
    _valid(png, "PNG")
    im = _valid(gif, "GIF")
    assert 2 < im.n_frames <= figures.MAX_GIF_FRAMES
    assert gif.stat().st_size < 2_000_000
    by_position = {"uniform": gt[[0, 3]]}
    assert len(figures.prediction_comparison(scenarios, [0, 3], by_position, png)) == 1
    with pytest.raises(ValueError):
        figures.prediction_comparison(scenarios, [0, 3], {"bad": gt[:5]}, png)
