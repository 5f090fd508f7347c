"""The house style shared by every figure: colours, line styles, figure creation, and atomic
PNG/GIF saving.

Figures are `matplotlib.figure.Figure` objects on the Agg canvas, never registered with pyplot, so
there is no global figure state to leak or close and no display is needed: the package works the
same under any MPLBACKEND. GIF frames are rendered on that canvas and assembled with Pillow; they
are kept small (`GIF_DPI`, at most `MAX_GIF_FRAMES` frames) so the report stays light.

Colours are consistent across figures: `METHOD_COLORS` for the training methods (`method_color`
for names outside it), `TIER_COLORS` for score tiers and `QUADRANT_COLORS` for the quadrants of two
scores.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from gf_jax import atomic

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


def group_colors(groups: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    """A colour per group: `colors`, else the tier/quadrant colour, else tab10 by position."""
    known = {**TIER_COLORS, **QUADRANT_COLORS, **(colors or {})}
    cycle = mpl.colormaps["tab10"].colors
    return {g: known.get(g, mcolors.to_hex(cycle[i % len(cycle)])) for i, g in enumerate(groups)}


# ----------------------------------------------------------------------------- plumbing


def styled(fn: Callable) -> Callable:
    """Runs a figure function under the house style without touching the global rcParams."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    """A figure of `width` x `height` inches on its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out: PathLike, dpi: int = PNG_DPI) -> Path:
    """Writes `fig` atomically in the format named by the suffix of `out` (PNG by default)."""
    fmt = Path(out).suffix.lstrip(".").lower() or "png"
    # A tight box keeps outside legends and polar labels that the layout engine leaves out.
    return atomic.write_bytes(
        out, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    )


def render_frame(fig: Figure) -> Image.Image:
    """The figure as it stands, drawn to an RGB image (one GIF frame)."""
    fig.canvas.draw()
    return Image.fromarray(np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))


def save_gif(frames: Sequence[Image.Image], out: PathLike, durations_ms: Sequence[int]) -> Path:
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


def frame_steps(total: int, max_frames: int) -> list[int]:
    """Up to `max_frames` increasing counts in 1..total, always ending at `total`."""
    if total <= max_frames:
        return list(range(1, total + 1))
    return sorted(set(np.rint(np.linspace(1, total, max_frames)).astype(int).tolist()))


def finite_1d(x: Any, name: str) -> np.ndarray:
    """`x` flattened to float64; raises if it is empty or has a non-finite value."""
    v = np.asarray(x, np.float64).reshape(-1)
    if not len(v):
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} has non-finite values")
    return v
