"""Figures of the dataset's make-up: scenarios per city and type with the difficulty per city,
and the interaction features of each difficulty tier as a radar chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np

from experiments.figures.style import PathLike, finite_1d, new_figure, save, styled
from valuation import metadata


@styled
def composition_by_city(
    city_N: np.ndarray, type_N: np.ndarray, difficulty_N: np.ndarray, out: PathLike
) -> Path:
    """Left: scenario counts per city stacked by scenario type. Right: the distribution of the
    difficulty (metadata) score per city as box plots (whiskers 1.5 IQR) with the points."""
    city, kind = np.asarray(city_N).astype(str), np.asarray(type_N).astype(str)
    diff = finite_1d(difficulty_N, "difficulty_N")
    if not len(city) == len(kind) == len(diff):
        raise ValueError(f"lengths differ: {len(city)}, {len(kind)}, {len(diff)}")
    cities = sorted(set(city), key=lambda c: (-np.sum(city == c), c))
    kinds = sorted(set(kind), key=lambda t: (-np.sum(kind == t), t))
    cmap = mpl.colormaps["tab20"]
    fig = new_figure(11.0, 0.9 + 0.2 * max(len(kinds), 3 * len(cities)))
    ax_n, ax_d = fig.subplots(1, 2, width_ratios=(1.3, 1.0))
    left = np.zeros(len(cities))
    for j, t in enumerate(kinds):
        n = np.array([np.sum((city == c) & (kind == t)) for c in cities])
        ax_n.barh(cities, n, left=left, color=cmap(j % 20), label=t.replace("_", " "), height=0.7)
        left += n
    ax_n.invert_yaxis()
    ax_n.set_xlabel("scenarios")
    ax_n.set_title("Scenarios per city and type")
    ax_n.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    data = [diff[city == c] for c in cities]
    ax_d.boxplot(data, orientation="horizontal", showfliers=False, widths=0.6)
    rng = np.random.default_rng(0)  # jitter only; fixed so the picture is reproducible
    for k, d in enumerate(data):
        ax_d.scatter(d, k + 1 + rng.uniform(-0.2, 0.2, len(d)), s=3, alpha=0.3, color="#1f77b4")
    ax_d.set_yticks(range(1, len(cities) + 1), cities)
    ax_d.invert_yaxis()
    ax_d.set_xlabel("metadata difficulty score")
    ax_d.set_title("Difficulty per city")
    return save(fig, out)


def unit_features(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature mapped to [0, 1] over the dataset, larger = more interaction.

    With the six metadata features the metadata normalisers are applied first, which turns the
    possibly infinite d_min and ttc_min into 1/max(x, 0.5) (inf -> 0, no neighbour = no
    interaction). Any other feature has +-inf clipped to its finite range. Then min-max scaling;
    a constant feature maps to 0.
    """
    feats = {k: np.asarray(v, np.float64) for k, v in features.items()}
    if set(metadata.FEATURES) <= set(feats):
        feats |= metadata.normalised_terms(feats)
    out = {}
    for k, v in feats.items():
        finite = v[np.isfinite(v)]
        lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 0.0)
        v = np.clip(np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo), lo, hi)
        out[k] = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return out


_TIER_LABELS = {4: "tier 4 (top 20%)", 3: "tier 3", 2: "tier 2", 1: "tier 1 (bottom 20%)"}
_TIER_COLORS = {4: "#b2182b", 3: "#ef8a62", 2: "#67a9cf", 1: "#2166ac"}


@styled
def difficulty_radar(features: Mapping[str, np.ndarray], tier_N: np.ndarray, out: PathLike) -> Path:
    """Radar chart of the mean unit-scaled feature (see `unit_features`) per difficulty tier
    (`valuation.metadata.tiers`: 1 bottom 20% .. 4 top 20%), one polygon per tier present."""
    unit = unit_features(features)
    tier = np.asarray(tier_N).astype(int)
    names = list(unit)
    if len(names) < 3:
        raise ValueError("a radar chart needs at least three features")
    if any(len(v) != len(tier) for v in unit.values()):
        raise ValueError("every feature needs one value per tier entry")
    angles = np.linspace(0.0, 2 * np.pi, len(names), endpoint=False)
    closed = np.r_[angles, angles[:1]]
    fig = new_figure(5.6, 5.6)
    ax = fig.add_subplot(projection="polar")
    for t in sorted(set(tier.tolist())):
        r = np.array([unit[n][tier == t].mean() for n in names])
        color = _TIER_COLORS.get(t, "#7f7f7f")
        label = _TIER_LABELS.get(t, f"tier {t}") + f", n={int(np.sum(tier == t))}"
        ax.plot(closed, np.r_[r, r[:1]], color=color, lw=1.8, label=label)
        ax.fill(closed, np.r_[r, r[:1]], color=color, alpha=0.12)
    inverted = {"d_min": "1/d_min", "ttc_min": "1/ttc_min"}
    ax.set_xticks(angles, [inverted.get(n, n) for n in names])
    ax.tick_params(axis="x", pad=10)
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([0.25, 0.5, 0.75], ["0.25", "0.5", "0.75"], fontsize=7)
    fig.suptitle("Interaction features by difficulty tier (scaled to [0, 1])", fontweight="bold")
    fig.legend(loc="outside lower center", ncols=2)
    return save(fig, out)
