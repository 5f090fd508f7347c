"""The GameFormer scenario layout: one documented source of truth for keys, shapes and padding.

Every source (procedural world, GameFormer npz folders, nuPlan, AV2/nuScenes adapters) produces a
`ScenarioSet`, and everything downstream (model, losses, valuation) reads only these arrays.

Frame and units: ego frame at the present (origin = ego rear axle, x forward, y left), metres,
radians, m/s, 10 Hz. Past = 21 frames oldest first (index 20 = now), future = 80 frames
(t = 0.1 ... 8.0 s). Headings are wrapped to (-pi, pi].

Padding convention (exactly as GameFormer; the model's masks are derived from it):
- a neighbour slot is padding iff its whole row is zero; real agents are packed first, sorted by
  current distance to the ego, and have no all-zero past rows (missing early frames repeat the
  earliest observed state);
- a neighbour future step is unobserved iff it is all zero;
- a map polyline (lane, crosswalk, route lane) is padding iff all its values are zero; real
  polylines come first, sorted by distance.

Shape letters. Array names across the repository carry their shape (`traj_BxAxMxTx2`), each
letter with one meaning:

    B  batch: examples in one step        N  examples in a dataset (a split, a score vector)
    A  agents (ego first; neighbour-only arrays say `neighbor` in their name)
    M  modes                              T  time steps (past or future)
    P  points per polyline                L  polylines (lanes, crosswalks, route lanes)
    D  features / channels                K  checkpoints
    E  epochs                             V  interaction levels of the decoder
    H  attention heads                    Q  attention queries
    S  attention keys (sources)           R  repeats / random trials
    F  flattened or projected gradient dimension
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PAST_STEPS = 21
FUTURE_STEPS = 80
DT = 0.1
NUM_NEIGHBORS = 20
NUM_LANES, LANE_POINTS = 40, 50
NUM_CROSSWALKS, CROSSWALK_POINTS = 5, 30
NUM_ROUTE_LANES, ROUTE_POINTS = 10, 50

EGO_PAST_CHANNELS = ("x", "y", "heading", "vx", "vy", "ax", "ay")
NEIGHBOR_PAST_CHANNELS = (
    "x", "y", "heading", "vx", "vy", "yaw_rate", "length", "width",
    "is_vehicle", "is_pedestrian", "is_bicycle",
)  # fmt: skip
FUTURE_CHANNELS = ("x", "y", "heading")
LANE_CHANNELS = ("x", "y", "heading", "tl_green", "tl_yellow", "tl_red", "tl_unknown")
POLYLINE_CHANNELS = ("x", "y", "heading")

# key -> (per-scenario shape, channel names). All float32.
LAYOUT: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "ego_agent_past": ((PAST_STEPS, 7), EGO_PAST_CHANNELS),
    "ego_agent_future": ((FUTURE_STEPS, 3), FUTURE_CHANNELS),
    "neighbor_agents_past": ((NUM_NEIGHBORS, PAST_STEPS, 11), NEIGHBOR_PAST_CHANNELS),
    "neighbor_agents_future": ((NUM_NEIGHBORS, FUTURE_STEPS, 3), FUTURE_CHANNELS),
    "lanes": ((NUM_LANES, LANE_POINTS, 7), LANE_CHANNELS),
    "crosswalks": ((NUM_CROSSWALKS, CROSSWALK_POINTS, 3), POLYLINE_CHANNELS),
    "route_lanes": ((NUM_ROUTE_LANES, ROUTE_POINTS, 3), POLYLINE_CHANNELS),
}
ARRAY_KEYS: tuple[str, ...] = tuple(LAYOUT)
DTYPE = np.float32

# Model input names differ from the npz keys for the two map arrays (as in GameFormer-Planner).
MODEL_INPUT_KEYS: dict[str, str] = {
    "ego_agent_past": "ego_agent_past",
    "neighbor_agents_past": "neighbor_agents_past",
    "map_lanes": "lanes",
    "map_crosswalks": "crosswalks",
    "route_lanes": "route_lanes",
}

META_STR_KEYS = ("map_name", "token", "city", "scenario_type")
META_KEYS = (*META_STR_KEYS, "corrupted")

CITIES = ("las_vegas", "boston", "pittsburgh", "singapore")
CITY_MAP_NAMES = {
    "las_vegas": "us-nv-las-vegas-strip",
    "boston": "us-ma-boston",
    "pittsburgh": "us-pa-pittsburgh-hazelwood",
    "singapore": "sg-one-north",
}

# The 14 nuPlan-challenge scenario types GameFormer-Planner trains on.
NUPLAN_SCENARIO_TYPES = (
    "starting_left_turn",
    "starting_right_turn",
    "starting_straight_traffic_light_intersection_traversal",
    "stopping_with_lead",
    "high_lateral_acceleration",
    "high_magnitude_speed",
    "low_magnitude_speed",
    "traversing_pickup_dropoff",
    "waiting_for_pedestrian_to_cross",
    "behind_long_vehicle",
    "stationary_in_traffic",
    "near_multiple_vehicles",
    "changing_lane",
    "following_lane_with_lead",
)


class DataError(ValueError):
    """Bad scenario data. The message is one line naming the source, the key and the problem."""


def _fail(source: str, key: str, problem: str) -> DataError:
    return DataError(f"{source}: {key}: {problem}")


def validate_arrays(
    arrays: Mapping[str, np.ndarray], source: str = "<arrays>", *, batched: bool = True
) -> None:
    """Checks keys, shapes, dtypes, finiteness and the zero-padding convention.

    Args:
      arrays: the layout's keys -> arrays, with a leading N axis if `batched`.
      source: named in the error message (a file path, a folder, a generator).
      batched: whether arrays carry a leading scenario axis.

    Raises:
      DataError: one line, naming `source`, the key and the problem.
    """
    n = None
    for key, (shape, _) in LAYOUT.items():
        if key not in arrays:
            raise _fail(source, key, "missing key")
        a = np.asarray(arrays[key])
        want = shape
        if batched:
            if a.ndim != len(shape) + 1:
                raise _fail(
                    source, key, f"expected shape (N, {', '.join(map(str, shape))}), got {a.shape}"
                )
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise _fail(source, key, f"has {a.shape[0]} scenarios, other keys have {n}")
            want = (n, *shape)
        if a.shape != want:
            raise _fail(source, key, f"expected shape {want}, got {a.shape}")
        if a.dtype != DTYPE:
            raise _fail(source, key, f"expected dtype float32, got {a.dtype}")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0].tolist()
            raise _fail(source, key, f"non-finite value at index {bad}")
    get = {k: np.asarray(arrays[k]) if batched else np.asarray(arrays[k])[None] for k in LAYOUT}
    _check_padding(get, source)


def _first_bad(mask: np.ndarray) -> list[int]:
    return np.argwhere(mask)[0].tolist()


def _check_padding(a: Mapping[str, np.ndarray], source: str) -> None:
    ego = a["ego_agent_past"]
    if np.abs(ego[:, -1, :3]).max(initial=0.0) > 1e-3:
        i = _first_bad(np.abs(ego[:, -1, :3]).max(-1) > 1e-3)
        raise _fail(
            source,
            "ego_agent_past",
            f"scenario {i[0]}: current pose is not (0, 0, 0) (not in the ego frame)",
        )

    past = a["neighbor_agents_past"]
    real = np.any(past != 0, axis=(2, 3))  # [N, 20]
    # Packed: once a slot is padding, every later slot is padding too.
    unpacked = real[:, 1:] & ~real[:, :-1]
    if unpacked.any():
        i, s = _first_bad(unpacked)
        raise _fail(
            source,
            "neighbor_agents_past",
            f"scenario {i}: slot {s + 1} holds an agent after padding slot {s}",
        )
    gaps = real[:, :, None] & np.all(past == 0, axis=3)
    if gaps.any():
        i, s, t = _first_bad(gaps)
        raise _fail(
            source,
            "neighbor_agents_past",
            f"scenario {i}: agent slot {s} has an all-zero past frame {t}",
        )
    fut = a["neighbor_agents_future"]
    orphan = ~real & np.any(fut != 0, axis=(2, 3))
    if orphan.any():
        i, s = _first_bad(orphan)
        raise _fail(
            source,
            "neighbor_agents_future",
            f"scenario {i}: padding slot {s} has a non-zero future",
        )

    for key in ("lanes", "crosswalks", "route_lanes"):
        poly = a[key]
        has_xy = np.any(poly[..., :2] != 0, axis=(2, 3))  # [N, L]
        stray = ~has_xy & np.any(poly != 0, axis=(2, 3))
        if stray.any():
            i, p = _first_bad(stray)
            raise _fail(
                source,
                key,
                f"scenario {i}: polyline {p} has zero coordinates but non-zero features",
            )
        unpacked = has_xy[:, 1:] & ~has_xy[:, :-1]
        if unpacked.any():
            i, p = _first_bad(unpacked)
            raise _fail(source, key, f"scenario {i}: polyline {p + 1} follows padding polyline {p}")


@dataclasses.dataclass
class ScenarioSet:
    """N scenarios in the GameFormer layout, stacked, plus per-scenario metadata.

    Attributes:
      arrays: `LAYOUT` key -> float32 array with leading axis N, e.g. `lanes` is [N, 40, 50, 7].
      meta: `map_name`, `token`, `city`, `scenario_type` -> str arrays [N]; `corrupted` -> bool [N]
        (ground truth of injected label noise; False for real data).
      source: where the data came from, named in error messages.
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, np.ndarray]
    source: str = "<memory>"

    def __len__(self) -> int:
        return int(self.arrays["ego_agent_future"].shape[0])

    def validate(self) -> ScenarioSet:
        """Raises DataError if the arrays or metadata break the layout; returns self."""
        validate_arrays(self.arrays, self.source)
        n = len(self)
        for key in META_KEYS:
            if key not in self.meta:
                raise _fail(self.source, key, "missing metadata key")
            m = np.asarray(self.meta[key])
            if m.shape != (n,):
                raise _fail(self.source, key, f"expected metadata shape ({n},), got {m.shape}")
        if np.asarray(self.meta["corrupted"]).dtype != np.bool_:
            raise _fail(self.source, "corrupted", "expected a bool array")
        return self

    def subset(self, index: Sequence[int] | np.ndarray) -> ScenarioSet:
        """The scenarios at `index` (integer indices or a bool mask), copied."""
        idx = np.asarray(index)
        return ScenarioSet(
            {k: np.ascontiguousarray(v[idx]) for k, v in self.arrays.items()},
            {k: np.asarray(v)[idx] for k, v in self.meta.items()},
            self.source,
        )

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The five model input arrays under GameFormer's input names."""
        return {name: self.arrays[key] for name, key in MODEL_INPUT_KEYS.items()}

    def targets(self, neighbors: int = 10) -> dict[str, np.ndarray]:
        """Ego future [N, 80, 3] and the first `neighbors` neighbour futures [N, neighbors, 80, 3]."""
        return {
            "ego_agent_future": self.arrays["ego_agent_future"],
            "neighbor_agents_future": self.arrays["neighbor_agents_future"][:, :neighbors],
        }

    def batch(self, neighbors: int = 10) -> dict[str, np.ndarray]:
        """Model inputs and targets in one flat dict (what the loss and train step take)."""
        return {**self.model_inputs(), **self.targets(neighbors)}


def concat(sets: Sequence[ScenarioSet], source: str | None = None) -> ScenarioSet:
    """Stacks several ScenarioSets along N."""
    if not sets:
        raise DataError(f"{source or '<concat>'}: no scenario sets to concatenate")
    return ScenarioSet(
        {k: np.concatenate([s.arrays[k] for s in sets]) for k in ARRAY_KEYS},
        {k: np.concatenate([np.asarray(s.meta[k]) for s in sets]) for k in META_KEYS},
        source or sets[0].source,
    )


def empty_meta(n: int, **values: Any) -> dict[str, np.ndarray]:
    """Metadata arrays for n scenarios: empty strings and corrupted=False unless given."""
    meta: dict[str, np.ndarray] = {
        k: np.full(n, "", dtype=object).astype(str) for k in META_STR_KEYS
    }
    meta["corrupted"] = np.zeros(n, bool)
    for k, v in values.items():
        meta[k] = np.broadcast_to(np.asarray(v), (n,)).copy()
    return meta
