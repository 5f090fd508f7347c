"""The three figures of the theory checks: (a) batch-gradient alignment per checkpoint, (b) the
attenuation ratio against N, (c) the sampling distributions per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from experiments import figures
from experiments.claims.attenuation import PEARSON_INDEPENDENT, SPEARMAN_INDEPENDENT

_BARS = {"marker": "o", "ms": 3, "capsize": 2}  # error-bar style of the figures below


@figures.styled
def alignment_figure(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Left: batch-gradient cosine with g_val per checkpoint, mean ± SD band per sampling and the
    infinite-batch limit dashed. Right: each sampling's mean minus uniform's, ± 2 SE."""
    fig = figures.new_figure(10.0, 3.6)
    ax, ax_d = fig.subplots(1, 2)
    names = list(dict.fromkeys(r["sampling"] for r in rows))
    for i, name in enumerate(names):
        sel = [r for r in rows if r["sampling"] == name]
        x = np.array([r["epoch"] + 1 for r in sel], np.float64)
        mean = np.array([r["mean"] for r in sel])
        sd = np.array([r["sd"] for r in sel])
        color = figures.FALLBACK_COLORS[i - 1] if i else figures.METHOD_COLORS["uniform"]
        ax.plot(x, mean, marker="o", ms=3, color=color, label=name)
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.12)
        ax.plot(x, [r["population"] for r in sel], ls="--", lw=0.9, color=color)
        shift = 0.06 * (i - (len(names) - 1) / 2)  # side by side, not on top of each other
        ax_d.errorbar(
            x + shift,
            [r["diff_vs_uniform"] for r in sel],
            yerr=[2 * r["diff_se"] for r in sel],
            color=color,
            ls="none",
            **_BARS,
        )
    ax_d.axhline(0.0, color="black", lw=0.6)
    for a in (ax, ax_d):
        a.set_xlabel("reference epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    ax.set_ylabel("cos(batch gradient, g_val)")
    ax.set_title("Mean ± SD (dashed: batch → ∞)")
    ax_d.set_ylabel("Δ mean cosine vs uniform")
    ax_d.set_title("Difference to uniform (± 2 SE)")
    ax.legend()
    return figures.save(fig, out)


@figures.styled
def attenuation_figure(sim: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """rho(hybrid, signal) / rho(informative, signal) against N, with the two limits."""
    fig = figures.new_figure(6.0, 3.6)
    ax = fig.subplots()
    for i, noise in enumerate(dict.fromkeys(r["noise"] for r in sim)):
        sel = [r for r in sim if r["noise"] == noise]
        n = np.array([r["n"] for r in sel])
        color = figures.FALLBACK_COLORS[i]
        ax.errorbar(
            n,
            [r["ratio_pearson"] for r in sel],
            yerr=[2 * r["ratio_pearson_se"] for r in sel],
            color=color,
            **_BARS,
            label=f"Pearson on ranks, noise {noise:g}",
        )
        ax.plot(
            n,
            [r["ratio_spearman"] for r in sel],
            marker="s",
            ms=3,
            ls=":",
            color=color,
            label=f"Spearman, noise {noise:g}",
        )
    ax.axhline(PEARSON_INDEPENDENT, color="black", lw=0.8, ls="--", label="1/√2")
    ax.axhline(SPEARMAN_INDEPENDENT, color="grey", lw=0.8, ls="-.", label="7/10")
    ax.set_xscale("log")
    ax.set_xlabel("N (examples)")
    ax.set_ylabel("ρ(hybrid, signal) / ρ(informative, signal)")
    ax.set_title("Rank-averaging with an independent score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figures.save(fig, out)


@figures.styled
def distributions_figure(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """KL from uniform, ESS / N and corrupted mass per epoch of the soft curricula, hard
    selection and uniform as horizontal lines."""
    fig = figures.new_figure(10.0, 3.4)
    axes = fig.subplots(1, 3)
    keys = (
        ("kl_uniform", "KL(p ‖ uniform) (nats)"),
        ("ess_frac", "ESS / N"),
        ("corrupted_mass", "mass on corrupted examples"),
    )
    const = [r for r in rows if r["epoch"] < 0]
    for ax, (key, label) in zip(axes, keys, strict=True):
        for i, name in enumerate(dict.fromkeys(r["curriculum"] for r in rows if r["epoch"] >= 0)):
            sel = [r for r in rows if r["curriculum"] == name]
            x = [r["epoch"] + 1 for r in sel]
            ax.plot(
                x,
                [r[key] for r in sel],
                marker="o",
                ms=3,
                label=name,
                color=figures.FALLBACK_COLORS[i],
            )
        for r, ls in zip(const, ("--", "-."), strict=True):
            ax.axhline(r[key], color="black", lw=0.8, ls=ls, label=r["curriculum"])
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return figures.save(fig, out)
