"""Figures of training outcomes: per-epoch validation curves racing to the best value (PNG and
GIF), and the per-seed spread of final metrics as dot-and-whisker panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from experiments import stats
from experiments.figures.style import (
    GIF_DPI,
    MAX_GIF_FRAMES,
    PathLike,
    frame_steps,
    line_styles,
    method_color,
    new_figure,
    render_frame,
    save,
    save_gif,
    styled,
)


def _series(histories: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v, np.float64).reshape(-1) for k, v in histories.items()}
    if not out or not any(len(v) for v in out.values()):
        raise ValueError("training_race needs at least one non-empty history")
    return out


def _draw_race(
    ax: Axes,
    board: Axes,
    hist: Mapping[str, np.ndarray],
    bands: Mapping[str, np.ndarray],
    upto: int,
    limits: tuple[tuple[float, float], tuple[float, float]],
    metric: str,
) -> None:
    """The first `upto` epochs of every history and a leader board of the best value so far
    (lower is better). Clears and redraws both axes, so it serves the PNG and each GIF frame."""
    ax.clear()
    board.clear()
    best = {}
    styles = line_styles(list(hist))
    for name, h in hist.items():
        e = np.arange(1, len(h) + 1)[:upto]
        v = h[:upto]
        color = method_color(name)
        ax.plot(e, v, color=color, ls=styles[name], lw=1.8, marker="o", ms=2.5, label=name)
        if name in bands:
            sd = np.asarray(bands[name], np.float64)[: len(v)]
            m = len(sd)
            ax.fill_between(e[:m], v[:m] - sd, v[:m] + sd, color=color, alpha=0.15, linewidth=0)
        if np.isfinite(v).any():
            k = int(np.nanargmin(v))
            best[name] = (v[k], k + 1)
            ax.plot(k + 1, v[k], marker="*", ms=10, color=color, markeredgecolor="black", mew=0.5)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.set_title(f"Validation during training (epoch {upto})")
    many = len(hist) > 8
    ax.legend(loc="upper right", ncols=3 if many else 2, fontsize=6 if many else None)
    board.set_axis_off()
    board.text(0.0, 1.0, "best so far", fontweight="bold", va="top", transform=board.transAxes)
    row = min(0.08, 0.92 / max(len(best), 1))  # every entry fits on the board
    for r, (name, (v, e)) in enumerate(sorted(best.items(), key=lambda kv: kv[1][0])):
        board.text(
            0.0,
            0.9 - row * r,
            f"{r + 1}. {name}  {v:.3f} (ep {e})",
            color=method_color(name),
            va="top",
            fontsize=8 if not many else 6.5,
            transform=board.transAxes,
        )


@styled
def training_race(
    histories: Mapping[str, Sequence[float] | np.ndarray],
    out_png: PathLike,
    out_gif: PathLike | None = None,
    *,
    metric: str = "val plan ADE (m)",
    bands: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> list[Path]:
    """Per-epoch validation curves of each configuration (e.g. means over seeds; `bands` = SDs
    shaded), best epochs starred and ranked on a leader board (lower is better).

    With `out_gif`, also an animation of the curves growing epoch by epoch (at most 25 frames,
    the last held). Returns [png] or [png, gif].
    """
    hist = _series(histories)
    bands = dict(bands or {})
    n_epochs = max(len(h) for h in hist.values())
    # Fixed limits over all epochs and bands, so the animation's axes do not move.
    reach = list(hist.values())
    for k, sd in bands.items():
        if k in hist:
            h = hist[k]
            sd = np.asarray(sd, np.float64)[: len(h)]
            reach += [h[: len(sd)] - sd, h[: len(sd)] + sd]
    finite = np.concatenate(reach)
    finite = finite[np.isfinite(finite)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
    limits = ((0.5, n_epochs + 0.5), (lo - pad, hi + 3 * pad))  # headroom for the legend
    fig = new_figure(8.0, 4.0)
    ax, board = fig.subplots(1, 2, width_ratios=(3.0, 1.1))
    _draw_race(ax, board, hist, bands, n_epochs, limits, metric)
    paths = [save(fig, out_png)]
    if out_gif is not None:
        fig.set_layout_engine("none")  # freeze the final layout so frames do not jump
        fig.set_dpi(GIF_DPI)
        steps = frame_steps(n_epochs, MAX_GIF_FRAMES)
        frames = []
        for upto in steps:
            _draw_race(ax, board, hist, bands, upto, limits, metric)
            frames.append(render_frame(fig))
        paths.append(save_gif(frames, out_gif, [350] * (len(frames) - 1) + [2500]))
    return paths


@styled
def dot_whisker(values: Mapping[str, Mapping[str, Sequence[float]]], out: PathLike) -> Path:
    """One panel per metric: methods on the y axis, dot = mean, whisker = SD (ddof=0, as the
    paper), each seed a faint point. `values[method][metric]` = per-seed values."""
    methods = list(values)
    metrics_ = list(dict.fromkeys(m for per in values.values() for m in per))
    if not methods or not metrics_:
        raise ValueError("dot_whisker needs at least one method and one metric")
    fig = new_figure(1.0 + 3.0 * len(metrics_), 0.9 + 0.4 * len(methods))
    axes = fig.subplots(1, len(metrics_), sharey=True, squeeze=False)[0]
    rows = np.arange(len(methods))
    for ax, metric in zip(axes, metrics_, strict=True):
        for r, method in enumerate(methods):
            seeds = np.asarray(values[method].get(metric, []), np.float64)
            if not len(seeds):
                continue
            s = stats.summarize(seeds)
            color = method_color(method)
            jitter = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(1)
            ax.scatter(seeds, r + jitter, s=12, color=color, alpha=0.35, linewidths=0)
            ax.errorbar(s["mean"], r, xerr=s["sd"], fmt="o", color=color, ms=6, capsize=3, lw=1.5)
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(metric)
    axes[0].set_yticks(rows, methods)
    axes[0].invert_yaxis()
    fig.suptitle("Mean ± SD over seeds (faint dots: individual seeds)", fontweight="bold")
    return save(fig, out)
