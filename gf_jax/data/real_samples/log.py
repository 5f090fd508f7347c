"""A real recording (`Log`, at 10 Hz in a global metric frame) and its GameFormer scenarios.

A scenario is an anchor every `stride` frames with 2 s of past and 8 s of future, turned into the
GameFormer layout by `nuplan.gameformer_arrays`: ego frame at the anchor, the ego pose as the rear
axle, lanes and crosswalks with a vertex in the 60 m square, no traffic-light information (every
lane unknown), route lanes = lanes the ego passes along (within 1.5 m and 45 degrees) from now to
the end of its future.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from gf_jax.data.nuplan.features import MAP_RADIUS, UNKNOWN_TL, Window, gameformer_arrays
from gf_jax.data.schema import FUTURE_STEPS, LAYOUT, PAST_STEPS, ScenarioSet, empty_meta

DEFAULT_STRIDE = 10  # one anchor per second
ROUTE_DIST = 1.5  # m from the ego path to count a lane as driven along
ROUTE_ANGLE = np.pi / 4


@dataclasses.dataclass
class Log:
    """A whole recording at 10 Hz in a global metric frame.

    Attributes:
      name: log or scene id (scenario tokens are `<name>_<frame>`); source: 'av2' or 'nuscenes'.
      ego_Tx3: ego rear axle x, y, heading; ego_ok_T: frames with a valid ego pose.
      agents_AxTx7: x, y, heading, vx, vy, length, width; seen_AxT; cls_A (0..2, -1 ignored).
      lanes, crosswalks: centrelines [P, 2] and closed rings [P, 2].
    """

    name: str
    source: str
    city: str
    map_name: str
    times_T: np.ndarray
    ego_Tx3: np.ndarray
    ego_ok_T: np.ndarray
    agents_AxTx7: np.ndarray
    seen_AxT: np.ndarray
    cls_A: np.ndarray
    lanes: list[np.ndarray]
    crosswalks: list[np.ndarray]


def _in_square(polys: list[np.ndarray], xy: np.ndarray, r: float) -> np.ndarray:
    if not polys:
        return np.zeros(0, bool)
    pts = np.concatenate(polys)
    inside = np.all(np.abs(pts - xy) <= r, axis=1)
    starts = np.cumsum([0] + [len(p) for p in polys[:-1]])
    return np.add.reduceat(inside.astype(int), starts) > 0


def _driven(lane: np.ndarray, path: np.ndarray, path_h: np.ndarray) -> bool:
    """Whether the ego path passes along the lane: a path point within ROUTE_DIST of one of its
    segments, heading within ROUTE_ANGLE of the segment's."""
    a, b = lane[:-1], lane[1:]
    ab = b - a
    L2 = np.maximum((ab**2).sum(-1), 1e-9)
    t = np.clip(((path[:, None] - a) * ab).sum(-1) / L2, 0.0, 1.0)  # [P, S]
    d = np.linalg.norm(path[:, None] - (a + t[..., None] * ab), axis=-1)
    seg_h = np.arctan2(ab[:, 1], ab[:, 0])
    dh = np.abs(np.angle(np.exp(1j * (path_h[:, None] - seg_h))))
    return bool(np.any((d < ROUTE_DIST) & (dh < ROUTE_ANGLE)))


def _ego_states(log: Log) -> np.ndarray:
    """[T, 7] ego x, y, heading, body-frame velocity and acceleration (finite differences)."""
    xy, h = log.ego_Tx3[:, :2], log.ego_Tx3[:, 2]
    t = np.asarray(log.times_T, np.float64)
    vel = np.stack([np.gradient(xy[:, 0], t), np.gradient(xy[:, 1], t)], -1)
    acc = np.stack([np.gradient(vel[:, 0], t), np.gradient(vel[:, 1], t)], -1)
    c, s = np.cos(h)[:, None], np.sin(h)[:, None]

    def body(v):
        return np.concatenate([c * v[:, :1] + s * v[:, 1:], -s * v[:, :1] + c * v[:, 1:]], -1)

    return np.concatenate([xy, h[:, None], body(vel), body(acc)], -1)


def windows(log: Log, stride: int = DEFAULT_STRIDE) -> Iterator[tuple[int, Window]]:
    """(anchor frame, window) every `stride` frames where 2 s past and 8 s future exist."""
    ego = _ego_states(log)
    n = len(ego)
    for p in range(PAST_STEPS - 1, n - FUTURE_STEPS, stride):
        sl = slice(p - PAST_STEPS + 1, p + FUTURE_STEPS + 1)
        if not log.ego_ok_T[sl].all():
            continue
        xy = ego[p, :2]
        lane_in = _in_square(log.lanes, xy, MAP_RADIUS)
        lanes = [log.lanes[i] for i in np.nonzero(lane_in)[0]]
        cw_in = _in_square(log.crosswalks, xy, MAP_RADIUS)
        path, path_h = ego[p : sl.stop, :2], ego[p : sl.stop, 2]
        route = [lane for lane in lanes if _driven(lane, path, path_h)]
        yield p, Window(
            ego[sl], log.times_T[sl], log.agents_AxTx7[:, sl], log.seen_AxT[:, sl], log.cls_A,
            lanes, [UNKNOWN_TL] * len(lanes), [log.crosswalks[i] for i in np.nonzero(cw_in)[0]],
            route,
        )  # fmt: skip


def scenarios(log: Log, stride: int = DEFAULT_STRIDE) -> ScenarioSet | None:
    """A log's scenarios in the GameFormer layout (None if it is too short for any)."""
    tokens, arrays = [], []
    for p, w in windows(log, stride):
        tokens.append(f"{log.name}_{p:03d}")
        arrays.append(gameformer_arrays(w))
    if not arrays:
        return None
    n = len(arrays)
    meta = empty_meta(n, map_name=log.map_name, city=log.city, scenario_type=log.source)
    meta["token"] = np.array(tokens, str)
    stacked = {k: np.stack([a[k] for a in arrays]) for k in LAYOUT}
    return ScenarioSet(stacked, meta, f"real-samples:{log.name}").validate()
