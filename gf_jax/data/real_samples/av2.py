"""Argoverse 2 samples -> `Log`s: the forecasting scenario and the sensor logs.

The forecasting scenario is a parquet table of city-frame tracks (no sizes: typical ones per type)
with a vector map of centrelines; a sensor log has feather cuboids in the ego frame of each sweep
plus ego poses, and a map whose centrelines are averaged from the lane boundaries. Parquet/feather
need the optional extra `[real]` (pyarrow).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax.data.nuplan.features import quaternion_yaw
from gf_jax.data.real_samples.log import Log
from gf_jax.data.schema import DataError

AV2_CLASSES = {
    "vehicle": 0, "bus": 0, "pedestrian": 1, "cyclist": 2, "motorcyclist": 2,
    "REGULAR_VEHICLE": 0, "LARGE_VEHICLE": 0, "BUS": 0, "BOX_TRUCK": 0, "TRUCK": 0,
    "TRUCK_CAB": 0, "VEHICULAR_TRAILER": 0, "SCHOOL_BUS": 0, "ARTICULATED_BUS": 0,
    "MOTORCYCLE": 2, "PEDESTRIAN": 1, "BICYCLIST": 2, "MOTORCYCLIST": 2, "BICYCLE": 2,
}  # fmt: skip
# AV2 forecasting tracks carry no size: typical ones per type (length, width).
AV2_SIZES = {"vehicle": (4.5, 2.0), "bus": (12.0, 2.6), "pedestrian": (0.7, 0.7),
             "cyclist": (1.8, 0.7), "motorcyclist": (2.1, 0.8)}  # fmt: skip
CITY_NAMES = {"PIT": "pittsburgh", "MIA": "miami", "austin": "austin"}


def _arrow(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.feather
        import pyarrow.parquet
    except ImportError as e:
        raise ImportError(
            "reading the AV2 samples needs the optional extra: pip install 'gf-jax[real]'"
        ) from e
    try:
        if path.suffix == ".parquet":
            table = pyarrow.parquet.read_table(path)
        else:
            table = pyarrow.feather.read_table(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable table ({str(e).splitlines()[0]})") from e
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


def _pts(value: Any) -> np.ndarray:
    """AV2 map points: a list of {'x','y','z'} dicts, sometimes stored as its repr string."""
    if isinstance(value, str):
        value = ast.literal_eval(value)  # literals only: no code runs
    return np.array([[p["x"], p["y"]] for p in value], np.float64)


def _resample(xy: np.ndarray, n: int) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    q = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])])


def _av2_map(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    try:
        m = json.loads(path.read_text())
        lanes = []
        for seg in m["lane_segments"].values():
            if "centerline" in seg:
                lanes.append(_pts(seg["centerline"]))
            else:  # sensor-log maps: the mean of the two boundaries resampled to equal counts
                left, right = _pts(seg["left_lane_boundary"]), _pts(seg["right_lane_boundary"])
                k = max(len(left), len(right), 2)
                lanes.append(0.5 * (_resample(left, k) + _resample(right, k)))
        crosswalks = []
        for cw in m.get("pedestrian_crossings", {}).values():
            e1, e2 = _pts(cw["edge1"]), _pts(cw["edge2"])
            crosswalks.append(np.concatenate([e1, e2[::-1], e1[:1]]))
    except (OSError, ValueError, KeyError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable AV2 map ({e})") from e
    return lanes, crosswalks


def _tracks(ids: np.ndarray, frame: np.ndarray, n_frames: int, values: np.ndarray):
    """Per-row values [rows, 7] -> per-track states [A, T, 7], seen [A, T], and the track ids."""
    uniq, k = np.unique(ids, return_inverse=True)
    st = np.zeros((len(uniq), n_frames, values.shape[1]))
    seen = np.zeros((len(uniq), n_frames), bool)
    st[k, frame] = values
    seen[k, frame] = True
    return uniq, st, seen


def _fill_velocity(st: np.ndarray, seen: np.ndarray, dt: float = 0.1) -> None:
    """Finite-difference velocities (columns 3, 4) over each track's observed frames."""
    for k in range(len(st)):
        t = np.nonzero(seen[k])[0]
        if len(t) >= 2:
            st[k, t, 3] = np.gradient(st[k, t, 0], t * dt)
            st[k, t, 4] = np.gradient(st[k, t, 1], t * dt)


def av2_forecasting(folder: Path) -> Log:
    """The forecasting scenario in `folder` (parquet tracks, JSON vector map) as a Log."""
    parquet = next(folder.glob("scenario_*.parquet"), None)
    mapfile = next(folder.glob("log_map_archive_*.json"), None)
    if parquet is None or mapfile is None:
        raise DataError(f"{folder}: no scenario_*.parquet and log_map_archive_*.json")
    c = _arrow(parquet)
    n = int(c["timestep"].max()) + 1
    size = np.array([AV2_SIZES.get(str(t), (4.5, 2.0)) for t in c["object_type"]])
    vals = np.column_stack([c["position_x"], c["position_y"], c["heading"], c["velocity_x"],
                            c["velocity_y"], size])  # fmt: skip
    ids, st, seen = _tracks(c["track_id"].astype(str), c["timestep"].astype(int), n, vals)
    types = dict(zip(c["track_id"].astype(str), c["object_type"].astype(str), strict=True))
    ego = int(np.nonzero(ids == "AV")[0][0])
    others = np.arange(len(ids)) != ego
    lanes, crosswalks = _av2_map(mapfile)
    city = CITY_NAMES.get(str(c["city"][0]), str(c["city"][0]))
    return Log(folder.name, "av2", city, f"av2-{city}", np.arange(n) * 0.1, st[ego, :, :3],
               seen[ego], st[others], seen[others],
               np.array([AV2_CLASSES.get(types[i], -1) for i in ids[others]]), lanes, crosswalks)  # fmt: skip


def av2_sensor(folder: Path) -> Log:
    """The sensor log in `folder` (feather cuboids and ego poses, JSON map) as a Log."""
    ann_path = next(folder.glob("annotations*.feather"), None)
    pose_path = folder / "city_SE3_egovehicle.feather"
    mapfile = next(folder.glob("map/log_map_archive_*.json"), None)
    if ann_path is None or not pose_path.exists() or mapfile is None:
        raise DataError(f"{folder}: missing annotations, ego poses or map")
    a, p = _arrow(ann_path), _arrow(pose_path)
    stamps = np.unique(a["timestamp_ns"])
    at = {int(t): i for i, t in enumerate(p["timestamp_ns"])}
    missing = [t for t in stamps if int(t) not in at]
    if missing:
        raise DataError(f"{pose_path}: no ego pose at annotation time {missing[0]}")
    rows = np.array([at[int(t)] for t in stamps])
    e_yaw = quaternion_yaw(p["qw"][rows], p["qx"][rows], p["qy"][rows], p["qz"][rows])
    e_xy = np.column_stack([p["tx_m"][rows], p["ty_m"][rows]])
    frame = np.searchsorted(stamps, a["timestamp_ns"])
    keep = a["category"] != "EGO_VEHICLE"
    c, s = np.cos(e_yaw[frame]), np.sin(e_yaw[frame])
    x, y = a["tx_m"], a["ty_m"]
    # Cuboids are in the ego frame of their sweep: rotate by the ego yaw, add the ego position.
    gx, gy = e_xy[frame, 0] + c * x - s * y, e_xy[frame, 1] + s * x + c * y
    yaw = quaternion_yaw(a["qw"], a["qx"], a["qy"], a["qz"]) + e_yaw[frame]
    zeros = np.zeros_like(gx)
    vals = np.column_stack([gx, gy, yaw, zeros, zeros, a["length_m"], a["width_m"]])[keep]
    ids, st, seen = _tracks(a["track_uuid"][keep].astype(str), frame[keep], len(stamps), vals)
    _fill_velocity(st, seen)
    cats = dict(
        zip(a["track_uuid"][keep].astype(str), a["category"][keep].astype(str), strict=True)
    )
    lanes, crosswalks = _av2_map(mapfile)
    code = mapfile.stem.split("____")[-1].split("_")[0]
    city = CITY_NAMES.get(code, code.lower())
    ego = np.column_stack([e_xy, e_yaw])
    return Log(folder.name, "av2", city, f"av2-{city}", (stamps - stamps[0]) * 1e-9, ego,
               np.ones(len(stamps), bool), st, seen,
               np.array([AV2_CLASSES.get(cats[i], -1) for i in ids]), lanes, crosswalks)  # fmt: skip
