"""The four nuPlan cities as driving styles: road geometry, speed limits, traffic and drivers.

Numbers are plausible round values, not measurements: Las Vegas has wide, straight, multi-lane
arterials with fast, dense traffic; Boston narrow lanes, short blocks, skewed junctions and
assertive drivers; Pittsburgh curvy roads, hills-and-river geometry and patient drivers;
Singapore (One-North) drives on the left, with moderate speeds and many cyclists.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.schema import CITIES


@dataclasses.dataclass(frozen=True)
class CityStyle:
    """One city's geometry, traffic and driver parameters (SI units)."""

    name: str
    left_hand: bool
    lane_width: tuple[float, float]  # uniform range, metres
    segment_length: float  # map lane pieces (half a short block ... quarter of a long one)
    curvature: tuple[float, float]  # P(curved road), max |curvature| (1/m)
    skew_deg: float  # max junction arm deviation from 90 degrees
    speed_limit: tuple[float, float, float]  # main-road choices, m/s
    main_lanes: tuple[float, float, float]  # P(1, 2, 3 lanes per direction)
    cross_lanes: tuple[float, float]  # P(1, 2)
    density: float  # vehicles per km per lane, free-flowing
    time_gap: float  # IDM T, seconds (mean)
    politeness: float  # MOBIL p
    max_accel: float  # IDM a
    comfort_decel: float  # IDM b
    gap_acceptance: float  # seconds a yielding driver wants ahead of the priority vehicle
    pedestrians: float  # expected pedestrians near a junction
    cyclist_share: float
    long_vehicle_share: float
    green_s: tuple[float, float]  # green phase range
    median: tuple[float, float]  # half-width of the median range


CITY_STYLES: dict[str, CityStyle] = {
    "las_vegas": CityStyle(
        "las_vegas", False, (3.5, 3.9), 45.0, (0.15, 1 / 600), 4.0, (15.6, 17.9, 20.1),
        (0.1, 0.45, 0.45), (0.5, 0.5), 38.0, 1.3, 0.2, 1.6, 2.2, 1.8, 6.0, 0.02, 0.07,
        (20.0, 35.0), (0.2, 1.6),
    ),
    "boston": CityStyle(
        "boston", False, (3.0, 3.4), 25.0, (0.5, 1 / 300), 18.0, (11.2, 13.4, 13.4),
        (0.45, 0.5, 0.05), (0.8, 0.2), 45.0, 1.1, 0.1, 1.8, 2.5, 1.4, 5.0, 0.07, 0.04,
        (15.0, 25.0), (0.0, 0.4),
    ),
    "pittsburgh": CityStyle(
        "pittsburgh", False, (3.2, 3.6), 32.0, (0.75, 1 / 180), 12.0, (11.2, 13.4, 15.6),
        (0.4, 0.55, 0.05), (0.75, 0.25), 30.0, 1.6, 0.4, 1.4, 2.0, 2.2, 3.0, 0.03, 0.05,
        (18.0, 30.0), (0.0, 0.6),
    ),
    "singapore": CityStyle(
        "singapore", True, (3.3, 3.6), 38.0, (0.5, 1 / 350), 8.0, (13.9, 16.7, 16.7),
        (0.15, 0.55, 0.3), (0.6, 0.4), 32.0, 1.5, 0.5, 1.5, 2.0, 2.0, 4.0, 0.08, 0.06,
        (20.0, 32.0), (0.3, 1.2),
    ),
}  # fmt: skip
assert tuple(CITY_STYLES) == CITIES


def city_table(field: str) -> np.ndarray:
    """One field of every style, indexed like `schema.CITIES` (tuple fields become rows)."""
    return np.array([getattr(CITY_STYLES[c], field) for c in CITIES], dtype=float)
