"""Scenario pictures (`gf_jax.viz.plot_scenario`): grids of chosen examples framed by group
(score tier or quadrant), and one example of each interaction type."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from experiments.figures.style import PathLike, group_colors, new_figure, save, styled
from gf_jax import viz
from gf_jax.data.schema import ScenarioSet

DEFAULT_INTERACTION_TYPES = (
    "following_lane_with_lead",
    "changing_lane",
    "starting_left_turn",
    "starting_right_turn",
    "waiting_for_pedestrian_to_cross",
    "stopping_with_lead",
)
# Used in this order when a default type above has no scenario.
_SPARE_INTERACTION_TYPES = (
    "behind_long_vehicle",
    "near_multiple_vehicles",
    "stationary_in_traffic",
    "starting_straight_traffic_light_intersection_traversal",
    "traversing_pickup_dropoff",
    "high_lateral_acceleration",
)


def _frame_axes(ax: Axes, color: str, width: float = 4.0) -> None:
    """A thick coloured border around a scenario panel (all four spines, whatever the style)."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def scenario_title(scenarios: ScenarioSet, i: int) -> str:
    """'#index scenario type' wrapped to fit a small panel, the city below."""
    kind = str(scenarios.meta["scenario_type"][i]).replace("_", " ")
    return f"{textwrap.fill(f'#{i} {kind}', 34)}\n{scenarios.meta['city'][i]}"


@styled
def scenario_grid(
    scenarios: ScenarioSet,
    groups: Mapping[str, Sequence[int]],
    out: PathLike,
    *,
    colors: Mapping[str, str] | None = None,
    titles: Mapping[int, str] | None = None,
    ncols: int | None = None,
) -> Path:
    """Scenario pictures, one row per non-empty group (e.g. `tier_groups` or `quadrant_groups`),
    each panel framed in its group's colour, the group's name on the row.

    `colors` overrides the default group colours (tiers and quadrants have their own; other
    names cycle tab10); `titles` replaces the default panel title (index, type, city); `ncols`
    defaults to the largest group (a longer group is cut to `ncols`).
    """
    rows = [(g, list(idx)) for g, idx in groups.items() if len(idx)]
    if not rows:
        raise ValueError("scenario_grid needs at least one non-empty group")
    ncols = ncols or max(len(idx) for _, idx in rows)
    gc = group_colors([g for g, _ in rows], colors)
    panel = 2.6
    fig = new_figure(panel * ncols + 0.4, panel * len(rows) + 0.2)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (group, idx) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(idx):
                ax.set_axis_off()
                continue
            i = int(idx[c])
            title = titles.get(i) if titles and i in titles else scenario_title(scenarios, i)
            viz.plot_scenario(ax, (scenarios, i), title=title)
            ax.title.set_fontsize(7)
            ax.set_xticks([])
            ax.set_yticks([])
            _frame_axes(ax, gc[group])
        axes[r, 0].set_ylabel(group, color=gc[group], fontsize=11, fontweight="bold")
    return save(fig, out, dpi=110)


def _valid_neighbours(scenarios: ScenarioSet) -> np.ndarray:
    return np.any(scenarios.arrays["neighbor_agents_past"][..., :2] != 0, axis=(2, 3)).sum(1)


@styled
def interaction_types(
    scenarios: ScenarioSet, out: PathLike, *, types: Sequence[str] | None = None
) -> Path:
    """One example of each of (up to) six interaction types, by `meta["scenario_type"]`.

    Default types: `DEFAULT_INTERACTION_TYPES`, a missing one replaced by the next present type
    of `_SPARE_INTERACTION_TYPES` and then by any other present type. Explicit `types` that have
    no scenario are skipped. The example shown is the scenario of that type with the most
    neighbours (the busiest scene; first such index on ties).
    """
    present = list(dict.fromkeys(str(t) for t in scenarios.meta["scenario_type"]))
    if types is None:
        wanted = [t for t in DEFAULT_INTERACTION_TYPES if t in present]
        for t in (*_SPARE_INTERACTION_TYPES, *present):
            if len(wanted) >= 6:
                break
            if t in present and t not in wanted:
                wanted.append(t)
    else:
        wanted = [t for t in types if t in present]
    if not wanted:
        raise ValueError(f"no scenario of the requested types; present: {present}")
    kinds = np.asarray(scenarios.meta["scenario_type"]).astype(str)
    busy = _valid_neighbours(scenarios)
    ncols = min(3, len(wanted))
    nrows = -(-len(wanted) // ncols)
    fig = new_figure(3.0 * ncols, 3.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, t in zip(axes, wanted, strict=False):
        members = np.flatnonzero(kinds == t)
        i = int(members[np.argmax(busy[members])])
        viz.plot_scenario(ax, (scenarios, i), title=t.replace("_", " "))
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(wanted) :]:
        ax.set_axis_off()
    fig.suptitle("Interaction types", fontweight="bold")
    return save(fig, out, dpi=110)
