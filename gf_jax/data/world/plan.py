"""What a chunk of scenarios will show, decided before anything is simulated.

Recipes fill a `Plan` (one row per scenario); roads, population and traffic read it. Arms of a
junction are indexed counter-clockwise from the ego's approach: 0 = west (the ego drives east into
the junction), 1 = south, 2 = east, 3 = north. Everything is built for right-hand traffic; a
left-hand city is mirrored when features are written.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Layout kinds.
STRAIGHT, CROSS, TEE, MERGE = 0, 1, 2, 3
KIND_NAMES = ("straight", "cross", "tee", "merge")
# Movements through a junction.
STRAIGHT_ON, LEFT, RIGHT = 0, 1, 2


@dataclasses.dataclass
class Plan:
    """Per-scenario decisions, arrays with leading axis N (see the module docstring for arms)."""

    index: np.ndarray  # global scenario index
    target: np.ndarray  # index into the scenario-type list the recipe aims at
    city: np.ndarray
    left_hand: np.ndarray
    kind: np.ndarray
    arms_on: np.ndarray  # [N, 4] bool
    lanes: np.ndarray  # [N, 4] lanes per direction on each arm (0 if the arm is off)
    lane_w: np.ndarray
    median: np.ndarray  # half-width of the median
    cw_w: np.ndarray  # crosswalk band width
    phi: np.ndarray  # [N, 4] outward arm directions
    seg_len: np.ndarray
    kappa: np.ndarray  # road bending curvature (1/m)
    cw_on: np.ndarray  # [N, 4] crosswalk across each arm (straight roads: slot 0 = mid-block)
    signalised: np.ndarray
    speed_limit: np.ndarray  # [N, 4] per arm
    lat_acc: np.ndarray  # comfortable lateral acceleration in curves
    ramp_beta: np.ndarray
    acc_x0: np.ndarray  # merge: where the acceleration lane starts (x)
    acc_len: np.ndarray
    green: np.ndarray  # [N, 2] green seconds of phase A (arms 0, 2) and B (arms 1, 3)
    offset: np.ndarray  # signal cycle offset (s)
    # Ego.
    ego_lane: np.ndarray
    ego_move: np.ndarray
    ego_on_ramp: np.ndarray
    ego_slot: np.ndarray  # the ego's place in its lane's vehicle stream (0 = first at the line)
    ego_gap: np.ndarray  # free space ahead of the ego when placed (m)
    ego_speed: np.ndarray
    ego_v0: np.ndarray  # desired speed factor on the speed limit
    force_dir: np.ndarray  # forced ego lane change: +1 left, -1 right, 0 none
    force_time: np.ndarray  # simulation time from which the ego wants to change (s)
    # The vehicle right ahead of the ego.
    lead_kind: (
        np.ndarray
    )  # 0 drawn like the rest, 1 long vehicle, 2 slow car, 3 car (2, 3 use lead_v0)
    lead_v0: np.ndarray  # desired-speed factor of the lead
    lead_stop_time: np.ndarray  # the lead brakes to a stop at this time (s); inf = never
    queue_n: np.ndarray  # vehicles queued in the ego's lane at a red light (-1 = drawn)
    # Traffic.
    density: np.ndarray  # multiplier on the city's density
    peds: np.ndarray  # expected pedestrians
    ped_focus: np.ndarray  # pedestrians timed to cross in front of the ego
    ped_focus_time: np.ndarray  # when they start crossing (s)

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, rows: np.ndarray) -> Plan:
        return Plan(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    def template_keys(self) -> np.ndarray:
        """Scenarios with equal keys share a lane-graph topology (built together, vectorised)."""
        on = (self.arms_on * np.array([1, 2, 4, 8])).sum(1)
        lanes = (self.lanes * np.array([1, 4, 16, 64])).sum(1)
        return self.kind * 100000 + on * 1000 + lanes
