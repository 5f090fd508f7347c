"""nuPlan log databases read with `sqlite3` only (`NuPlanLog`), and scenario selection over logs.

A log has 8-byte BLOB tokens (given as 16 hex chars), integer microsecond timestamps, the 20 Hz
`MergedPointCloud` lidar_pc clock subsampled to 10 Hz by taking every second row, ego poses through
`lidar_pc.ego_pose_token` (rear axle, yaw from the quaternion, body-frame velocity and
acceleration), boxes from `lidar_box` (global centre, yaw, size, velocity).

Scenario selection: frames tagged with one of the wanted `scenario_tag` types in scenes 3..N-2 of
a log with a goal; the alphabetically largest allowed type per frame; a per-type cap by uniform
striding. The present is the first frame at or after tag time - 3 s (GameFormer's -3 s offset);
route lanes come from `scene.roadblock_ids`.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax.data.nuplan.config import DEFAULT_CONFIG, ExtractConfig
from gf_jax.data.nuplan.features import AGENT_CLASSES, Window, quaternion_yaw
from gf_jax.data.nuplan.maps import NuPlanMap
from gf_jax.data.schema import NUPLAN_SCENARIO_TYPES, PAST_STEPS, DataError

MERGED_LIDAR = "MergedPointCloud"
SCENARIO_OFFSET_US = 3_000_000  # GameFormer's scenarios start 3 s before the tagged frame
# The devkit lists objects grouped by type in this order (order within a type is unspecified).
CATEGORY_ORDER = (
    "vehicle", "pedestrian", "bicycle", "traffic_cone", "barrier", "czone_sign", "generic_object",
)  # fmt: skip
REQUIRED_TABLES = (
    "log", "lidar", "lidar_pc", "ego_pose", "lidar_box", "track", "category", "scene",
    "scenario_tag", "traffic_light_status",
)  # fmt: skip


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
        self._load_frames()

    def _load_frames(self) -> None:
        """The MergedPointCloud frames in timestamp order with their ego poses."""
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
        self._ego_Tx7 = np.column_stack([v[:, :2], yaw, v[:, 6:10]])

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
        rows = self.window_rows(self.row(lidar_pc_token_hex), past_s, future_s)
        return self._ego_Tx7[rows].copy()

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

    def _agents(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GameFormer-class tracks over the frames: states_AxTx7 (x, y, heading, vx, vy, length,
        width), seen_AxT and cls_A, tracks in order of first appearance."""
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
        states_AxTx7 = np.zeros((len(tracks), len(rows), 7))
        seen_AxT = np.zeros((len(tracks), len(rows)), bool)
        for k, t, (x, y, yaw, vx, vy, width, length) in recs:
            states_AxTx7[k, t] = (x, y, yaw, vx, vy, length, width)
            seen_AxT[k, t] = True
        return states_AxTx7, seen_AxT, np.array(cls, int)

    def window(self, lidar_pc_token_hex: str, nmap: NuPlanMap, cfg: ExtractConfig) -> Window:
        """Everything the GameFormer recipe needs for the scenario tagged at this frame."""
        rows = self.window_rows(self.present_row(lidar_pc_token_hex))
        ego_Tx7 = self._ego_Tx7[rows].copy()
        states_AxTx7, seen_AxT, cls_A = self._agents(rows)
        if cfg.float32_globals:  # GameFormer's quantisation of global coordinates
            ego_Tx7[:, :2] = ego_Tx7[:, :2].astype(np.float32)
            states_AxTx7[..., :2] = states_AxTx7[..., :2].astype(np.float32)
        present = _hex(self.tokens[rows[PAST_STEPS - 1]])
        lights = self.traffic_lights(present)  # read at the present frame
        route_ids = self.route_roadblocks(lidar_pc_token_hex)  # the tagged frame's scene
        xy = ego_Tx7[PAST_STEPS - 1, :2]
        lanes, tl, crosswalks, route = nmap.query(xy, lights, route_ids, cfg)
        times_T = self.timestamps_us[rows] * 1e-6
        return Window(ego_Tx7, times_T, states_AxTx7, seen_AxT, cls_A, lanes, tl, crosswalks, route)


# ---------------------------------------------------------------------------------------------
# Scenario selection over logs


@dataclasses.dataclass(frozen=True)
class Candidate:
    db: str
    token: str
    scenario_type: str
    map_name: str


def list_logs(db: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The `.db` files of a folder (sorted), or the given files; DataError naming a path that
    does not exist (a missing input must not read as "every log failed")."""
    if isinstance(db, str | os.PathLike):
        p = Path(db)
        if p.is_dir():
            found = sorted(p.glob("*.db"))
            if not found:
                raise DataError(f"{p}: no .db log files")
            return found
        paths = [p]
    else:
        paths = [Path(x) for x in db]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such nuPlan log database or folder")
    return paths


def select(
    db_paths: Sequence[Path], cfg: ExtractConfig = DEFAULT_CONFIG
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
