"""Figures of the data-valuation scores themselves: one score's distribution, two scores against
each other by quadrant, the Spearman agreement of many, and where each puts one's top examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from experiments import stats
from experiments.figures.groups import quadrant_masks
from experiments.figures.style import (
    QUADRANT_COLORS,
    PathLike,
    finite_1d,
    method_color,
    new_figure,
    save,
    styled,
)
from valuation.scores import percentile_rank


@styled
def score_distribution(score_N: np.ndarray, out: PathLike, *, name: str = "TracIn") -> Path:
    """Histogram of one score with the zero line and the share of negative scores annotated
    (the paper reports the negative share of TracIn; non-finite scores are counted and left out)."""
    s = np.asarray(score_N, np.float64).reshape(-1)
    finite = s[np.isfinite(s)]
    if not len(finite):
        raise ValueError("score_distribution needs at least one finite score")
    counts, edges = np.histogram(finite, bins=min(60, max(10, len(finite) // 20)))
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    ax.bar(
        centres,
        counts,
        width=np.diff(edges),
        color=np.where(centres < 0, "#2166ac", "#b2182b"),
        alpha=0.85,
        edgecolor="white",
        linewidth=0.3,
    )
    ax.axvline(0.0, color="black", lw=1.0, ls="--")
    neg = int((finite < 0).sum())
    note = f"{100 * neg / len(finite):.1f}% negative ({neg:,} of {len(finite):,})"
    if len(finite) < len(s):
        note += f"\n{len(s) - len(finite)} non-finite left out"
    ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(f"{name} score")
    ax.set_ylabel("training examples")
    ax.set_title(f"{name} score distribution")
    return save(fig, out)


@styled
def score_scatter(
    x_N: np.ndarray,
    y_N: np.ndarray,
    out: PathLike,
    *,
    x_name: str = "TracIn",
    y_name: str = "metadata",
) -> Path:
    """Scatter of two scores with quadrant lines at the medians, each quadrant's count, and
    Spearman rho in the title."""
    x, y = finite_1d(x_N, "x_N"), finite_1d(y_N, "y_N")
    if len(x) != len(y):
        raise ValueError(f"x_N and y_N differ in length: {len(x)} and {len(y)}")
    quads = quadrant_masks(x, y)
    fig = new_figure(5.0, 4.2)
    ax = fig.add_subplot()
    for q, mask in quads.items():
        ax.scatter(x[mask], y[mask], s=6, alpha=0.5, color=QUADRANT_COLORS[q], linewidths=0)
    ax.axvline(np.median(x), color="black", lw=0.8, ls="--")
    ax.axhline(np.median(y), color="black", lw=0.8, ls="--")
    corners = {"high/high": (0.98, 0.98), "high/low": (0.98, 0.02)}
    corners |= {"low/high": (0.02, 0.98), "low/low": (0.02, 0.02)}
    for q, (cx, cy) in corners.items():
        ax.text(
            cx,
            cy,
            f"{q}: {int(quads[q].sum()):,}",
            transform=ax.transAxes,
            ha="right" if cx > 0.5 else "left",
            va="top" if cy > 0.5 else "bottom",
            color=QUADRANT_COLORS[q],
            fontsize=8,
            fontweight="bold",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5},
        )
    ax.set_xlabel(f"{x_name} score")
    ax.set_ylabel(f"{y_name} score")
    ax.set_title(f"{x_name} vs {y_name}: Spearman ρ = {stats.spearman(x, y):.3f} (N = {len(x):,})")
    return save(fig, out)


@styled
def spearman_heatmap(names: Sequence[str], matrix: np.ndarray, out: PathLike) -> Path:
    """Annotated heatmap of a Spearman matrix on a diverging colormap fixed to [-1, 1]."""
    m = np.asarray(matrix, np.float64)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(names)} names")
    size = 1.2 + 0.75 * len(names)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                "–" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if abs(m[i, j]) > 0.6 else "black",
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.spines[:].set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Spearman ρ")
    ax.set_title("Rank agreement between scores")
    return save(fig, out)


@styled
def top_ranked(
    named: Mapping[str, np.ndarray], out: PathLike, *, ref: str = "tracin", k: int = 10
) -> Path:
    """The top-k examples by `ref` and the percentile rank (100 = highest) every score gives
    them: a dot plot, one row per example, one colour per score."""
    if ref not in named:
        raise ValueError(f"reference score {ref!r} not among {list(named)}")
    pct = {n: 100.0 * percentile_rank(finite_1d(s, n)) for n, s in named.items()}
    top = np.argsort(-pct[ref], kind="stable")[: min(k, len(pct[ref]))]
    fig = new_figure(6.0, 1.0 + 0.32 * len(top))
    ax = fig.add_subplot()
    rows = np.arange(len(top))
    for n, p in pct.items():
        ax.scatter(
            p[top],
            rows,
            s=45 if n == ref else 30,
            marker="D" if n == ref else "o",
            color=method_color(n),
            label=n,
            zorder=2 if n == ref else 3,
            edgecolors="white",
            linewidths=0.5,
        )
    ax.axvline(50.0, color="black", lw=0.8, ls=":")
    ax.set_yticks(rows, [f"#{int(i)}" for i in top])
    ax.invert_yaxis()  # rank 1 on top
    ax.set_xlim(-2, 102)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("percentile rank under each score")
    ax.set_ylabel(f"top-{len(top)} by {ref}")
    ax.set_title(f"Where the other scores put the top {len(top)} {ref} examples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, out)
