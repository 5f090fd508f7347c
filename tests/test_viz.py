"""Scenario pictures: drawing works headless and puts the expected things on the axes."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from PIL import Image

from gf_jax import viz
from gf_jax.data import synthetic


@pytest.fixture(scope="module")
def scenarios():
    return synthetic.generate(3, seed=21)


def _axes():
    fig = Figure(figsize=(4, 4))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def test_plot_scenario_draws_map_agents_and_trajectories(scenarios):
    fig, ax = _axes()
    viz.plot_scenario(ax, (scenarios, 0))
    fig.canvas.draw()
    assert ax.get_xlim() == (-viz.VIEW, viz.VIEW) and ax.get_ylim() == (-viz.VIEW, viz.VIEW)
    assert ax.get_aspect() == 1.0
    colors = {line.get_color() for line in ax.lines}
    assert viz.COLORS["ego_past"] in colors and viz.COLORS["ego_future"] in colors
    assert viz.COLORS["nb_past"] in colors
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # lanes
    boxes = [c for c in ax.collections if isinstance(c, PolyCollection)]
    real = np.any(scenarios.arrays["neighbor_agents_past"][0] != 0, axis=(1, 2)).sum()
    assert sum(len(c.get_paths()) for c in boxes) >= real + 1  # neighbours and the ego
    assert scenarios.meta["scenario_type"][0] in ax.get_title()


def test_plot_scenario_accepts_a_dict_and_overlays(scenarios):
    fig, ax = _axes()
    one = {k: v[1] for k, v in scenarios.arrays.items()}
    n_lines = len(ax.lines)
    plan = np.cumsum(np.ones((80, 2)), axis=0)
    prediction = np.zeros((3, 2, 80, 2)) + np.arange(80)[None, None, :, None]
    viz.plot_scenario(ax, one, plan=plan, prediction=prediction, title="custom")
    fig.canvas.draw()
    colors = [line.get_color() for line in ax.lines]
    assert colors.count(viz.COLORS["plan"]) == 1
    assert colors.count(viz.COLORS["prediction"]) == 6
    assert len(ax.lines) > n_lines and ax.get_title() == "custom"


def test_signal_colours_are_optional(scenarios):
    from matplotlib.colors import to_rgba

    def colours(signals):
        _, ax = _axes()
        viz.plot_scenario(ax, (scenarios, 0), signals=signals)
        return {
            tuple(np.round(c, 3))
            for coll in ax.collections
            if isinstance(coll, LineCollection)
            for c in coll.get_colors()
        }

    lit = {tuple(np.round(to_rgba(viz.COLORS[k]), 3)) for k in ("green", "yellow", "red")}
    assert not colours(False) & lit
    has_tl = np.any(scenarios.arrays["lanes"][0, :, 0, 3:6] > 0)
    assert bool(colours(True) & lit) == bool(has_tl)


def test_plot_scenario_rejects_other_input():
    _, ax = _axes()
    with pytest.raises(TypeError):
        viz.plot_scenario(ax, [1, 2, 3])


def test_save_scenarios_writes_a_grid(scenarios, tmp_path):
    path = tmp_path / "grid.png"
    assert viz.save_scenarios(scenarios, [0, 1, 2], path) == str(path)
    with Image.open(path) as im:
        w, h = im.size
    assert w > 2 * h  # three panels side by side
