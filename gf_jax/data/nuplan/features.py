"""GameFormer's feature recipe on a global-frame window (shared with the AV2 / nuScenes adapters).

`gameformer_arrays(window)` turns one scenario, recorded in a global metric frame at 10 Hz, into the
seven GameFormer arrays: agents present now, nearest 20, earlier frames back-filled with the nearest
later state, Savitzky-Golay yaw rate with its end quirk; lanes / crosswalks / route lanes within the
60 m square sorted by minimum vertex distance, resampled in vertex-index space; traffic-light codes
(green and red only, everything else unknown).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gf_jax.data.schema import (
    CROSSWALK_POINTS,
    FUTURE_STEPS,
    LANE_POINTS,
    LAYOUT,
    NUM_CROSSWALKS,
    NUM_LANES,
    NUM_NEIGHBORS,
    NUM_ROUTE_LANES,
    PAST_STEPS,
    ROUTE_POINTS,
)
from gf_jax.data.world.geometry import index_resample, polyline_heading, wrap_angle, yaw_rate

MAP_RADIUS = 60.0
AGENT_CLASSES = {"vehicle": 0, "pedestrian": 1, "bicycle": 2}
TL_CODES = {"green": 0, "red": 2}  # GameFormer encodes only these; everything else is unknown (3)
UNKNOWN_TL = 3


def quaternion_yaw(qw, qx, qy, qz) -> np.ndarray:
    """Yaw as pyquaternion (and so the devkit) computes it: atan2(2(wz - xy), 1 - 2(y^2 + z^2))."""
    return np.arctan2(2.0 * (qw * qz - qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


@dataclasses.dataclass
class Window:
    """One scenario before the GameFormer recipe, in a global metric frame at 10 Hz.

    Frames: 21 past (index 20 = the present) then 80 future, T = 101.

    Attributes:
      ego_Tx7: ego rear axle x, y, heading, then vx, vy, ax, ay as recorded (body frame).
      times_T: frame times in seconds (only the past spacing is used: the yaw-rate dt).
      agents_AxTx7: x, y, heading, vx, vy (global), length, width of each track (box centre);
        A counts the tracks (the ego is not one of them).
      seen_AxT: whether the track is observed at the frame.
      cls_A: 0 vehicle, 1 pedestrian, 2 bicycle; anything else is ignored.
      lanes: lane and lane-connector centrelines [P_i, 2]; `lane_tl` their light codes 0..3.
      crosswalks: closed crosswalk rings [P_i, 2]; route: on-route centrelines [P_i, 2].
    """

    ego_Tx7: np.ndarray
    times_T: np.ndarray
    agents_AxTx7: np.ndarray
    seen_AxT: np.ndarray
    cls_A: np.ndarray
    lanes: list[np.ndarray]
    lane_tl: list[int]
    crosswalks: list[np.ndarray]
    route: list[np.ndarray]


def _to_frame(xy: np.ndarray, origin: np.ndarray, heading: float) -> np.ndarray:
    """Global points [..., 2] -> the frame at `origin` with x along `heading` (float64)."""
    c, s = np.cos(heading), np.sin(heading)
    d = np.asarray(xy, np.float64) - origin
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def _rotate(vec: np.ndarray, heading: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    return np.stack([c * vec[..., 0] + s * vec[..., 1], -s * vec[..., 0] + c * vec[..., 1]], -1)


def _polyline_array(
    polys: Sequence[np.ndarray],
    origin: np.ndarray,
    heading: float,
    count: int,
    points: int,
    extra_L: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """GameFormer's map-element processing: nearest `count` by minimum raw-vertex distance,
    resampled to `points` in vertex-index space, in the ego frame, point headings; zero padded."""
    channels = 3 + (len(extra_L[0]) if extra_L else 0)
    out = np.zeros((count, points, channels))
    if not polys:
        return out
    dmin = np.array([((np.asarray(p, np.float64) - origin) ** 2).sum(-1).min() for p in polys])
    for slot, i in enumerate(np.argsort(dmin, kind="stable")[:count]):
        p = np.asarray(polys[i], np.float64)
        if len(p) == 1:  # a degenerate element still needs two vertices to interpolate between
            p = np.repeat(p, 2, axis=0)
        xy = _to_frame(index_resample(p, points), origin, heading)
        out[slot, :, :2] = xy
        out[slot, :, 2] = polyline_heading(xy)
        if extra_L:
            out[slot, :, 3:] = extra_L[i]
    return out


def _ego_arrays(ego_Tx7: np.ndarray, o: np.ndarray, oh: float) -> dict[str, np.ndarray]:
    """The ego past (x, y, heading, vx, vy, ax, ay; present pose zeroed) and future (x, y,
    heading) in the frame at the present pose `o`, `oh`."""
    past = np.concatenate(
        [
            _to_frame(ego_Tx7[:PAST_STEPS, :2], o, oh),
            wrap_angle(ego_Tx7[:PAST_STEPS, 2:3] - oh),
            ego_Tx7[:PAST_STEPS, 3:7],
        ],
        -1,
    )
    past[-1, :3] = 0.0
    future = np.concatenate(
        [_to_frame(ego_Tx7[PAST_STEPS:, :2], o, oh), wrap_angle(ego_Tx7[PAST_STEPS:, 2:3] - oh)],
        -1,
    )
    return {"ego_agent_past": past, "ego_agent_future": future}


def _neighbor_arrays(w: Window, o: np.ndarray, oh: float) -> dict[str, np.ndarray]:
    """Agents present now (vehicles, pedestrians, bicycles), nearest first, in the ego frame."""
    p = PAST_STEPS - 1
    nb_past = np.zeros((NUM_NEIGHBORS, PAST_STEPS, 11))
    nb_fut = np.zeros((NUM_NEIGHBORS, FUTURE_STEPS, 3))
    st, seen = np.asarray(w.agents_AxTx7, np.float64), np.asarray(w.seen_AxT, bool)
    cls = np.asarray(w.cls_A)
    cand = np.nonzero(seen[:, p] & (cls >= 0) & (cls <= 2))[0] if len(st) else np.zeros(0, int)
    dist = np.linalg.norm(st[cand, p, :2] - o, axis=-1) if len(cand) else np.zeros(0)
    dt = float(np.mean(np.diff(np.asarray(w.times_T, np.float64)[:PAST_STEPS])))
    t_idx = np.arange(PAST_STEPS)
    for slot, k in enumerate(cand[np.argsort(dist, kind="stable")][:NUM_NEIGHBORS]):
        # Past frames without an observation take the nearest later observed state.
        later = np.where(seen[k, :PAST_STEPS], t_idx, PAST_STEPS - 1)
        fill = np.minimum.accumulate(later[::-1])[::-1]
        s = st[k, fill]
        nb_past[slot, :, :2] = _to_frame(s[:, :2], o, oh)
        nb_past[slot, :, 2] = wrap_angle(s[:, 2] - oh)
        nb_past[slot, :, 3:5] = _rotate(s[:, 3:5], oh)
        nb_past[slot, :, 5] = yaw_rate(s[:, 2], dt)
        nb_past[slot, :, 6:8] = s[:, 5:7]
        nb_past[slot, :, 8 + int(cls[k])] = 1.0
        f, ok = st[k, PAST_STEPS:], seen[k, PAST_STEPS:]
        fut = np.concatenate([_to_frame(f[:, :2], o, oh), wrap_angle(f[:, 2:3] - oh)], -1)
        nb_fut[slot] = fut * ok[:, None]
    return {"neighbor_agents_past": nb_past, "neighbor_agents_future": nb_fut}


def gameformer_arrays(w: Window) -> dict[str, np.ndarray]:
    """The seven GameFormer arrays (float32, no batch axis) of a window."""
    ego = np.asarray(w.ego_Tx7, np.float64)
    if ego.shape != (PAST_STEPS + FUTURE_STEPS, 7):
        raise ValueError(f"ego_Tx7 must be {(PAST_STEPS + FUTURE_STEPS, 7)}, got {ego.shape}")
    o, oh = ego[PAST_STEPS - 1, :2].copy(), float(ego[PAST_STEPS - 1, 2])
    out = _ego_arrays(ego, o, oh)
    out.update(_neighbor_arrays(w, o, oh))
    tl = [np.eye(4)[int(c)] for c in w.lane_tl]
    out["lanes"] = _polyline_array(w.lanes, o, oh, NUM_LANES, LANE_POINTS, tl)
    out["crosswalks"] = _polyline_array(w.crosswalks, o, oh, NUM_CROSSWALKS, CROSSWALK_POINTS)
    out["route_lanes"] = _polyline_array(w.route, o, oh, NUM_ROUTE_LANES, ROUTE_POINTS)
    return {k: np.ascontiguousarray(out[k], np.float32) for k in LAYOUT}
