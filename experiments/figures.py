"""Figures (PNG) and animations (GIF) for the report, from plain numpy arrays and dicts.

Every public function renders one figure, writes it atomically (`gf_jax.atomic.write_bytes`: a
temporary sibling renamed into place, parent folders created), and returns the Path(s) written.
Figures are `matplotlib.figure.Figure` objects on the Agg canvas, never registered with pyplot, so
there is no global figure state to leak or close and no display is needed: the module works the
same under any MPLBACKEND. GIF frames are rendered on that canvas and assembled with Pillow; they
are kept small (80 dpi, at most 25 frames) so the report stays light.

Colours are consistent across figures: `METHOD_COLORS` for the training methods (`method_color`
for names outside it), `TIER_COLORS` for score tiers and `QUADRANT_COLORS` for the quadrants of two
scores. Scenario pictures come from `gf_jax.viz.plot_scenario`.
"""

from __future__ import annotations

import functools
import os
import textwrap
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image

from curriculum.schedule import quartiles
from experiments import stats
from gf_jax import atomic, viz
from gf_jax.data.schema import ARRAY_KEYS, DT, ScenarioSet
from valuation import metadata
from valuation.scores import percentile_rank

PathLike = str | os.PathLike

METHOD_COLORS: dict[str, str] = {
    "uniform": "#7f7f7f",
    "metadata": "#1f77b4",
    "tracin": "#d62728",
    "hybrid": "#9467bd",
    "loss": "#ff7f0e",
    "lissa": "#2ca02c",
    "random": "#8c564b",
}
# The paper calls uniform training "Baseline".
_ALIASES = {"baseline": "uniform"}
FALLBACK_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#393b79", "#637939", "#843c39")

TIERS = ("top 5%", "top 25%", "median", "bottom 25%", "bottom 5%")
TIER_COLORS = dict(zip(TIERS, ("#b2182b", "#ef8a62", "#7f7f7f", "#67a9cf", "#2166ac"), strict=True))
QUADRANTS = ("high/high", "high/low", "low/high", "low/low")
QUADRANT_COLORS = dict(zip(QUADRANTS, ("#b2182b", "#e08214", "#542788", "#2166ac"), strict=True))
# First plan red, as the paper's comparison figures; the rest avoid the scene's blue and orange.
PLAN_COLORS = ("#d62728", "#7b1fa2", "#00838f", "#5d4037")
GT_COLOR = "#2e7d32"

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

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "savefig.facecolor": "white",
}
PNG_DPI, GIF_DPI, MAX_GIF_FRAMES = 130, 80, 25


def method_color(name: str) -> str:
    """The colour of a method: exact name, else the longest known prefix ("tracin_select0.2" ->
    tracin), else a fallback picked by a stable hash of the name."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    prefixes = [m for m in METHOD_COLORS if key.startswith(m)]
    if prefixes:
        return METHOD_COLORS[max(prefixes, key=len)]
    return FALLBACK_COLORS[zlib.crc32(key.encode()) % len(FALLBACK_COLORS)]


VARIANT_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)))


def line_styles(names: Sequence[str]) -> dict[str, Any]:
    """A line style per name: solid for the first of each colour (a method itself), then dashed,
    dotted, ... for its variants, so curves that share a method's colour stay apart."""
    seen: dict[str, int] = {}
    out: dict[str, Any] = {}
    for name in sorted(names, key=lambda n: (n.lower() not in METHOD_COLORS, n)):
        color = method_color(name)
        k = seen[color] = seen.get(color, -1) + 1
        out[name] = "-" if k == 0 else VARIANT_STYLES[(k - 1) % len(VARIANT_STYLES)]
    return out


# ----------------------------------------------------------------------------- plumbing


def _styled(fn: Callable) -> Callable:
    """Runs a figure function under the house style without touching the global rcParams."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: PathLike, dpi: int = PNG_DPI) -> Path:
    fmt = Path(out).suffix.lstrip(".").lower() or "png"
    # A tight box keeps outside legends and polar labels that the layout engine leaves out.
    return atomic.write_bytes(
        out, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    )


def _frame(fig: Figure) -> Image.Image:
    fig.canvas.draw()
    return Image.fromarray(np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))


def _save_gif(frames: Sequence[Image.Image], out: PathLike, durations_ms: Sequence[int]) -> Path:
    """Frames quantised to 64 colours each (the pictures are flat colours), looping forever."""
    pal = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]

    def write(f):
        pal[0].save(
            f,
            format="GIF",
            save_all=True,
            append_images=pal[1:],
            duration=list(durations_ms),
            loop=0,
            disposal=1,
        )

    return atomic.write_bytes(out, write)


def _frame_steps(total: int, max_frames: int) -> list[int]:
    """Up to `max_frames` increasing counts in 1..total, always ending at `total`."""
    if total <= max_frames:
        return list(range(1, total + 1))
    return sorted(set(np.rint(np.linspace(1, total, max_frames)).astype(int).tolist()))


def _finite_1d(x: Any, name: str) -> np.ndarray:
    v = np.asarray(x, np.float64).reshape(-1)
    if not len(v):
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} has non-finite values")
    return v


def _group_colors(groups: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    known = {**TIER_COLORS, **QUADRANT_COLORS, **(colors or {})}
    cycle = mpl.colormaps["tab10"].colors
    return {g: known.get(g, mcolors.to_hex(cycle[i % len(cycle)])) for i, g in enumerate(groups)}


# ----------------------------------------------------------------------------- score figures


@_styled
def score_distribution(score_N: np.ndarray, out: PathLike, *, name: str = "TracIn") -> Path:
    """Histogram of one score with the zero line and the share of negative scores annotated
    (the paper reports the negative share of TracIn; non-finite scores are counted and left out)."""
    s = np.asarray(score_N, np.float64).reshape(-1)
    finite = s[np.isfinite(s)]
    if not len(finite):
        raise ValueError("score_distribution needs at least one finite score")
    counts, edges = np.histogram(finite, bins=min(60, max(10, len(finite) // 20)))
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = _figure(5.5, 3.4)
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
    return _save(fig, out)


def _high_low(x_N: np.ndarray, y_N: np.ndarray) -> dict[str, np.ndarray]:
    """Quadrant masks; "high" = strictly above the median, so median ties count as low."""
    hx, hy = x_N > np.median(x_N), y_N > np.median(y_N)
    return {
        "high/high": hx & hy,
        "high/low": hx & ~hy,
        "low/high": ~hx & hy,
        "low/low": ~hx & ~hy,
    }


@_styled
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
    x, y = _finite_1d(x_N, "x_N"), _finite_1d(y_N, "y_N")
    if len(x) != len(y):
        raise ValueError(f"x_N and y_N differ in length: {len(x)} and {len(y)}")
    quads = _high_low(x, y)
    fig = _figure(5.0, 4.2)
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
    return _save(fig, out)


@_styled
def spearman_heatmap(names: Sequence[str], matrix: np.ndarray, out: PathLike) -> Path:
    """Annotated heatmap of a Spearman matrix on a diverging colormap fixed to [-1, 1]."""
    m = np.asarray(matrix, np.float64)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(names)} names")
    size = 1.2 + 0.75 * len(names)
    fig = _figure(size + 1.0, size)
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
    return _save(fig, out)


@_styled
def top_ranked(
    named: Mapping[str, np.ndarray], out: PathLike, *, ref: str = "tracin", k: int = 10
) -> Path:
    """The top-k examples by `ref` and the percentile rank (100 = highest) every score gives
    them: a dot plot, one row per example, one colour per score."""
    if ref not in named:
        raise ValueError(f"reference score {ref!r} not among {list(named)}")
    pct = {n: 100.0 * percentile_rank(_finite_1d(s, n)) for n, s in named.items()}
    top = np.argsort(-pct[ref], kind="stable")[: min(k, len(pct[ref]))]
    fig = _figure(6.0, 1.0 + 0.32 * len(top))
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
    return _save(fig, out)


# ----------------------------------------------------------------------------- example groups


def _pick(members: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return (
        rng.choice(members, size=min(n, len(members)), replace=False) if len(members) else members
    )


def tier_groups(score_N: np.ndarray, per_group: int = 3, seed: int = 0) -> dict[str, list[int]]:
    """Example indices in five score tiers (`TIERS`), for `scenario_grid`.

    Bands are disjoint: top 5% = at or above the 95th percentile, top 25% = from the 75th up to
    (not including) the 95th, bottom 25% = above the 5th up to the 25th, bottom 5% = at or below
    the 5th. Within a band `per_group` examples are drawn at random (seeded) and listed by
    decreasing score. "median" takes the examples closest to the 50th percentile that no band
    has taken (deterministic). A band with fewer members gives fewer (possibly no) indices.
    """
    s = _finite_1d(score_N, "score_N")
    q05, q25, q50, q75, q95 = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    bands = {
        "top 5%": s >= q95,
        "top 25%": (s >= q75) & (s < q95),
        "bottom 25%": (s > q05) & (s <= q25),
        "bottom 5%": s <= q05,
    }
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {}
    for name, mask in bands.items():
        chosen = _pick(np.flatnonzero(mask), per_group, rng)
        out[name] = [int(i) for i in chosen[np.argsort(-s[chosen], kind="stable")]]
    taken = {i for g in out.values() for i in g}
    near = [int(i) for i in np.argsort(np.abs(s - q50), kind="stable") if int(i) not in taken]
    out["median"] = near[:per_group]
    return {t: out[t] for t in TIERS}


def quadrant_groups(
    x_N: np.ndarray,
    y_N: np.ndarray,
    per_group: int = 3,
    seed: int = 0,
    *,
    pick: str = "random",
) -> dict[str, list[int]]:
    """Example indices in the four quadrants of two scores split at their medians (`QUADRANTS`,
    named x/y; "high" = strictly above the median).

    `pick="random"` (default) draws `per_group` members of each quadrant at random (seeded):
    typical examples of the quadrant. `pick="extreme"` takes the members farthest from the
    medians in percentile-rank space (largest |rank_x - 0.5| + |rank_y - 0.5|, ties by index):
    the quadrant's clearest cases. Indices are listed in the order picked (extreme: most extreme
    first; random: ascending).
    """
    x, y = _finite_1d(x_N, "x_N"), _finite_1d(y_N, "y_N")
    if len(x) != len(y):
        raise ValueError(f"x_N and y_N differ in length: {len(x)} and {len(y)}")
    if pick not in ("random", "extreme"):
        raise ValueError(f"pick must be 'random' or 'extreme', got {pick!r}")
    rng = np.random.default_rng(seed)
    dist = np.abs(percentile_rank(x) - 0.5) + np.abs(percentile_rank(y) - 0.5)
    out = {}
    for q, mask in _high_low(x, y).items():
        members = np.flatnonzero(mask)
        if pick == "extreme":
            chosen = members[np.argsort(-dist[members], kind="stable")[:per_group]]
        else:
            chosen = np.sort(_pick(members, per_group, rng))
        out[q] = [int(i) for i in chosen]
    return out


def _frame_axes(ax: Axes, color: str, width: float = 4.0) -> None:
    """A thick coloured border around a scenario panel (all four spines, whatever the style)."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def _scenario_title(scenarios: ScenarioSet, i: int) -> str:
    """'#index scenario type' wrapped to fit a small panel, the city below."""
    kind = str(scenarios.meta["scenario_type"][i]).replace("_", " ")
    return f"{textwrap.fill(f'#{i} {kind}', 34)}\n{scenarios.meta['city'][i]}"


@_styled
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
    gc = _group_colors([g for g, _ in rows], colors)
    panel = 2.6
    fig = _figure(panel * ncols + 0.4, panel * len(rows) + 0.2)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (group, idx) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(idx):
                ax.set_axis_off()
                continue
            i = int(idx[c])
            title = titles.get(i) if titles and i in titles else _scenario_title(scenarios, i)
            viz.plot_scenario(ax, (scenarios, i), title=title)
            ax.title.set_fontsize(7)
            ax.set_xticks([])
            ax.set_yticks([])
            _frame_axes(ax, gc[group])
        axes[r, 0].set_ylabel(group, color=gc[group], fontsize=11, fontweight="bold")
    return _save(fig, out, dpi=110)


def _valid_neighbours(scenarios: ScenarioSet) -> np.ndarray:
    return np.any(scenarios.arrays["neighbor_agents_past"][..., :2] != 0, axis=(2, 3)).sum(1)


@_styled
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
    fig = _figure(3.0 * ncols, 3.1 * nrows)
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
    return _save(fig, out, dpi=110)


# ----------------------------------------------------------------------------- dataset figures


@_styled
def composition_by_city(
    city_N: np.ndarray, type_N: np.ndarray, difficulty_N: np.ndarray, out: PathLike
) -> Path:
    """Left: scenario counts per city stacked by scenario type. Right: the distribution of the
    difficulty (metadata) score per city as box plots (whiskers 1.5 IQR) with the points."""
    city, kind = np.asarray(city_N).astype(str), np.asarray(type_N).astype(str)
    diff = _finite_1d(difficulty_N, "difficulty_N")
    if not len(city) == len(kind) == len(diff):
        raise ValueError(f"lengths differ: {len(city)}, {len(kind)}, {len(diff)}")
    cities = sorted(set(city), key=lambda c: (-np.sum(city == c), c))
    kinds = sorted(set(kind), key=lambda t: (-np.sum(kind == t), t))
    cmap = mpl.colormaps["tab20"]
    fig = _figure(11.0, 0.9 + 0.2 * max(len(kinds), 3 * len(cities)))
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
    return _save(fig, out)


def _unit_features(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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


@_styled
def difficulty_radar(features: Mapping[str, np.ndarray], tier_N: np.ndarray, out: PathLike) -> Path:
    """Radar chart of the mean unit-scaled feature (see `_unit_features`) per difficulty tier
    (`valuation.metadata.tiers`: 1 bottom 20% .. 4 top 20%), one polygon per tier present."""
    unit = _unit_features(features)
    tier = np.asarray(tier_N).astype(int)
    names = list(unit)
    if len(names) < 3:
        raise ValueError("a radar chart needs at least three features")
    if any(len(v) != len(tier) for v in unit.values()):
        raise ValueError("every feature needs one value per tier entry")
    angles = np.linspace(0.0, 2 * np.pi, len(names), endpoint=False)
    closed = np.r_[angles, angles[:1]]
    fig = _figure(5.6, 5.6)
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
    return _save(fig, out)


# ----------------------------------------------------------------------------- training figures


@_styled
def curriculum_weights(
    prob_ExN: np.ndarray, score_N: np.ndarray, out: PathLike, *, title: str = ""
) -> Path:
    """How a curriculum reweights the data (`curriculum.schedule.weight_matrix` output).

    Left: the mean sampling probability of each score quartile relative to uniform (1/N) per
    epoch. Right: every example's relative probability (rows sorted by score, lowest at the
    bottom) per epoch.
    """
    prob = np.asarray(prob_ExN, np.float64)
    s = _finite_1d(score_N, "score_N")
    if prob.ndim != 2 or prob.shape[1] != len(s):
        raise ValueError(f"prob_ExN shape {prob.shape} does not match {len(s)} scores")
    n_epochs, n = prob.shape
    rel_ExN = prob * n
    q_N = quartiles(s)
    epochs = np.arange(1, n_epochs + 1)
    fig = _figure(10.0, 3.8)
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
    return _save(fig, out)


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


@_styled
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
    fig = _figure(8.0, 4.0)
    ax, board = fig.subplots(1, 2, width_ratios=(3.0, 1.1))
    _draw_race(ax, board, hist, bands, n_epochs, limits, metric)
    paths = [_save(fig, out_png)]
    if out_gif is not None:
        fig.set_layout_engine("none")  # freeze the final layout so frames do not jump
        fig.set_dpi(GIF_DPI)
        steps = _frame_steps(n_epochs, MAX_GIF_FRAMES)
        frames = []
        for upto in steps:
            _draw_race(ax, board, hist, bands, upto, limits, metric)
            frames.append(_frame(fig))
        paths.append(_save_gif(frames, out_gif, [350] * (len(frames) - 1) + [2500]))
    return paths


@_styled
def dot_whisker(values: Mapping[str, Mapping[str, Sequence[float]]], out: PathLike) -> Path:
    """One panel per metric: methods on the y axis, dot = mean, whisker = SD (ddof=0, as the
    paper), each seed a faint point. `values[method][metric]` = per-seed values."""
    methods = list(values)
    metrics_ = list(dict.fromkeys(m for per in values.values() for m in per))
    if not methods or not metrics_:
        raise ValueError("dot_whisker needs at least one method and one metric")
    fig = _figure(1.0 + 3.0 * len(metrics_), 0.9 + 0.4 * len(methods))
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
    return _save(fig, out)


# ----------------------------------------------------------------------------- predictions


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
        ax.set_title(_scenario_title(scenarios, int(i)), fontsize=7)
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


@_styled
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
    fig = _figure(3.2 * len(indices), 3.5)
    growing = _comparison_panels(fig, scenarios, indices, rows)
    horizon = max(len(xy) for _, xy in growing)
    _reveal(growing, horizon)
    fig.suptitle("Ego plans against the ground truth", fontweight="bold")
    paths = [_save(fig, out_png)]
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
            frames.append(_frame(fig))
            durations.append(1200 if t == 0 else 2500 if t == horizon else 200)
        paths.append(_save_gif(frames, out_gif, durations))
    return paths
