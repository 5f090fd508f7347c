"""Devkit-free nuPlan reader: SQLite log databases + GeoPackage maps -> GameFormer scenarios.

Follows research/nuplan_data.md (sections 1-5 and 10) without nuplan-devkit:
- `NuPlanLog(db)` reads a log with `sqlite3`: 8-byte BLOB tokens (given as 16 hex chars), integer
  microsecond timestamps, the 20 Hz `MergedPointCloud` lidar_pc clock subsampled to 10 Hz by taking
  every second row, ego poses through `lidar_pc.ego_pose_token` (rear axle, yaw from the quaternion,
  body-frame velocity and acceleration), boxes from `lidar_box` (global centre, yaw, size, velocity).
- `NuPlanMap(gpkg)` reads the vector layers with pyogrio/shapely (extra `[nuplan]`) and reprojects
  them from EPSG:4326 to the UTM zone named in the file's `meta` table.
- Scenario selection: frames tagged with one of the wanted `scenario_tag` types in scenes 3..N-2 of
  a log with a goal; the alphabetically largest allowed type per frame; a per-type cap by uniform
  striding. The present is the first frame at or after tag time - 3 s (GameFormer's -3 s offset).
- `gameformer_arrays(window)` is GameFormer's feature recipe (also used by the AV2 and nuScenes
  adapters): agents present now, nearest 20, earlier frames back-filled with the nearest later
  state, Savitzky-Golay yaw rate with its end quirk; lanes / crosswalks / route lanes within the
  60 m square sorted by minimum vertex distance, resampled in vertex-index space; traffic-light codes
  (green and red only, everything else unknown); route lanes from `scene.roadblock_ids`.
Coordinates are made relative in float64 (`ExtractConfig.float32_globals` reproduces GameFormer's
float32 quantisation of global UTM coordinates instead).

CLI: `python -m gf_jax.data.nuplan extract --db DIR --maps DIR --out DIR [--workers N]` writes
GameFormer npz files, in parallel over logs, resumable, skipping (and reporting) failed scenarios.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax import atomic
from gf_jax.data import gameformer_npz
from gf_jax.data.schema import (
    CROSSWALK_POINTS,
    FUTURE_STEPS,
    LANE_POINTS,
    LAYOUT,
    NUM_CROSSWALKS,
    NUM_LANES,
    NUM_NEIGHBORS,
    NUM_ROUTE_LANES,
    NUPLAN_SCENARIO_TYPES,
    PAST_STEPS,
    ROUTE_POINTS,
    DataError,
    ScenarioSet,
    empty_meta,
    validate_arrays,
)
from gf_jax.data.world.geometry import index_resample, polyline_heading, wrap_angle, yaw_rate

MERGED_LIDAR = "MergedPointCloud"
ROW_DT_US = 50_000  # lidar_pc row spacing the devkit assumes (20 Hz)
SCENARIO_OFFSET_US = 3_000_000  # GameFormer's scenarios start 3 s before the tagged frame
MAP_RADIUS = 60.0
AGENT_CLASSES = {"vehicle": 0, "pedestrian": 1, "bicycle": 2}
# The devkit lists objects grouped by type in this order (order within a type is unspecified).
CATEGORY_ORDER = (
    "vehicle", "pedestrian", "bicycle", "traffic_cone", "barrier", "czone_sign", "generic_object",
)  # fmt: skip
TL_CODES = {"green": 0, "red": 2}  # GameFormer encodes only these; everything else is unknown (3)
UNKNOWN_TL = 3
REQUIRED_TABLES = (
    "log", "lidar", "lidar_pc", "ego_pose", "lidar_box", "track", "category", "scene",
    "scenario_tag", "traffic_light_status",
)  # fmt: skip
MAP_LAYERS = (
    "lanes_polygons", "baseline_paths", "lane_connectors", "lane_groups_polygons",
    "lane_group_connectors", "crosswalks",
)  # fmt: skip
GEO_EXTRA = "nuplan"


def _geo() -> tuple[Any, Any, Any]:
    """pyogrio, shapely and pyproj, imported on first use (optional extra)."""
    try:
        import pyogrio.raw
        import pyproj
        import shapely
    except ImportError as e:
        raise ImportError(
            f"reading nuPlan maps needs the optional extra: pip install 'gf-jax[{GEO_EXTRA}]' "
            f"({e.name} is missing)"
        ) from e
    return pyogrio.raw, shapely, pyproj


def quaternion_yaw(qw, qx, qy, qz) -> np.ndarray:
    """Yaw as pyquaternion (and so the devkit) computes it: atan2(2(wz - xy), 1 - 2(y^2 + z^2))."""
    return np.arctan2(2.0 * (qw * qz - qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


# ---------------------------------------------------------------------------------------------
# The GameFormer recipe on a global-frame window (shared with the AV2 / nuScenes adapters)


@dataclasses.dataclass
class Window:
    """One scenario before the GameFormer recipe, in a global metric frame at 10 Hz.

    Frames: 21 past (index 20 = the present) then 80 future, T = 101.

    Attributes:
      ego_Tx7: ego rear axle x, y, heading, then vx, vy, ax, ay as recorded (body frame).
      times_T: frame times in seconds (only the past spacing is used: the yaw-rate dt).
      agents_KxTx7: x, y, heading, vx, vy (global), length, width of each track (box centre).
      seen_KxT: whether the track is observed at the frame.
      cls_K: 0 vehicle, 1 pedestrian, 2 bicycle; anything else is ignored.
      lanes: lane and lane-connector centrelines [P_i, 2]; `lane_tl` their light codes 0..3.
      crosswalks: closed crosswalk rings [P_i, 2]; route: on-route centrelines [P_i, 2].
    """

    ego_Tx7: np.ndarray
    times_T: np.ndarray
    agents_KxTx7: np.ndarray
    seen_KxT: np.ndarray
    cls_K: np.ndarray
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


def gameformer_arrays(w: Window) -> dict[str, np.ndarray]:
    """The seven GameFormer arrays (float32, no batch axis) of a window."""
    p = PAST_STEPS - 1
    ego = np.asarray(w.ego_Tx7, np.float64)
    if ego.shape != (PAST_STEPS + FUTURE_STEPS, 7):
        raise ValueError(f"ego_Tx7 must be {(PAST_STEPS + FUTURE_STEPS, 7)}, got {ego.shape}")
    o, oh = ego[p, :2].copy(), float(ego[p, 2])
    out: dict[str, np.ndarray] = {}
    past = np.concatenate(
        [
            _to_frame(ego[:PAST_STEPS, :2], o, oh),
            wrap_angle(ego[:PAST_STEPS, 2:3] - oh),
            ego[:PAST_STEPS, 3:7],
        ],
        -1,
    )
    past[-1, :3] = 0.0
    out["ego_agent_past"] = past
    out["ego_agent_future"] = np.concatenate(
        [_to_frame(ego[PAST_STEPS:, :2], o, oh), wrap_angle(ego[PAST_STEPS:, 2:3] - oh)], -1
    )

    # Agents present now (vehicles, pedestrians, bicycles), nearest first.
    nb_past = np.zeros((NUM_NEIGHBORS, PAST_STEPS, 11))
    nb_fut = np.zeros((NUM_NEIGHBORS, FUTURE_STEPS, 3))
    st, seen = np.asarray(w.agents_KxTx7, np.float64), np.asarray(w.seen_KxT, bool)
    cls = np.asarray(w.cls_K)
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
    out["neighbor_agents_past"] = nb_past
    out["neighbor_agents_future"] = nb_fut

    tl = [np.eye(4)[int(c)] for c in w.lane_tl]
    out["lanes"] = _polyline_array(w.lanes, o, oh, NUM_LANES, LANE_POINTS, tl)
    out["crosswalks"] = _polyline_array(w.crosswalks, o, oh, NUM_CROSSWALKS, CROSSWALK_POINTS)
    out["route_lanes"] = _polyline_array(w.route, o, oh, NUM_ROUTE_LANES, ROUTE_POINTS)
    return {k: np.ascontiguousarray(out[k], np.float32) for k in LAYOUT}


# ---------------------------------------------------------------------------------------------
# Log database


def _hex(token: bytes | None) -> str:
    return token.hex() if token is not None else ""


def _blob(token_hex: str, where: str) -> bytes:
    try:
        b = bytes.fromhex(token_hex)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: token {token_hex!r} is not hex") from e
    return b


class NuPlanLog:
    """One nuPlan log database, read with `sqlite3` only (read-only; no devkit).

    Loads the MergedPointCloud lidar_pc frames (timestamp order) with their ego poses up front;
    boxes, tags and traffic lights are queried on demand.
    """

    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such log database")
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a readable SQLite database ({e})") from e
        for table in REQUIRED_TABLES:
            if table not in names:
                raise DataError(f"{self.path}: missing table '{table}'")
        row = self._one("SELECT map_version, location, logfile FROM log")
        if row is None:
            raise DataError(f"{self.path}: empty log (no row in table 'log')")
        self.map_name, self.location, self.logfile = (str(x) for x in row)
        lidar = self._one("SELECT token FROM lidar WHERE channel = ?", (MERGED_LIDAR,))
        if lidar is None:
            raise DataError(f"{self.path}: no '{MERGED_LIDAR}' lidar")
        rows = self._all(
            "SELECT lp.token, lp.timestamp, lp.scene_token, ep.x, ep.y, ep.qw, ep.qx, ep.qy, ep.qz, "
            "ep.vx, ep.vy, ep.acceleration_x, ep.acceleration_y FROM lidar_pc AS lp "
            "JOIN ego_pose AS ep ON lp.ego_pose_token = ep.token "
            "WHERE lp.lidar_token = ? ORDER BY lp.timestamp",
            (lidar[0],),
        )
        if not rows:
            raise DataError(f"{self.path}: empty log (no lidar_pc frames with ego poses)")
        self.tokens: list[bytes] = [r[0] for r in rows]
        self.row_of = {t: i for i, t in enumerate(self.tokens)}
        self.timestamps_us = np.array([r[1] for r in rows], np.int64)
        self.scene_of = [r[2] for r in rows]
        v = np.array([r[3:] for r in rows], np.float64)
        if not np.isfinite(v).all():
            raise DataError(f"{self.path}: ego_pose: non-finite values")
        yaw = quaternion_yaw(v[:, 2], v[:, 3], v[:, 4], v[:, 5])
        self._ego = np.column_stack([v[:, :2], yaw, v[:, 6:10]])  # [F, 7]

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: query failed ({e})") from e

    def _one(self, sql: str, args: Sequence[Any] = ()) -> tuple | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> NuPlanLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- frames ---------------------------------------------------------------------------------

    def row(self, lidar_pc_token_hex: str) -> int:
        """Index of a MergedPointCloud lidar_pc among the log's frames (timestamp order)."""
        i = self.row_of.get(_blob(lidar_pc_token_hex, str(self.path)))
        if i is None:
            raise DataError(f"{self.path}: no MergedPointCloud lidar_pc {lidar_pc_token_hex}")
        return i

    def window_rows(self, row: int, past_s: float = 2.0, future_s: float = 8.0) -> np.ndarray:
        """Rows of the 10 Hz frames around `row`: every second row by count (not by time)."""
        n_past, n_fut = round(past_s / 0.1), round(future_s / 0.1)
        rows = row + 2 * np.arange(-n_past, n_fut + 1)
        if rows[0] < 0 or rows[-1] >= len(self.tokens):
            raise DataError(
                f"{self.path}: frame {_hex(self.tokens[row])} lacks {past_s} s of history or "
                f"{future_s} s of future"
            )
        return rows

    def ego_states(
        self, lidar_pc_token_hex: str, past_s: float = 2.0, future_s: float = 8.0
    ) -> np.ndarray:
        """(T, 7) global [x, y, heading, vx, vy, ax, ay] of the rear axle at 10 Hz around the frame:
        pose from its ego_pose row, velocity and acceleration in the body frame as recorded."""
        return self._ego[self.window_rows(self.row(lidar_pc_token_hex), past_s, future_s)].copy()

    def _boxes(self, rows: Sequence[int]) -> list[tuple]:
        """lidar_box rows (frame row, track hex, category, x, y, yaw, vx, vy, width, length) of the
        given frames, grouped by category in the devkit's order."""
        tokens = [self.tokens[r] for r in rows]
        found: list[tuple] = []
        for a in range(0, len(tokens), 500):  # SQLite caps the number of bound parameters
            chunk = tokens[a : a + 500]
            found += self._all(
                "SELECT lb.lidar_pc_token, lb.track_token, c.name, lb.x, lb.y, lb.yaw, lb.vx, "
                "lb.vy, lb.width, lb.length FROM lidar_box AS lb "
                "JOIN track AS t ON lb.track_token = t.token "
                "JOIN category AS c ON t.category_token = c.token "
                f"WHERE lb.lidar_pc_token IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
        found.sort(key=lambda r: rank.get(r[2], len(rank)))
        return [(self.row_of[r[0]], _hex(r[1]), *r[2:]) for r in found]

    def tracked_objects(self, lidar_pc_token_hex: str) -> list[dict[str, Any]]:
        """Every box of a frame (all categories): track_token, category, x, y, heading, vx, vy
        (global), width, length."""
        keys = ("track_token", "category", "x", "y", "heading", "vx", "vy", "width", "length")
        rows = self._boxes([self.row(lidar_pc_token_hex)])
        return [dict(zip(keys, r[1:], strict=True)) for r in rows]

    def traffic_lights(self, lidar_pc_token_hex: str) -> dict[int, str]:
        """lane_connector_id -> status at a frame (frames may have none)."""
        rows = self._all(
            "SELECT lane_connector_id, status FROM traffic_light_status WHERE lidar_pc_token = ?",
            (_blob(lidar_pc_token_hex, str(self.path)),),
        )
        return {int(c): str(s) for c, s in rows}

    def route_roadblocks(self, lidar_pc_token_hex: str) -> list[str]:
        """`scene.roadblock_ids` of the scene holding the frame (space separated in the files)."""
        scene = self.scene_of[self.row(lidar_pc_token_hex)]
        r = self._one("SELECT roadblock_ids FROM scene WHERE token = ?", (scene,))
        return str(r[0] or "").split() if r else []

    # -- scenarios ------------------------------------------------------------------------------

    def scenarios(self, types: Iterable[str] = NUPLAN_SCENARIO_TYPES) -> list[tuple[str, str]]:
        """(tagged lidar_pc token hex, scenario type) of the log's candidate scenarios, by time.

        Scenes are ranked by name and the first and last two dropped (they lack history or
        future); scenes without a goal pose are dropped; a frame with several allowed tags keeps
        the alphabetically largest type (as the devkit does)."""
        scenes = self._all("SELECT token, name, goal_ego_pose_token FROM scene ORDER BY name")
        valid = {t for t, _, goal in scenes[2:-2] if goal is not None}
        wanted = set(types)
        best: dict[bytes, str] = {}
        for tok, typ in self._all("SELECT lidar_pc_token, type FROM scenario_tag"):
            i = self.row_of.get(tok)
            if i is None or typ not in wanted or self.scene_of[i] not in valid:
                continue
            best[tok] = max(best.get(tok, ""), str(typ))
        return [(_hex(t), best[t]) for t in sorted(best, key=self.row_of.__getitem__)]

    def present_row(self, lidar_pc_token_hex: str) -> int:
        """The scenario's first iteration: the first frame at or after tag time - 3 s."""
        i = self.row(lidar_pc_token_hex)
        start = self.timestamps_us[i] - SCENARIO_OFFSET_US
        return int(np.searchsorted(self.timestamps_us, start, side="left"))

    def window(self, lidar_pc_token_hex: str, nmap: NuPlanMap, cfg: ExtractConfig) -> Window:
        """Everything the GameFormer recipe needs for the scenario tagged at this frame."""
        rows = self.window_rows(self.present_row(lidar_pc_token_hex))
        ego = self._ego[rows].copy()
        index = {int(r): t for t, r in enumerate(rows)}
        tracks: dict[str, int] = {}
        cls: list[int] = []
        recs: list[tuple[int, int, tuple]] = []
        for r in self._boxes(rows):
            cat = str(r[2])
            if cat not in AGENT_CLASSES:
                continue
            k = tracks.setdefault(r[1], len(tracks))
            if k == len(cls):
                cls.append(AGENT_CLASSES[cat])
            recs.append((k, index[r[0]], r[3:]))
        states = np.zeros((len(tracks), len(rows), 7))
        seen = np.zeros((len(tracks), len(rows)), bool)
        for k, t, (x, y, yaw, vx, vy, width, length) in recs:
            states[k, t] = (x, y, yaw, vx, vy, length, width)
            seen[k, t] = True
        if cfg.float32_globals:  # GameFormer's quantisation of global coordinates
            ego[:, :2] = ego[:, :2].astype(np.float32)
            states[..., :2] = states[..., :2].astype(np.float32)
        present = _hex(self.tokens[rows[PAST_STEPS - 1]])
        lights = self.traffic_lights(present)  # read at the present frame
        route_ids = self.route_roadblocks(lidar_pc_token_hex)  # the tagged frame's scene
        lanes, tl, crosswalks, route = nmap.query(ego[PAST_STEPS - 1, :2], lights, route_ids, cfg)
        return Window(
            ego,
            self.timestamps_us[rows] * 1e-6,
            states,
            seen,
            np.array(cls, int),
            lanes,
            tl,
            crosswalks,
            route,
        )


# ---------------------------------------------------------------------------------------------
# Map


class NuPlanMap:
    """The vector layers of one `map.gpkg` that GameFormer uses, reprojected to UTM.

    Needs the optional extra `[nuplan]` (pyogrio, shapely, pyproj)."""

    def __init__(self, gpkg_path: str | os.PathLike):
        self.path = Path(gpkg_path)
        raw, shapely, pyproj = _geo()
        self._shapely = shapely
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such map file")
        self.crs = self._projected_crs()
        self.layers: dict[str, dict[str, Any]] = {}
        for layer in MAP_LAYERS:
            try:
                meta, fids, geom, fields = raw.read(self.path, layer=layer, return_fids=True)
            except Exception as e:  # pyogrio raises several types for missing layers/bad files
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise DataError(
                    f"{self.path}: missing or unreadable map layer '{layer}' ({msg})"
                ) from e
            geoms = shapely.from_wkb(geom)
            src = meta.get("crs") or "EPSG:4326"
            to_utm = pyproj.Transformer.from_crs(src, self.crs, always_xy=True)
            geoms = shapely.transform(
                geoms, lambda xy, t=to_utm: np.column_stack(t.transform(*xy.T))
            )
            cols = {str(n): np.asarray(v) for n, v in zip(meta["fields"], fields, strict=True)}
            self.layers[layer] = {
                "fid": np.asarray(fids).astype(np.int64),
                "geom": geoms,
                "cols": cols,
                "tree": shapely.STRtree(geoms),
            }
        # Baseline paths (centrelines) by lane and by lane connector.
        bp = self.layers["baseline_paths"]
        self.baseline: dict[tuple[str, str], np.ndarray] = {}
        for kind in ("lane_fid", "lane_connector_fid"):
            col = bp["cols"].get(kind)
            if col is None:
                raise DataError(f"{self.path}: baseline_paths: missing column '{kind}'")
            for i, v in enumerate(col):
                key = _id(v)
                if key:
                    self.baseline[(kind, key)] = shapely.get_coordinates(bp["geom"][i])
        self.lanes_of_group = self._group("lanes_polygons", "lane_group_fid", "lane_fid")
        self.connectors_of_group = self._group("lane_connectors", "lane_group_connector_fid", None)

    def _projected_crs(self) -> str:
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: no readable 'meta' table ({e})") from e
        crs = rows.get("projectedCoordSystem")
        if not crs:
            raise DataError(f"{self.path}: meta table lacks 'projectedCoordSystem'")
        return str(crs)

    def _group(self, layer: str, group_col: str, id_col: str | None) -> dict[str, list[str]]:
        lay = self.layers[layer]
        if group_col not in lay["cols"]:
            raise DataError(f"{self.path}: {layer}: missing column '{group_col}'")
        ids = lay["cols"][id_col] if id_col in lay["cols"] else lay["fid"]
        out: dict[str, list[str]] = {}
        for g, i in zip(lay["cols"][group_col], ids, strict=True):
            out.setdefault(_id(g), []).append(_id(i))
        return out

    def _near(self, layer: str, box: Any) -> list[int]:
        lay = self.layers[layer]
        return sorted(lay["tree"].query(box, predicate="intersects").tolist())

    def _centreline(self, kind: str, ident: str) -> np.ndarray | None:
        return self.baseline.get((kind, ident))

    def query(
        self, xy: np.ndarray, lights: dict[int, str], route_ids: Sequence[str], cfg: ExtractConfig
    ) -> tuple[list[np.ndarray], list[int], list[np.ndarray], list[np.ndarray]]:
        """Map elements intersecting the axis-aligned square xy +- radius: lane and connector
        centrelines with light codes, crosswalk rings, and the centrelines of the route's
        roadblocks from the first one in the square up to the first gap."""
        r = cfg.map_radius
        box = self._shapely.box(xy[0] - r, xy[1] - r, xy[0] + r, xy[1] + r)
        lanes: list[np.ndarray] = []
        tl: list[int] = []
        lp = self.layers["lanes_polygons"]
        lane_ids = lp["cols"].get("lane_fid", lp["fid"])
        for i in self._near("lanes_polygons", box):
            c = self._centreline("lane_fid", _id(lane_ids[i]))
            if c is not None:
                lanes.append(c)
                tl.append(UNKNOWN_TL)
        lc = self.layers["lane_connectors"]
        for i in self._near("lane_connectors", box):
            fid = int(lc["fid"][i])
            c = self._centreline("lane_connector_fid", str(fid))
            if c is not None:
                lanes.append(c)
                tl.append(TL_CODES.get(lights.get(fid, ""), UNKNOWN_TL))
        cw = self.layers["crosswalks"]
        crosswalks = [
            self._shapely.get_coordinates(self._shapely.get_exterior_ring(cw["geom"][i]))
            for i in self._near("crosswalks", box)
        ]
        in_view = {str(int(self.layers["lane_groups_polygons"]["fid"][i]))
                   for i in self._near("lane_groups_polygons", box)}  # fmt: skip
        in_view |= {str(int(self.layers["lane_group_connectors"]["fid"][i]))
                    for i in self._near("lane_group_connectors", box)}  # fmt: skip
        kept: list[str] = []
        for rid in route_ids:  # prune the route: first roadblock in view up to the first gap
            if rid in in_view:
                kept.append(rid)
            elif kept:
                break
        route: list[np.ndarray] = []
        for rid in kept:
            if rid in self.lanes_of_group:
                parts = [self._centreline("lane_fid", i) for i in self.lanes_of_group[rid]]
            else:
                parts = [
                    self._centreline("lane_connector_fid", i)
                    for i in self.connectors_of_group.get(rid, [])
                ]
            route += [c for c in parts if c is not None]
        if cfg.float32_globals:
            lanes, crosswalks, route = (
                [a.astype(np.float32) for a in group] for group in (lanes, crosswalks, route)
            )
        return lanes, tl, crosswalks, route


def _id(v: Any) -> str:
    """Map ids as strings ('' for null), whether stored as integers, floats or text."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


@functools.lru_cache(maxsize=8)
def load_map(gpkg_path: str) -> NuPlanMap:
    """A map, read once per process."""
    return NuPlanMap(gpkg_path)


def find_map(map_root: str | os.PathLike, map_name: str) -> Path:
    """`<map_root>/<map_name>/<version>/map.gpkg` (the newest version folder)."""
    root = Path(map_root)
    found = sorted((root / map_name).glob("*/map.gpkg"))
    if not found:
        raise DataError(f"{root}: no map {map_name}/<version>/map.gpkg")
    return found[-1]


# ---------------------------------------------------------------------------------------------
# Extraction


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


@dataclasses.dataclass(frozen=True)
class Candidate:
    db: str
    token: str
    scenario_type: str
    map_name: str


def list_logs(db: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The `.db` files of a folder (sorted), or the given files."""
    if isinstance(db, str | os.PathLike):
        p = Path(db)
        if p.is_dir():
            found = sorted(p.glob("*.db"))
            if not found:
                raise DataError(f"{p}: no .db log files")
            return found
        return [p]
    return [Path(x) for x in db]


def select(
    db_paths: Sequence[Path], cfg: ExtractConfig = ExtractConfig()
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Candidate scenarios of all logs after the per-type cap, and (log, error) of bad logs."""
    found: list[Candidate] = []
    failed: list[tuple[str, str]] = []
    for path in db_paths:
        try:
            with NuPlanLog(path) as log:
                found += [
                    Candidate(str(path), tok, typ, log.map_name)
                    for tok, typ in log.scenarios(cfg.scenario_types)
                ]
        except DataError as e:
            failed.append((str(path), str(e)))
    if cfg.per_type is None:
        return found, failed
    keep: list[Candidate] = []
    for typ in cfg.scenario_types:
        of = [c for c in found if c.scenario_type == typ]
        step = max(1, len(of) // cfg.per_type)
        keep += of[::step][: cfg.per_type]
    order = {id(c): i for i, c in enumerate(found)}
    return sorted(keep, key=lambda c: order[id(c)]), failed


def _extract_log(
    db: str, cands: list[Candidate], map_root: str, cfg: ExtractConfig, out: str | None
) -> list[tuple[Candidate, dict[str, np.ndarray] | None, str]]:
    """Features of one log's scenarios: (candidate, arrays or None when written to `out`, error).
    With `out`, files already there are skipped and each new file is written atomically."""
    results: list[tuple[Candidate, dict[str, np.ndarray] | None, str]] = []
    todo = cands
    if out is not None:
        todo = [c for c in cands if not (Path(out) / _file(c)).exists()]
        results += [(c, None, "") for c in cands if c not in todo]
    if not todo:
        return results
    try:
        log = NuPlanLog(db)
        nmap = load_map(str(find_map(map_root, log.map_name)))
    except (DataError, ImportError) as e:
        return results + [(c, None, str(e)) for c in todo]
    with log:
        for c in todo:
            try:
                arrays = gameformer_arrays(log.window(c.token, nmap, cfg))
                validate_arrays(arrays, f"{db}:{c.token}", batched=False)
            except (DataError, ValueError) as e:
                results.append((c, None, f"{db}: scenario {c.token}: {e}".splitlines()[0]))
                continue
            if out is not None:
                gameformer_npz.write_file(Path(out) / _file(c), arrays, c.map_name, c.token)
                results.append((c, None, ""))
            else:
                results.append((c, arrays, ""))
    return results


def _file(c: Candidate) -> str:
    return gameformer_npz.file_name(c.map_name, c.token)


def _run(
    cands: list[Candidate],
    map_root: str | os.PathLike,
    cfg: ExtractConfig,
    out: str | None,
    workers: int,
    progress: bool,
) -> list[tuple[Candidate, dict[str, np.ndarray] | None, str]]:
    """Extraction over logs, on `workers` processes (1: in this process), with a progress bar."""
    from tqdm.auto import tqdm

    by_log: dict[str, list[Candidate]] = {}
    for c in cands:
        by_log.setdefault(c.db, []).append(c)
    jobs = [(db, cs, str(map_root), cfg, out) for db, cs in by_log.items()]
    bar = tqdm(total=len(cands), desc="nuPlan scenarios", unit="scn", disable=not progress)
    results: list = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results += _extract_log(*job)
            bar.update(len(job[1]))
    else:
        # Forking a process that runs JAX threads is unsafe: spawn then.
        threaded = "jax" in sys.modules or threading.active_count() > 1
        ctx = multiprocessing.get_context("spawn" if threaded else "fork")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as ex:
            futures = [ex.submit(_extract_log, *job) for job in jobs]
            for f in concurrent.futures.as_completed(futures):
                part = f.result()
                results += part
                bar.update(len(part))
    bar.close()
    order = {(c.db, c.token): i for i, c in enumerate(cands)}
    return sorted(results, key=lambda r: order[(r[0].db, r[0].token)])


def extract(
    db_paths: str | os.PathLike | Sequence[str | os.PathLike],
    map_root: str | os.PathLike,
    *,
    config: ExtractConfig = ExtractConfig(),
    workers: int = 1,
    progress: bool = False,
) -> ScenarioSet:
    """The selected scenarios of the logs as a validated ScenarioSet (failed ones left out)."""
    paths = list_logs(db_paths)
    cands, _ = select(paths, config)
    ok = [(c, a) for c, a, err in _run(cands, map_root, config, None, workers, progress) if not err]
    if not ok:
        raise DataError(f"{paths[0].parent}: no nuPlan scenario could be extracted")
    return _scenario_set([c for c, _ in ok], [a for _, a in ok], str(paths[0].parent))


def _scenario_set(cands: list[Candidate], arrays: list[dict], source: str) -> ScenarioSet:
    n = len(cands)
    meta = empty_meta(
        n,
        map_name=np.array([c.map_name for c in cands], str),
        token=np.array([c.token for c in cands], str),
        city=np.array([gameformer_npz.city_of_map(c.map_name) for c in cands], str),
        scenario_type=np.array([c.scenario_type for c in cands], str),
    )
    stacked = {k: np.stack([a[k] for a in arrays]) for k in LAYOUT}
    return ScenarioSet(stacked, meta, source).validate()


@dataclasses.dataclass
class ExtractReport:
    written: int
    skipped: int  # already there (resumed)
    failed: list[tuple[str, str]]  # (log or scenario, one-line error)
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.written} scenarios written, {self.skipped} already present, "
            f"{len(self.failed)} failed ({self.seconds:.1f} s)"
        )


def extract_to_folder(
    db_paths: str | os.PathLike | Sequence[str | os.PathLike],
    map_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: ExtractConfig = ExtractConfig(),
    workers: int = 1,
    progress: bool = True,
) -> ExtractReport:
    """Writes `<out>/<map_name>_<token>.npz` per selected scenario plus the metadata sidecar.

    Resumable: existing files are kept. Files are written atomically, so an interrupted run never
    leaves a partial file behind."""
    import time

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cands, failed = select(list_logs(db_paths), config)
    before = {c for c in cands if (out / _file(c)).exists()}
    results = _run(cands, map_root, config, str(out), workers, progress)
    failed += [(f"{c.db}:{c.token}", err) for c, _, err in results if err]
    sidecar = gameformer_npz._read_sidecar(out)
    for c, _, err in results:
        if not err:
            sidecar[_file(c)] = {
                "city": gameformer_npz.city_of_map(c.map_name),
                "scenario_type": c.scenario_type,
                "corrupted": False,
                "log": Path(c.db).stem,  # the dataset cache splits by log
            }
    atomic.write_json(out / gameformer_npz.META_FILE, sidecar)
    ok = sum(1 for _, _, err in results if not err)
    return ExtractReport(ok - len(before), len(before), failed, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gf_jax.data.nuplan", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="write GameFormer npz files from nuPlan logs and maps")
    ex.add_argument("--db", required=True, help="folder of nuPlan .db logs (or one .db file)")
    ex.add_argument("--maps", required=True, help="map root holding <map_name>/<version>/map.gpkg")
    ex.add_argument("--out", required=True, help="output folder of <map_name>_<token>.npz files")
    ex.add_argument("--workers", type=int, default=1, help="processes (parallel over logs)")
    ex.add_argument("--per-type", type=int, default=1000, help="cap per scenario type (0: none)")
    ex.add_argument("--types", nargs="*", default=None, help="scenario types (default: the 14)")
    ex.add_argument("--float32-globals", action="store_true", help="GameFormer's float32 quirk")
    ex.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg = ExtractConfig(
        scenario_types=tuple(args.types) if args.types else NUPLAN_SCENARIO_TYPES,
        per_type=args.per_type or None,
        float32_globals=args.float32_globals,
    )
    try:
        report = extract_to_folder(
            args.db, args.maps, args.out, config=cfg, workers=args.workers,
            progress=not args.no_progress,
        )  # fmt: skip
    except (DataError, ImportError) as e:
        print(e, file=sys.stderr)
        return 1
    for where, err in report.failed:
        print(f"skipped {where}: {err}", file=sys.stderr)
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
