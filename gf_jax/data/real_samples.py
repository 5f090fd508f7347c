"""Adapters for the small real driving samples: Argoverse 2 and nuScenes-mini -> ScenarioSets.

Reads `../shared/data/real_driving_samples/` (see its README): the AV2 forecasting scenario (parquet,
city-frame tracks, vector map with centrelines), the AV2 sensor logs (feather cuboids in the ego
frame of each sweep plus ego poses; centrelines averaged from the lane boundaries), and the ten
nuScenes-mini scenes in ScenarioNet format (pickles, read with a restricted unpickler that only
rebuilds numpy arrays and builtin containers). Every log is already at 10 Hz; a scenario is an anchor
every `stride` frames with 2 s of past and 8 s of future, turned into the GameFormer layout by
`nuplan.gameformer_arrays`: ego frame at the anchor, the ego pose as the rear axle, lanes and
crosswalks with a vertex in the 60 m square, no traffic-light information (every lane unknown),
route lanes = lanes the ego passes along (within 1.5 m and 45 degrees) from now to the end of its
future. AV2 parquet/feather need the optional extra `[real]` (pyarrow).

Licence: the samples and anything derived from them (cached splits, npz files, pictures) are
CC BY-NC-SA 4.0 (Argoverse 2: (c) 2022 Argo AI, LLC; nuScenes: Motional). `LICENCE_NOTE` is written
next to every derived file; derived data is never stored inside the package.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gf_jax.data.nuplan import MAP_RADIUS, UNKNOWN_TL, Window, gameformer_arrays, quaternion_yaw
from gf_jax.data.schema import FUTURE_STEPS, LAYOUT, PAST_STEPS, DataError, ScenarioSet, empty_meta

DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/real_driving_samples"
DEFAULT_STRIDE = 10  # one anchor per second
LICENCE_FILE = "LICENCE_CC-BY-NC-SA-4.0.txt"
LICENCE_NOTE = (
    "Derived from real driving samples, licensed CC BY-NC-SA 4.0 (attribution, non-commercial,\n"
    "share-alike): Argoverse 2 (c) 2022 Argo AI, LLC (github.com/argoverse/av2-api test data) and\n"
    "nuScenes v1.0-mini (Motional; ScenarioNet conversion, github.com/metadriverse/scenarionet).\n"
    "This derived data carries the same licence; do not use it commercially.\n"
    "https://creativecommons.org/licenses/by-nc-sa/4.0/\n"
)
ROUTE_DIST = 1.5  # m from the ego path to count a lane as driven along
ROUTE_ANGLE = np.pi / 4

AV2_CLASSES = {
    "vehicle": 0, "bus": 0, "pedestrian": 1, "cyclist": 2, "motorcyclist": 2,
    "REGULAR_VEHICLE": 0, "LARGE_VEHICLE": 0, "BUS": 0, "BOX_TRUCK": 0, "TRUCK": 0,
    "TRUCK_CAB": 0, "VEHICULAR_TRAILER": 0, "SCHOOL_BUS": 0, "ARTICULATED_BUS": 0,
    "MOTORCYCLE": 2, "PEDESTRIAN": 1, "BICYCLIST": 2, "MOTORCYCLIST": 2, "BICYCLE": 2,
}  # fmt: skip
# AV2 forecasting tracks carry no size: typical ones per type (length, width).
AV2_SIZES = {"vehicle": (4.5, 2.0), "bus": (12.0, 2.6), "pedestrian": (0.7, 0.7),
             "cyclist": (1.8, 0.7), "motorcyclist": (2.1, 0.8)}  # fmt: skip
NUSCENES_CLASSES = {"VEHICLE": 0, "PEDESTRIAN": 1, "CYCLIST": 2}
CITY_NAMES = {"PIT": "pittsburgh", "MIA": "miami", "austin": "austin"}


@dataclasses.dataclass
class Log:
    """A whole recording at 10 Hz in a global metric frame.

    Attributes:
      name: log or scene id (scenario tokens are `<name>_<frame>`); source: 'av2' or 'nuscenes'.
      ego_Tx3: ego rear axle x, y, heading; ego_ok_T: frames with a valid ego pose.
      agents_KxTx7: x, y, heading, vx, vy, length, width; seen_KxT; cls_K (0..2, -1 ignored).
      lanes, crosswalks: centrelines [P, 2] and closed rings [P, 2].
    """

    name: str
    source: str
    city: str
    map_name: str
    times_T: np.ndarray
    ego_Tx3: np.ndarray
    ego_ok_T: np.ndarray
    agents_KxTx7: np.ndarray
    seen_KxT: np.ndarray
    cls_K: np.ndarray
    lanes: list[np.ndarray]
    crosswalks: list[np.ndarray]


# ---------------------------------------------------------------------------------------------
# Safe loading


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers only; any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)  # numpy 2 renamed it
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike) -> Any:
    """A ScenarioNet pickle through the restricted unpickler; DataError naming the file."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: unreadable or unsafe pickle ({e})") from e


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


# ---------------------------------------------------------------------------------------------
# Sources -> Logs


def _tracks(ids: np.ndarray, frame: np.ndarray, n_frames: int, values: np.ndarray):
    """Per-row values [R, 7] -> per-track states [K, T, 7], seen [K, T], and the track ids."""
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


def nuscenes(path: Path) -> Log:
    d = load_pickle(path)
    try:
        meta = d["metadata"]
        tracks = d["tracks"]
        ego_id = meta["sdc_id"]
        n = int(d["length"])
        names = [k for k in tracks if k != ego_id]
        st = np.zeros((len(names), n, 7))
        seen = np.zeros((len(names), n), bool)
        for k, name in enumerate(names):
            s = tracks[name]["state"]
            st[k] = np.column_stack([s["position"][:, :2], s["heading"], s["velocity"][:, :2],
                                     s["length"][:, :1], s["width"][:, :1]])  # fmt: skip
            seen[k] = np.asarray(s["valid"]) > 0
        e = tracks[ego_id]["state"]
        ego = np.column_stack([e["position"][:, :2], e["heading"]])
        lanes, crosswalks = [], []
        for f in d["map_features"].values():
            if str(f["type"]).startswith("LANE") and len(f.get("polyline", ())) >= 2:
                lanes.append(np.asarray(f["polyline"], np.float64)[:, :2])
            elif str(f["type"]) == "CROSSWALK" and len(f.get("polygon", ())) >= 3:
                ring = np.asarray(f["polygon"], np.float64)[:, :2]
                crosswalks.append(np.concatenate([ring, ring[:1]]))
        map_name = str(meta.get("map", ""))
        cls = np.array([NUSCENES_CLASSES.get(str(tracks[k]["type"]), -1) for k in names])
        times = np.asarray(meta.get("ts", np.arange(n) * 0.1), np.float64)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{path}: unexpected ScenarioNet content ({e!r})") from e
    city = "singapore" if map_name.startswith("singapore") else map_name.split("-")[0]
    return Log(path.stem.replace("sd_nuscenes_v1.0-mini_", ""), "nuscenes", city, map_name, times,
               ego, np.asarray(e["valid"]) > 0, st, seen, cls, lanes, crosswalks)  # fmt: skip


def logs(root: str | os.PathLike = DEFAULT_DIR) -> Iterator[Log]:
    """Every recording of the samples folder, in a fixed order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: real driving samples folder not found")
    found = 0
    for folder in sorted((root / "av2" / "forecasting").glob("*/")):
        found += 1
        yield av2_forecasting(folder)
    for folder in sorted((root / "av2" / "sensor_logs").glob("*/")):
        found += 1
        yield av2_sensor(folder)
    for path in sorted((root / "nuscenes_mini_scenarionet").glob("*.pkl")):
        found += 1
        yield nuscenes(path)
    if not found:
        raise DataError(f"{root}: no AV2 or nuScenes samples inside")


# ---------------------------------------------------------------------------------------------
# Logs -> scenarios


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
            ego[sl], log.times_T[sl], log.agents_KxTx7[:, sl], log.seen_KxT[:, sl], log.cls_K,
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


@functools.lru_cache(maxsize=2)
def _load(root: str, stride: int) -> ScenarioSet:
    parts = [s for log in logs(root) if (s := scenarios(log, stride)) is not None]
    if not parts:
        raise DataError(f"{root}: the real samples yield no scenario")
    from gf_jax.data.schema import concat

    return concat(parts, f"real-samples:{root}")


def load(root: str | os.PathLike = DEFAULT_DIR, *, stride: int = DEFAULT_STRIDE) -> ScenarioSet:
    """All scenarios of the real samples (validated; cached per process)."""
    return _load(str(Path(root).resolve()), int(stride))


def groups(s: ScenarioSet) -> np.ndarray:
    """The log / scene each scenario comes from (scenarios of one log overlap in time)."""
    return np.array([t.rsplit("_", 1)[0] for t in s.meta["token"]], str)


def write_licence(folder: str | os.PathLike) -> Path:
    """Puts the CC BY-NC-SA note next to derived files."""
    from gf_jax import atomic

    return atomic.write_text(Path(folder) / LICENCE_FILE, LICENCE_NOTE)


# ---------------------------------------------------------------------------------------------
# CLI


def preview(out: str | os.PathLike, *, root: str | os.PathLike = DEFAULT_DIR, per_log: int = 1):
    """One picture per log (its first `per_log` scenarios) plus a contact sheet and the licence."""
    from gf_jax import viz

    s = load(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = groups(s)
    picks = [i for name in dict.fromkeys(g) for i in np.nonzero(g == name)[0][:per_log]]
    paths = []
    for i in picks:
        p = out / f"{s.meta['scenario_type'][i]}_{s.meta['token'][i]}.png"
        viz.save_scenarios(s, [i], p, cols=1, panel=6.5, dpi=110)
        paths.append(p)
    sheet = Path(viz.save_scenarios(s, picks, out / "contact_sheet.png", cols=5))
    write_licence(out)
    return paths, sheet


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m gf_jax.data.real_samples", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="write PNG pictures of the real-sample scenarios")
    pv.add_argument("--out", required=True)
    pv.add_argument("--root", default=str(DEFAULT_DIR))
    pv.add_argument("--per-log", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        paths, sheet = preview(args.out, root=args.root, per_log=args.per_log)
    except (DataError, ImportError) as e:
        print(e, file=sys.stderr)
        return 1
    s = load(args.root)
    kinds, n = np.unique(s.meta["scenario_type"], return_counts=True)
    counts = {str(k): int(v) for k, v in zip(kinds, n, strict=True)}
    print(f"{len(s)} scenarios from {len(set(groups(s)))} logs {counts}")
    print(f"wrote {len(paths)} pictures and {sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
