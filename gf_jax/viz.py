"""Scenario pictures in the paper's style: map in light grey, ego past blue and future red,
neighbour pasts grey and futures orange dashed, agents as oriented boxes at the present, in the
ego frame (+-60 m). Optional overlays: a planned ego trajectory and predicted neighbour futures.

Uses matplotlib's Agg canvas directly (no pyplot state, no screen).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from gf_jax.data.schema import ARRAY_KEYS, ScenarioSet

VIEW = 60.0
EGO_LENGTH, EGO_WIDTH, EGO_REAR_TO_CENTER = 5.176, 2.297, 5.176 / 2 - 1.127
COLORS = {
    "lane": "#c9c9c9",
    "route": "#9fb7d9",
    "crosswalk": "#dcdcdc",
    "green": "#4caf50",
    "yellow": "#e6b800",
    "red": "#e53935",
    "ego_past": "#1f5fbf",
    "ego_future": "#d62728",
    "ego_box": "#1f5fbf",
    "nb_past": "#8c8c8c",
    "nb_future": "#ff8c1a",
    "vehicle": "#5a5a5a",
    "pedestrian": "#7b3fa0",
    "bicycle": "#1a9e77",
    "plan": "#2ca02c",
    "prediction": "#9467bd",
}


def _scenario(data: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of one scenario (no N axis) and its metadata, from a dict or (ScenarioSet, index)."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], ScenarioSet):
        s, i = data
        return {k: np.asarray(s.arrays[k][i]) for k in ARRAY_KEYS}, {
            k: np.asarray(v)[i] for k, v in s.meta.items()
        }
    if isinstance(data, Mapping):
        return {k: np.asarray(data[k]) for k in ARRAY_KEYS if k in data}, {}
    raise TypeError("plot_scenario expects a dict of one scenario's arrays or (ScenarioSet, index)")


def _box(x, y, h, length, width):
    c, s = np.cos(h), np.sin(h)
    corners = np.array([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [-0.5, 0.5]]) * [length, width]
    return np.stack(
        [x + c * corners[:, 0] - s * corners[:, 1], y + s * corners[:, 0] + c * corners[:, 1]], -1
    )


def _segments(poly_LxPxD: np.ndarray) -> list[np.ndarray]:
    return [p[:, :2] for p in poly_LxPxD if np.any(p[:, :2] != 0)]


def plot_scenario(
    ax,
    scenario: Any,
    *,
    plan: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    title: str | None = None,
    view: float = VIEW,
    signals: bool = False,
):
    """Draws one scenario on a matplotlib Axes (see module docstring).

    Args:
      ax: the Axes.
      scenario: dict of one scenario's layout arrays, or (ScenarioSet, index).
      plan: optional planned ego trajectory [T, >=2] (ego frame).
      prediction: optional predicted neighbour futures [A, T, >=2] or [A, M, T, >=2].
      title: optional title (defaults to scenario type and city when metadata is available).
      view: half-width of the ego-centred view (m).
      signals: colour lanes by their traffic-light state (green / yellow / red) over the grey.
    """
    a, meta = _scenario(scenario)
    ax.set_facecolor("white")
    _draw_map(ax, a, signals)
    _draw_neighbours(ax, a.get("neighbor_agents_past"), a.get("neighbor_agents_future"))
    _draw_ego(ax, a.get("ego_agent_past"), a.get("ego_agent_future"))
    _draw_outputs(ax, plan, prediction)
    ax.set_xlim(-view, view)
    ax.set_ylim(-view, view)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
    if title is None and meta:
        title = f"{meta.get('scenario_type', '')} | {meta.get('city', '')}"
        if bool(meta.get("corrupted", False)):
            title += " | corrupted"
    if title:
        ax.set_title(title, fontsize=7)
    return ax


def _draw_map(ax, a: dict[str, np.ndarray], signals: bool) -> None:
    """Lanes (coloured by their light when `signals`), the route lanes and the crosswalks."""
    lanes = a.get("lanes")
    if lanes is not None:
        ax.add_collection(
            LineCollection(_segments(lanes), colors=COLORS["lane"], linewidths=0.8, zorder=1)
        )
        tl = lanes[:, 0, 3:7] if signals and lanes.shape[-1] >= 7 else np.zeros((len(lanes), 4))
        for k, name in ((0, "green"), (1, "yellow"), (2, "red")):
            sel = lanes[(tl[:, k] > 0.5) & np.any(lanes[:, :, :2] != 0, axis=(1, 2))]
            if len(sel):
                ax.add_collection(
                    LineCollection(
                        _segments(sel), colors=COLORS[name], linewidths=1.2, alpha=0.8, zorder=2
                    )
                )
    route = a.get("route_lanes")
    if route is not None:
        ax.add_collection(
            LineCollection(
                _segments(route), colors=COLORS["route"], linewidths=2.2, alpha=0.7, zorder=1.5
            )
        )
    cw = a.get("crosswalks")
    polys = _segments(cw) if cw is not None else []
    if polys:
        ax.add_collection(
            PolyCollection(
                polys,
                facecolors=COLORS["crosswalk"],
                edgecolors="#b0b0b0",
                linewidths=0.5,
                zorder=0.5,
            )
        )


def _draw_neighbours(ax, nb_AxTxD: np.ndarray | None, nf_AxTxD: np.ndarray | None) -> None:
    """Each observed neighbour's past, its true future (dashed) and its box at the present."""
    if nb_AxTxD is None:
        return
    boxes, box_colors = [], []
    for k in range(nb_AxTxD.shape[0]):
        if not np.any(nb_AxTxD[k] != 0):
            continue
        cur = nb_AxTxD[k, -1]
        ax.plot(nb_AxTxD[k, :, 0], nb_AxTxD[k, :, 1], color=COLORS["nb_past"], lw=1.0, zorder=3)
        if nf_AxTxD is not None:
            f = nf_AxTxD[k]
            seen = np.any(f[:, :2] != 0, axis=-1)
            if seen.any():
                fx = np.where(seen, f[:, 0], np.nan)
                fy = np.where(seen, f[:, 1], np.nan)
                ax.plot(fx, fy, color=COLORS["nb_future"], lw=1.0, ls="--", zorder=3)
        kind = "pedestrian" if cur[9] > 0.5 else ("bicycle" if cur[10] > 0.5 else "vehicle")
        boxes.append(_box(cur[0], cur[1], cur[2], max(cur[6], 0.3), max(cur[7], 0.3)))
        box_colors.append(COLORS[kind])
    if boxes:
        ax.add_collection(
            PolyCollection(
                boxes,
                facecolors=box_colors,
                edgecolors="black",
                linewidths=0.4,
                alpha=0.85,
                zorder=4,
            )
        )


def _draw_ego(ax, ep_TxD: np.ndarray | None, ef_TxD: np.ndarray | None) -> None:
    """The ego's past, its true future from the origin, and its box."""
    if ep_TxD is not None:
        ax.plot(ep_TxD[:, 0], ep_TxD[:, 1], color=COLORS["ego_past"], lw=2.0, zorder=5)
    if ef_TxD is not None:
        fx, fy = np.r_[0.0, ef_TxD[:, 0]], np.r_[0.0, ef_TxD[:, 1]]
        ax.plot(fx, fy, color=COLORS["ego_future"], lw=2.0, zorder=5)
    ego = _box(EGO_REAR_TO_CENTER, 0.0, 0.0, EGO_LENGTH, EGO_WIDTH)
    ax.add_collection(
        PolyCollection(
            [ego], facecolors=COLORS["ego_box"], edgecolors="black", linewidths=0.6, zorder=6
        )
    )


def _draw_outputs(ax, plan: np.ndarray | None, prediction: np.ndarray | None) -> None:
    """A model's plan and every mode of its neighbour predictions."""
    if plan is not None:
        p = np.asarray(plan)
        ax.plot(p[:, 0], p[:, 1], color=COLORS["plan"], lw=1.8, zorder=7, label="plan")
    if prediction is not None:
        pr = np.asarray(prediction)
        if pr.ndim == 3:
            pr = pr[:, None]
        for agent in pr:
            for mode in agent:
                ax.plot(
                    mode[:, 0], mode[:, 1], color=COLORS["prediction"], lw=0.8, alpha=0.7, zorder=7
                )


def save_scenarios(
    scenarios: ScenarioSet,
    indices: Sequence[int],
    path: str | os.PathLike,
    *,
    cols: int | None = None,
    panel: float = 4.0,
    dpi: int = 110,
    signals: bool = False,
) -> str:
    """A grid of scenario pictures written to a PNG; returns the path (`signals` as in
    `plot_scenario`)."""
    idx = list(indices)
    cols = cols or min(len(idx), 3) or 1
    rows = max(1, -(-len(idx) // cols))
    fig = Figure(figsize=(panel * cols, panel * rows))
    FigureCanvasAgg(fig)
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        plot_scenario(ax, (scenarios, int(i)), signals=signals)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return str(path)
