"""Ego plans of several models drawn on the same scenarios against the ground truth, as a PNG
and as a GIF of the futures rolling out from the observation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.figures.scenarios import scenario_title
from experiments.figures.style import (
    GIF_DPI,
    GT_COLOR,
    MAX_GIF_FRAMES,
    PLAN_COLORS,
    PathLike,
    new_figure,
    render_frame,
    save,
    save_gif,
    styled,
)
from gf_jax import viz
from gf_jax.data.schema import ARRAY_KEYS, DT, ScenarioSet


def _plan_rows(
    plans: Mapping[str, np.ndarray], n_scenarios: int, indices: Sequence[int]
) -> dict[str, list[np.ndarray]]:
    """Each model's [T, 2] plan for each chosen scenario. Plans are indexed by scenario when
    their leading axis is len(scenarios), else by position in `indices`."""
    out = {}
    for name, p in plans.items():
        p = np.asarray(p, np.float64)
        if p.ndim != 3 or p.shape[-1] < 2:
            raise ValueError(f"plan {name!r} must be [N, T, 2 or 3], got {p.shape}")
        if p.shape[0] == n_scenarios:
            out[name] = [p[i, :, :2] for i in indices]
        elif p.shape[0] == len(indices):
            out[name] = [p[k, :, :2] for k in range(len(indices))]
        else:
            raise ValueError(
                f"plan {name!r} has {p.shape[0]} rows; expected {n_scenarios} (scenarios) "
                f"or {len(indices)} (indices)"
            )
    return out


def _masked_xy(xy_Tx2: np.ndarray, observed_T: np.ndarray) -> np.ndarray:
    return np.where(observed_T[:, None], xy_Tx2, np.nan)


def _comparison_panels(
    fig: Figure,
    scenarios: ScenarioSet,
    indices: Sequence[int],
    plans: dict[str, list[np.ndarray]],
) -> list[tuple[Line2D, np.ndarray]]:
    """Draws the static scenes (map, pasts, present boxes) and returns the growing lines with
    their full [T, 2] paths: neighbour futures, the ego ground truth, each plan."""
    axes = fig.subplots(1, len(indices), squeeze=False)[0]
    growing = []
    for k, (ax, i) in enumerate(zip(axes, indices, strict=True)):
        # Futures are drawn here (not by plot_scenario) so the animation can grow them.
        scene = {
            key: scenarios.arrays[key][i]
            for key in ARRAY_KEYS
            if key not in ("ego_agent_future", "neighbor_agents_future")
        }
        gt = np.asarray(scenarios.arrays["ego_agent_future"][i, :, :2], np.float64)
        paths = [gt] + [p[k] for p in plans.values()]
        reach = max(np.nanmax(np.abs(p)) for p in paths)
        viz.plot_scenario(ax, scene, view=float(np.clip(1.15 * reach + 5.0, 15.0, viz.VIEW)))
        ax.set_title(scenario_title(scenarios, int(i)), fontsize=7)
        real = np.any(scenarios.arrays["neighbor_agents_past"][i] != 0, axis=(1, 2))
        for nb in scenarios.arrays["neighbor_agents_future"][i][real]:
            xy = _masked_xy(nb[:, :2].astype(np.float64), np.any(nb != 0, axis=-1))
            (line,) = ax.plot([], [], color=viz.COLORS["nb_future"], lw=1.0, ls="--", zorder=3)
            growing.append((line, xy))
        (line,) = ax.plot([], [], color=GT_COLOR, lw=2.4, zorder=8, label="ground truth")
        growing.append((line, gt))
        for c, (name, p) in enumerate(plans.items()):
            ade = float(np.mean(np.linalg.norm(p[k][: len(gt)] - gt[: len(p[k])], axis=-1)))
            (line,) = ax.plot(
                [],
                [],
                color=PLAN_COLORS[c % len(PLAN_COLORS)],
                lw=1.8,
                ls="--",
                zorder=9,
                label=f"{name} (ADE {ade:.2f} m)",
            )
            growing.append((line, p[k]))
        ax.legend(loc="lower left", fontsize=6, frameon=True, framealpha=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    return growing


def _reveal(growing: Sequence[tuple[Line2D, np.ndarray]], steps: int) -> None:
    for line, xy in growing:
        line.set_data(xy[:steps, 0], xy[:steps, 1])


@styled
def prediction_comparison(
    scenarios: ScenarioSet,
    indices: Sequence[int],
    plans: Mapping[str, np.ndarray],
    out_png: PathLike,
    out_gif: PathLike | None = None,
) -> list[Path]:
    """One panel per chosen scenario: the scene, the ego ground-truth future (green), and each
    model's plan (dashed; the first red) with its ADE on that scenario in the legend.

    `plans[name]` is [N, T, 2 or 3] in the ego frame, indexed like `scenarios` (or like
    `indices` when its leading axis is len(indices) and not len(scenarios)). With `out_gif`, also
    an animation: the observation (pasts and present), then all futures growing every 4th step
    (0.4 s of the 10 Hz future per frame). Returns [png] or [png, gif].
    """
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("prediction_comparison needs at least one scenario index")
    rows = _plan_rows(plans, len(scenarios), indices)
    fig = new_figure(3.2 * len(indices), 3.5)
    growing = _comparison_panels(fig, scenarios, indices, rows)
    horizon = max(len(xy) for _, xy in growing)
    _reveal(growing, horizon)
    fig.suptitle("Ego plans against the ground truth", fontweight="bold")
    paths = [save(fig, out_png)]
    if out_gif is not None:
        fig.set_layout_engine("none")
        fig.set_dpi(GIF_DPI)
        steps = [0, *range(4, horizon, 4), horizon][: MAX_GIF_FRAMES - 1]
        steps[-1] = horizon
        frames, durations = [], []
        for t in steps:
            _reveal(growing, t)
            label = "observation (t = 0 s)" if t == 0 else f"rollout t = +{t * DT:.1f} s"
            fig.suptitle(label, fontweight="bold")
            frames.append(render_frame(fig))
            durations.append(1200 if t == 0 else 2500 if t == horizon else 200)
        paths.append(save_gif(frames, out_gif, durations))
    return paths
