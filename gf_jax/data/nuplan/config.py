"""What a nuPlan extraction selects and how it builds features (`ExtractConfig`)."""

from __future__ import annotations

import dataclasses

from gf_jax.data.nuplan.features import MAP_RADIUS
from gf_jax.data.schema import NUPLAN_SCENARIO_TYPES


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Scenario selection and feature options.

    Attributes:
      scenario_types: tags that make a scenario (default: the 14 nuPlan-challenge types).
      per_type: cap per type over all logs, by uniform striding as the devkit (None: no cap).
      map_radius: half-width of the map query square (m).
      float32_globals: cast global coordinates to float32 before making them relative, as
        GameFormer does (adds its ~0.25-0.5 m quantisation); default exact float64.
    """

    scenario_types: tuple[str, ...] = NUPLAN_SCENARIO_TYPES
    per_type: int | None = 1000
    map_radius: float = MAP_RADIUS
    float32_globals: bool = False


DEFAULT_CONFIG = ExtractConfig()  # the default of every extraction entry point (immutable)
