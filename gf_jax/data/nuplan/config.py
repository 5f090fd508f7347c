"""What a nuPlan extraction selects and how it builds features (`ExtractConfig`).

`ALL_SCENARIO_TYPES` are the 73 tags of the nuPlan devkit's scenario mapping
(`nuplan_scenario_mapping.yaml`); the command line refuses any other `--types` value before it
reads a log, so a typo fails at once instead of extracting nothing.
"""

from __future__ import annotations

import dataclasses

from gf_jax.data.nuplan.features import MAP_RADIUS
from gf_jax.data.schema import NUPLAN_SCENARIO_TYPES

ALL_SCENARIO_TYPES = frozenset(
    """
    accelerating_at_crosswalk accelerating_at_stop_sign accelerating_at_stop_sign_no_crosswalk
    accelerating_at_traffic_light accelerating_at_traffic_light_with_lead
    accelerating_at_traffic_light_without_lead behind_bike behind_long_vehicle
    behind_pedestrian_on_driveable behind_pedestrian_on_pickup_dropoff changing_lane
    changing_lane_to_left changing_lane_to_right changing_lane_with_lead changing_lane_with_trail
    crossed_by_bike crossed_by_vehicle following_lane_with_lead following_lane_with_slow_lead
    following_lane_without_lead high_lateral_acceleration high_magnitude_jerk high_magnitude_speed
    low_magnitude_speed medium_magnitude_speed near_barrier_on_driveable near_construction_zone_sign
    near_high_speed_vehicle near_long_vehicle near_multiple_bikes near_multiple_pedestrians
    near_multiple_vehicles near_pedestrian_at_pickup_dropoff near_pedestrian_on_crosswalk
    near_pedestrian_on_crosswalk_with_ego near_trafficcone_on_driveable on_all_way_stop_intersection
    on_carpark on_intersection on_pickup_dropoff on_stopline_crosswalk on_stopline_stop_sign
    on_stopline_traffic_light on_traffic_light_intersection starting_high_speed_turn
    starting_left_turn starting_low_speed_turn starting_protected_cross_turn
    starting_protected_noncross_turn starting_right_turn
    starting_straight_stop_sign_intersection_traversal
    starting_straight_traffic_light_intersection_traversal starting_u_turn
    starting_unprotected_cross_turn starting_unprotected_noncross_turn stationary
    stationary_at_crosswalk stationary_at_traffic_light_with_lead
    stationary_at_traffic_light_without_lead stationary_in_traffic stopping_at_crosswalk
    stopping_at_stop_sign_no_crosswalk stopping_at_stop_sign_with_lead
    stopping_at_stop_sign_without_lead stopping_at_traffic_light_with_lead
    stopping_at_traffic_light_without_lead stopping_with_lead traversing_crosswalk
    traversing_intersection traversing_narrow_lane traversing_pickup_dropoff
    traversing_traffic_light_intersection waiting_for_pedestrian_to_cross
    """.split()
)
assert ALL_SCENARIO_TYPES >= set(NUPLAN_SCENARIO_TYPES)


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

    def __post_init__(self) -> None:
        # A cap below 1 would silently drop scenarios (a negative slice bound keeps all but one).
        if self.per_type is not None and self.per_type < 1:
            raise ValueError(f"ExtractConfig.per_type: must be >= 1 or None, got {self.per_type}")
        if not self.scenario_types:
            raise ValueError("ExtractConfig.scenario_types: empty")


def unknown_types(types: tuple[str, ...]) -> list[str]:
    """The entries of `types` that are not nuPlan scenario tags."""
    return [t for t in types if t not in ALL_SCENARIO_TYPES]


DEFAULT_CONFIG = ExtractConfig()  # the default of every extraction entry point (immutable)
