"""How a curriculum reweights the training data over the epochs: the sampling weight of each
score quartile and of every example, relative to uniform sampling."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.ticker import MaxNLocator

from curriculum.schedule import quartiles
from experiments.figures.style import PathLike, finite_1d, new_figure, save, styled


@styled
def curriculum_weights(
    prob_ExN: np.ndarray, score_N: np.ndarray, out: PathLike, *, title: str = ""
) -> Path:
    """How a curriculum reweights the data (`curriculum.schedule.weight_matrix` output).

    Left: the mean sampling probability of each score quartile relative to uniform (1/N) per
    epoch. Right: every example's relative probability (rows sorted by score, lowest at the
    bottom) per epoch.
    """
    prob = np.asarray(prob_ExN, np.float64)
    s = finite_1d(score_N, "score_N")
    if prob.ndim != 2 or prob.shape[1] != len(s):
        raise ValueError(f"prob_ExN shape {prob.shape} does not match {len(s)} scores")
    n_epochs, n = prob.shape
    rel_ExN = prob * n
    q_N = quartiles(s)
    epochs = np.arange(1, n_epochs + 1)
    fig = new_figure(10.0, 3.8)
    ax_q, ax_h = fig.subplots(1, 2, width_ratios=(1.0, 1.2))
    cmap = mpl.colormaps["plasma"]
    for q in range(3, -1, -1):
        mean_E = (
            rel_ExN[:, q_N == q].mean(axis=1) if np.any(q_N == q) else np.full(n_epochs, np.nan)
        )
        ax_q.plot(epochs, mean_E, marker="o", ms=3, color=cmap(0.15 + 0.22 * q), label=f"Q{q + 1}")
    ax_q.axhline(1.0, color="black", lw=0.8, ls="--", label="uniform")
    ax_q.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_h.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_q.set_xlabel("epoch")
    ax_q.set_ylabel("mean probability × N")
    ax_q.set_title("Sampling weight per score quartile")
    ax_q.grid(alpha=0.3)
    ax_q.legend(title="score quartile", ncols=2)
    order = np.argsort(s, kind="stable")
    im = ax_h.imshow(
        rel_ExN[:, order].T,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        interpolation="nearest",
        extent=(0.5, n_epochs + 0.5, 0, n),
    )
    fig.colorbar(im, ax=ax_h, label="probability × N")
    ax_h.set_xlabel("epoch")
    ax_h.set_ylabel("examples sorted by score (low → high)")
    ax_h.set_title("Per-example sampling weight")
    if title:
        fig.suptitle(title, fontweight="bold")
    return save(fig, out)
