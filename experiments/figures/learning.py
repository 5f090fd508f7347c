"""Learning curves: validation plan and prediction ADE against optimizer steps, one line per
setting, with the non-learned baselines as horizontal lines (a curve above them has not learned).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.figures.style import new_figure, save, styled

BASELINE_STYLES = {
    "route_following": ("route following", "#555555", "--"),
    "constant_velocity": ("constant velocity", "#999999", ":"),
}
PANELS = (
    ("val_plan_ade", "validation plan ADE (m)"),
    ("val_pred_ade", "validation prediction ADE (m)"),
)


@styled
def learning_curves(
    curves: Sequence[Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, float]],
    out: str | Path,
    *,
    title: str = "",
) -> Path:
    """`curves`: dicts with `setting` (its `name`) and `points` (step, val_plan_ade,
    val_pred_ade); `baselines`: {baseline name: {plan_ade, pred_ade, ...}} on the same split."""
    fig = new_figure(11.0, 4.2)
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for c in curves:
            steps = [p["step"] for p in c["points"]]
            values = [p[key] for p in c["points"]]
            ax.plot(steps, values, marker="o", markersize=2.5, label=c["setting"]["name"])
        metric = key.removeprefix("val_")
        for name, (text, color, style) in BASELINE_STYLES.items():
            if name not in baselines:
                continue
            if metric == "pred_ade" and name != "constant_velocity":
                continue  # both baselines predict the neighbours the same way
            text = "neighbours at constant velocity" if metric == "pred_ade" else text
            ax.axhline(baselines[name][metric], color=color, linestyle=style, label=text)
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(label)
        if metric == "plan_ade":
            # The first evaluation (~19 m) would flatten the part where the baselines are beaten.
            ref = [b[metric] for b in baselines.values() if metric in b]
            ax.set_ylim(0, 2.2 * max(ref) if ref else None)
        else:
            ax.set_ylim(0, None)  # the ~16 m plateau and the step it is left are the point here
    axes[0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return save(fig, out)
