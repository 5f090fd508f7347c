"""The removal-curve figure: Δ plan ADE against the share of the training set removed.

One panel per split (val, test). Each removal scorer has one colour; removing its top examples
is a solid line, its bottom a dashed one; random removals are grey, their mean with the range of
the draws shaded. Every curve starts at (0, 0), the full-data model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from experiments.attribution.subsets import RANDOM_DRAW as RANDOM
from experiments.figures import style

SPLITS = (("delta_val", "validation"), ("delta_test", "test"))


def _curve(rows: list[dict], key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(x %, mean, min, max) over fractions, starting at the full-data model (0, 0)."""
    xs, mean, low, high = [0.0], [0.0], [0.0], [0.0]
    for f in sorted({r["fraction"] for r in rows}):
        v = [r[key] for r in rows if math.isclose(r["fraction"], f) and key in r]
        v = [x for x in v if math.isfinite(x)]
        if v:
            xs.append(100 * f)
            mean.append(float(np.mean(v)))
            low.append(min(v))
            high.append(max(v))
    return xs, mean, low, high


@style.styled
def removal_curves(summary: dict[str, Any], out: str | Path) -> Path:
    """Draws the curves of `summary["removal"]` and saves them to `out` (PNG)."""
    rows = summary["removal"]
    scorers = sorted({r["scorer"] for r in rows if r["scorer"] != RANDOM})
    fig = style.new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, title) in zip(axes, SPLITS, strict=True):
        ax.axhline(0.0, color="#bbbbbb", lw=0.8)
        random_rows = [r for r in rows if r["scorer"] == RANDOM]
        if random_rows:
            xs, mean, low, high = _curve(random_rows, key)
            ax.fill_between(xs, low, high, color="#7f7f7f", alpha=0.2, lw=0)
            ax.plot(xs, mean, color="#7f7f7f", marker="o", ms=3, label="random")
        for scorer in scorers:
            color = style.method_color(scorer)
            for side, ls in (("top", "-"), ("bottom", "--")):
                chosen = [r for r in rows if r["scorer"] == scorer and r["side"] == side]
                if chosen:
                    xs, mean, _, _ = _curve(chosen, key)
                    ax.plot(
                        xs, mean, color=color, ls=ls, marker="o", ms=3, label=f"{scorer} {side}"
                    )
        ax.set_title(f"{title} plan ADE")
        ax.set_xlabel("training set removed (%)")
    axes[0].set_ylabel("Δ plan ADE vs full data (m)")
    if rows:
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no removal finished yet", ha="center", transform=ax.transAxes)
    return style.save(fig, out)
