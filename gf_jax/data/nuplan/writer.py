"""Write nuPlan-schema log databases (`.db`) and GeoPackage maps (`map.gpkg`) from the procedural
world, to test a nuPlan pipeline end to end without real nuPlan data.

    from gf_jax.data.nuplan import recording, writer
    world = recording.simulate(8, seed=1, city_mix=recording.CITY_MIX)
    db_dir, map_root, tokens = writer.write_dataset("runs/fake_nuplan", world)
    # then: python -m gf_jax.data.nuplan extract --db <db_dir> --maps <map_root> --out DIR

`write_log` turns one scenario into a `.db` with the real nuPlan tables, column names and types
(8-byte BLOB tokens, microsecond timestamps, a 20 Hz MergedPointCloud lidar_pc clock whose odd rows
are interpolated, quaternion ego poses with body-frame velocities, seven scenes so that the tagged
one is valid, extra tags the selection must ignore, a traffic cone that is never a GameFormer
agent); `write_maps` writes one `map.gpkg` per city (lon/lat geometry, the `meta` table naming the
UTM zone) holding every scenario's lanes, lane connectors, roadblocks, roadblock connectors and
crosswalks. Reading the files back with `NuPlanLog` / `extract` gives each scenario's
`WorldScenario.expected` arrays (to ~1 cm). Maps need the optional extra `[nuplan]`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

from gf_jax.data.nuplan.maps import geo_modules
from gf_jax.data.nuplan.recording import CITY_UTM, PRESENT, Agent, Piece, WorldScenario
from gf_jax.data.schema import CITY_MAP_NAMES, NUPLAN_SCENARIO_TYPES
from gf_jax.data.world import signals

TAG_ROW = 2 * PRESENT + 60  # the tagged 20 Hz row: 3 s after the present
ROWS_PER_SCENE = 30
STATUS = {signals.GREEN: "green", signals.YELLOW: "yellow", signals.RED: "red"}
CATEGORIES = ("vehicle", "bicycle", "pedestrian", "traffic_cone", "barrier", "czone_sign",
              "generic_object")  # fmt: skip

SCHEMA = """
CREATE TABLE log (token BLOB NOT NULL PRIMARY KEY, vehicle_name TEXT, date TEXT,
    timestamp INTEGER, logfile TEXT, location TEXT, map_version TEXT);
CREATE TABLE lidar (token BLOB NOT NULL PRIMARY KEY, log_token BLOB, channel TEXT, model TEXT,
    translation BLOB, rotation BLOB);
CREATE TABLE ego_pose (token BLOB NOT NULL PRIMARY KEY, timestamp INTEGER, x REAL, y REAL, z REAL,
    qw REAL, qx REAL, qy REAL, qz REAL, vx REAL, vy REAL, vz REAL, acceleration_x REAL,
    acceleration_y REAL, acceleration_z REAL, angular_rate_x REAL, angular_rate_y REAL,
    angular_rate_z REAL, epsg INTEGER, log_token BLOB);
CREATE TABLE scene (token BLOB NOT NULL PRIMARY KEY, log_token BLOB, name TEXT,
    goal_ego_pose_token BLOB, roadblock_ids TEXT);
CREATE TABLE lidar_pc (token BLOB NOT NULL PRIMARY KEY, next_token BLOB, prev_token BLOB,
    ego_pose_token BLOB, lidar_token BLOB, scene_token BLOB, filename TEXT, timestamp INTEGER);
CREATE TABLE category (token BLOB NOT NULL PRIMARY KEY, name TEXT, description TEXT);
CREATE TABLE track (token BLOB NOT NULL PRIMARY KEY, category_token BLOB, width REAL,
    length REAL, height REAL);
CREATE TABLE lidar_box (token BLOB NOT NULL PRIMARY KEY, lidar_pc_token BLOB, track_token BLOB,
    next_token BLOB, prev_token BLOB, x REAL, y REAL, z REAL, width REAL, length REAL,
    height REAL, vx REAL, vy REAL, vz REAL, yaw REAL, confidence REAL);
CREATE TABLE scenario_tag (token BLOB NOT NULL PRIMARY KEY, lidar_pc_token BLOB, type TEXT,
    agent_track_token BLOB);
CREATE TABLE traffic_light_status (token BLOB NOT NULL PRIMARY KEY, lidar_pc_token BLOB,
    lane_connector_id INTEGER, status TEXT);
CREATE INDEX idx_lidar_box_pc ON lidar_box (lidar_pc_token);
"""


def token(log: str, table: str, i: object) -> bytes:
    """The deterministic 8-byte token of row `i` of `table` in the log named `log`."""
    return hashlib.blake2b(f"{log}/{table}/{i}".encode(), digest_size=8).digest()


def _mid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * (a + b)


def _mid_angle(a: float, b: float) -> float:
    return float(a + 0.5 * np.angle(np.exp(1j * (b - a))))


class _LogWriter:
    """Inserts one scenario's rows; `t(table, i)` is the row's token in this log."""

    def __init__(self, db: sqlite3.Connection, name: str, sc: WorldScenario):
        self.db, self.name, self.sc = db, name, sc
        self.rows = 2 * sc.frames - 1  # 20 Hz: the world's frames on even rows
        self.log = self.t("log", 0)
        self.lidar = self.t("lidar", 0)

    def t(self, table: str, i: object) -> bytes:
        return token(self.name, table, i)

    def header(self, t0: int) -> None:
        sc = self.sc
        self.db.execute("INSERT INTO log VALUES (?,?,?,?,?,?,?)",
                        (self.log, "veh-35", "2021-08-26", t0, self.name, sc.city, sc.map_name))  # fmt: skip
        self.db.execute("INSERT INTO lidar VALUES (?,?,?,?,?,?)",
                        (self.lidar, self.log, "MergedPointCloud", "lidar", b"\x00", b"\x00"))  # fmt: skip

    def frames(self, t0: int) -> None:
        """Scenes, ego poses and lidar_pc rows on the 20 Hz clock."""
        sc, rows, t = self.sc, self.rows, self.t
        # Odd rows are interpolated (never sampled at 10 Hz) and carry a little clock jitter.
        jitter = np.where(np.arange(rows) % 2 == 1, (np.arange(rows) % 7 - 3) * 500, 0)
        ts = t0 + np.arange(rows) * 50_000 + jitter
        ego = np.empty((rows, 7))
        ego[0::2] = sc.ego
        ego[1::2] = _mid(sc.ego[:-1], sc.ego[1:])
        ego[1::2, 2] = [
            _mid_angle(a, b) for a, b in zip(sc.ego[:-1, 2], sc.ego[1:, 2], strict=True)
        ]
        scene_of = np.minimum(np.arange(rows) // ROWS_PER_SCENE, (rows - 1) // ROWS_PER_SCENE)
        route = " ".join(map(str, sc.route))
        for s in range(int(scene_of.max()) + 1):
            goal = t("ego_pose", int(np.nonzero(scene_of == s)[0][-1]))
            self.db.execute("INSERT INTO scene VALUES (?,?,?,?,?)",
                            (t("scene", s), self.log, f"scene-{s:04d}", goal, route))  # fmt: skip
        epsg = int(CITY_UTM[sc.city][0].split(":")[1])
        for r in range(rows):
            x, y, h, vx, vy, ax, ay = ego[r]
            self.db.execute(
                "INSERT INTO ego_pose VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (t("ego_pose", r), int(ts[r]) + 3000, x, y, 0.0, np.cos(h / 2), 0.0, 0.0,
                 np.sin(h / 2), vx, vy, 0.0, ax, ay, 0.0, 0.0, 0.0, 0.0, epsg, self.log),
            )  # fmt: skip
            self.db.execute(
                "INSERT INTO lidar_pc VALUES (?,?,?,?,?,?,?,?)",
                (t("lidar_pc", r), t("lidar_pc", r + 1) if r + 1 < rows else None,
                 t("lidar_pc", r - 1) if r else None, t("ego_pose", r), self.lidar,
                 t("scene", int(scene_of[r])), f"{self.name}/{r:05d}.pcd", int(ts[r])),
            )  # fmt: skip

    def boxes(self) -> None:
        """Categories, tracks and their lidar boxes, plus a traffic cone near the ego (in the log, never a
        GameFormer agent)."""
        sc, f, t = self.sc, self.sc.frames, self.t
        for c in CATEGORIES:
            self.db.execute("INSERT INTO category VALUES (?,?,?)", (t("category", c), c, c))
        cone = Agent("traffic_cone", 0.4, 0.4, np.repeat(sc.ego[PRESENT : PRESENT + 1, :2] + 4.0, f, 0),
                     np.zeros(f), np.zeros((f, 2)), np.ones(f, bool))  # fmt: skip
        box = 0
        for k, a in enumerate([*sc.agents, cone]):
            track = t("track", k)
            self.db.execute("INSERT INTO track VALUES (?,?,?,?,?)",
                            (track, t("category", a.category), a.width, a.length, 1.6))  # fmt: skip
            state = np.column_stack([a.xy, a.heading, a.vel])
            for r in range(self.rows):
                i, odd = divmod(r, 2)
                if not a.seen[i] or (odd and not a.seen[i + 1]):
                    continue
                x, y, h, vx, vy = state[i]
                if odd:
                    x, y, _, vx, vy = _mid(state[i], state[i + 1])
                    h = _mid_angle(state[i, 2], state[i + 1, 2])
                self.db.execute(
                    "INSERT INTO lidar_box VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (t("lidar_box", box), t("lidar_pc", r), track, None, None, x, y, 0.8, a.width,
                     a.length, 1.6, vx, vy, 0.0, h, 0.9),
                )  # fmt: skip
                box += 1

    def lights_and_tags(self) -> None:
        """Traffic-light states of signalised connectors at every row, and the scenario tags."""
        sc, t = self.sc, self.t
        connectors = [p for p in sc.pieces if p.connector and p.group >= 0]
        n_tl = 0
        for r in range(self.rows):
            for p in connectors:
                state = STATUS[int(sc.signal_states[r // 2, p.group])]
                self.db.execute("INSERT INTO traffic_light_status VALUES (?,?,?,?)",
                                (t("tl", n_tl), t("lidar_pc", r), p.fid, state))  # fmt: skip
                n_tl += 1
        tags = [(TAG_ROW, sc.scenario_type), (TAG_ROW, "on_intersection"), (10, sc.scenario_type)]
        if sc.scenario_type in NUPLAN_SCENARIO_TYPES and sc.scenario_type > "behind_long_vehicle":
            # Two allowed tags on one frame: the alphabetically larger type wins.
            tags.append((TAG_ROW, "behind_long_vehicle"))
        for k, (r, typ) in enumerate(tags):
            self.db.execute("INSERT INTO scenario_tag VALUES (?,?,?,?)",
                            (t("tag", k), t("lidar_pc", r), typ, None))  # fmt: skip


def write_log(path: str | Path, sc: WorldScenario, name: str | None = None) -> str:
    """Writes the scenario as a nuPlan log database; returns the tagged lidar_pc token (hex)."""
    path = Path(path)
    name = name or path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    w = _LogWriter(db, name, sc)
    t0 = 1_630_000_000_000_000 + sc.slot * 10**9
    w.header(t0)
    w.frames(t0)
    w.boxes()
    w.lights_and_tags()
    db.commit()
    db.close()
    return token(name, "lidar_pc", TAG_ROW).hex()


# ---------------------------------------------------------------------------------------------
# Maps


def map_path(map_root: str | Path, city: str) -> Path:
    """`<map_root>/<map_name>/<version>/map.gpkg` of a city, as `find_map` looks for it."""
    return Path(map_root) / CITY_MAP_NAMES[city] / CITY_UTM[city][2] / "map.gpkg"


def write_maps(map_root: str | Path, scenarios: list[WorldScenario]) -> list[Path]:
    """One map.gpkg per city of the scenarios, with their map pieces."""
    out = []
    for city in sorted({s.city for s in scenarios}):
        out.append(write_map(map_path(map_root, city), [s for s in scenarios if s.city == city]))
    return out


class _MapWriter:
    """Appends layers to one GeoPackage, turning UTM geometry into lon/lat."""

    def __init__(self, path: Path, utm: str):
        raw, self.shapely, pyproj = geo_modules()
        self.raw, self.path = raw, path
        self.to_ll = pyproj.Transformer.from_crs(utm, "EPSG:4326", always_xy=True)

    def strip(self, xy: np.ndarray):
        # Lane areas are 10 cm strips around the centreline, so that the devkit's rule (area
        # intersects the query square) picks the same pieces as the world's (a vertex in it).
        return self.shapely.LineString(xy).buffer(0.05, cap_style="flat")

    def layer(self, name: str, geoms: list, fields: dict, gtype: str) -> None:
        ll = self.shapely.transform(
            np.array(geoms, dtype=object),
            lambda xy: np.column_stack(self.to_ll.transform(*xy.T)),
        )
        names = list(fields)
        data = [np.asarray(fields[k]) for k in names]
        self.raw.write(self.path, self.shapely.to_wkb(ll), data, names, layer=name, driver="GPKG",
                       geometry_type=gtype, crs="EPSG:4326", append=self.path.exists())  # fmt: skip


def _i64(xs) -> np.ndarray:
    return np.array(xs, np.int64)


def _f64(xs) -> np.ndarray:
    return np.array(xs, np.float64)


def _lane_layers(w: _MapWriter, pieces: list[Piece]) -> None:
    """Lane areas, baseline paths (of every piece), lane connectors and their areas."""
    shapely = w.shapely
    lanes = [p for p in pieces if not p.connector]
    conns = [p for p in pieces if p.connector]
    w.layer("lanes_polygons", [w.strip(p.xy) for p in lanes], {
        "fid": _i64([p.fid for p in lanes]), "lane_fid": _i64([p.fid for p in lanes]),
        "lane_group_fid": _i64([p.roadblock for p in lanes]), "lane_index": _i64([0] * len(lanes)),
        "speed_limit_mps": _f64([13.4] * len(lanes)),
    }, "Polygon")  # fmt: skip
    w.layer("baseline_paths", [shapely.LineString(p.xy) for p in pieces], {
        "fid": _i64(range(1, len(pieces) + 1)),
        "lane_fid": _f64([np.nan if p.connector else p.fid for p in pieces]),
        "lane_connector_fid": _f64([p.fid if p.connector else np.nan for p in pieces]),
        "path_type_fid": _i64([0] * len(pieces)),
    }, "LineString")  # fmt: skip
    w.layer("lane_connectors", [shapely.LineString(p.xy) for p in conns], {
        "fid": _i64([p.fid for p in conns]),
        "lane_group_connector_fid": _i64([p.roadblock for p in conns]),
        "intersection_fid": _i64([1] * len(conns)), "turn_type_fid": _i64([0] * len(conns)),
        "traffic_light_stop_line_fids": np.array(["" for _ in conns], dtype=object),
    }, "LineString")  # fmt: skip
    w.layer("gen_lane_connectors_scaled_width_polygons",
            [shapely.LineString(p.xy).buffer(1.5) for p in conns],
            {"fid": _i64([p.fid for p in conns]), "lane_connector_fid": _i64([p.fid for p in conns])},
            "Polygon")  # fmt: skip


def write_map(path: Path, scenarios: list[WorldScenario]) -> Path:
    """One city's map.gpkg holding the map pieces of all its scenarios (they share the city)."""
    city = scenarios[0].city
    utm = CITY_UTM[city][0]
    w = _MapWriter(path, utm)
    pieces = [p for s in scenarios for p in s.pieces]
    lanes = [p for p in pieces if not p.connector]
    conns = [p for p in pieces if p.connector]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _lane_layers(w, pieces)
    for layer, group in (("lane_groups_polygons", lanes), ("lane_group_connectors", conns)):
        ids = sorted({p.roadblock for p in group})
        geoms = [
            w.shapely.MultiPolygon([w.strip(p.xy) for p in group if p.roadblock == rb])
            for rb in ids
        ]
        w.layer(layer, geoms, {"fid": _i64(ids), "intersection_fid": _i64([1] * len(ids))},
                "MultiPolygon")  # fmt: skip
    rings = [r for s in scenarios for r in s.crosswalks]
    w.layer("crosswalks", [w.shapely.Polygon(r) for r in rings],
            {"fid": _i64(range(1, len(rings) + 1))}, "Polygon")  # fmt: skip
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("geographicCoordSystem", "epsg:4326"), ("projectedCoordSystem", utm.lower()),
            ("version", CITY_UTM[city][2]),
        ])  # fmt: skip
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier) "
                   "VALUES ('meta', 'attributes', 'meta')")  # fmt: skip
    return path


def write_dataset(root: str | Path, scenarios: list[WorldScenario]) -> tuple[Path, Path, list]:
    """`root/db/*.db` (one log per scenario) and `root/maps`; returns (db dir, map root, tokens)."""
    root = Path(root)
    tokens = [
        write_log(root / "db" / f"2021.08.26.10.00.00_veh-35_{i:05d}_{i + 1:05d}.db", s)
        for i, s in enumerate(scenarios)
    ]
    write_maps(root / "maps", scenarios)
    return root / "db", root / "maps", tokens
