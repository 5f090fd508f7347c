"""Figures (PNG) and animations (GIF) for the report, from plain numpy arrays and dicts.

Every public figure function renders one figure, writes it atomically
(`gf_jax.atomic.write_bytes`: a temporary sibling renamed into place, parent folders created),
and returns the Path(s) written. The package is split by job:

- `style`: colours, line styles, the house rc style, figure creation and PNG/GIF saving;
- `scores`: score distributions, two scores by quadrant, Spearman heatmap, top-k ranks;
- `groups`: example pickers by score tier and by quadrant;
- `scenarios`: scenario pictures per group and per interaction type;
- `dataset`: composition per city and the difficulty radar;
- `curriculum`: how a curriculum reweights the data;
- `training`: the training race (PNG + GIF) and dot-and-whisker panels;
- `predictions`: ego plans against the ground truth (PNG + GIF).

Everything public is re-exported here, so callers write `figures.<name>(...)`.
"""

from experiments.figures.curriculum import curriculum_weights
from experiments.figures.dataset import composition_by_city, difficulty_radar, unit_features
from experiments.figures.groups import quadrant_groups, quadrant_masks, tier_groups
from experiments.figures.predictions import prediction_comparison
from experiments.figures.scenarios import (
    DEFAULT_INTERACTION_TYPES,
    interaction_types,
    scenario_grid,
    scenario_title,
)
from experiments.figures.scores import (
    score_distribution,
    score_scatter,
    spearman_heatmap,
    top_ranked,
)
from experiments.figures.style import (
    FALLBACK_COLORS,
    GIF_DPI,
    GT_COLOR,
    MAX_GIF_FRAMES,
    METHOD_COLORS,
    PLAN_COLORS,
    PNG_DPI,
    QUADRANT_COLORS,
    QUADRANTS,
    STYLE,
    TIER_COLORS,
    TIERS,
    VARIANT_STYLES,
    PathLike,
    finite_1d,
    frame_steps,
    group_colors,
    line_styles,
    method_color,
    new_figure,
    render_frame,
    save,
    save_gif,
    styled,
)
from experiments.figures.training import dot_whisker, training_race

__all__ = [
    "DEFAULT_INTERACTION_TYPES",
    "FALLBACK_COLORS",
    "GIF_DPI",
    "GT_COLOR",
    "MAX_GIF_FRAMES",
    "METHOD_COLORS",
    "PLAN_COLORS",
    "PNG_DPI",
    "QUADRANTS",
    "QUADRANT_COLORS",
    "STYLE",
    "TIERS",
    "TIER_COLORS",
    "VARIANT_STYLES",
    "PathLike",
    "composition_by_city",
    "curriculum_weights",
    "difficulty_radar",
    "dot_whisker",
    "finite_1d",
    "frame_steps",
    "group_colors",
    "interaction_types",
    "line_styles",
    "method_color",
    "new_figure",
    "prediction_comparison",
    "quadrant_groups",
    "quadrant_masks",
    "render_frame",
    "save",
    "save_gif",
    "scenario_grid",
    "scenario_title",
    "score_distribution",
    "score_scatter",
    "spearman_heatmap",
    "styled",
    "tier_groups",
    "top_ranked",
    "training_race",
    "unit_features",
]
