"""Tiny nuPlan-schema log databases and GeoPackage maps written from the procedural world (tests).

`simulate(n, seed)` runs the procedural world and keeps, per scenario, what a nuPlan log would
record (global poses of the ego rear axle and of every observed agent at every 10 Hz frame, signal
states, the map pieces, the ego route's roadblocks) together with the GameFormer arrays the world
produces directly. `write_log` turns one scenario into a `.db` with the real nuPlan tables, column
names and types (8-byte BLOB tokens, microsecond timestamps, a 20 Hz MergedPointCloud lidar_pc
clock whose odd rows are interpolated, quaternion ego poses with body-frame velocities, seven scenes
so that the tagged one is valid, extra tags the selection must ignore); `write_maps` writes one
`map.gpkg` per city (lon/lat geometry, the `meta` table naming the UTM zone) holding every
scenario's lanes, lane connectors, roadblocks, roadblock connectors and crosswalks, each scenario
placed 3 km from the last so that their 60 m map queries never overlap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gf_jax.data import synthetic
from gf_jax.data.schema import CITY_MAP_NAMES, NUPLAN_SCENARIO_TYPES
from gf_jax.data.world import features, labels, signals
from gf_jax.data.world.population import BICYCLE, EGO_REAR_AXLE_TO_CENTER

# City -> (UTM zone, false origin of the first scenario, map version folder).
CITY_UTM = {
    "las_vegas": ("EPSG:32611", (664_000.0, 3_996_000.0), "9.15.1915"),
    "boston": ("EPSG:32619", (330_000.0, 4_690_000.0), "9.12.1817"),
    "pittsburgh": ("EPSG:32617", (585_000.0, 4_477_000.0), "9.17.1937"),
    "singapore": ("EPSG:32648", (365_000.0, 143_000.0), "9.17.1964"),
}
SPACING = 3000.0
DT = 0.1
PRESENT = features.P  # index of the present among the recorded frames
TAG_ROW = 2 * PRESENT + 60  # the tagged 20 Hz row: 3 s after the present
ROWS_PER_SCENE = 30
STATUS = {signals.GREEN: "green", signals.YELLOW: "yellow", signals.RED: "red"}
CATEGORIES = ("vehicle", "bicycle", "pedestrian", "traffic_cone", "barrier", "czone_sign",
              "generic_object")  # fmt: skip


@dataclasses.dataclass
class Agent:
    category: str
    length: float
    width: float
    xy: np.ndarray  # [F, 2] box centre, UTM
    heading: np.ndarray  # [F]
    vel: np.ndarray  # [F, 2] global
    seen: np.ndarray  # [F]


@dataclasses.dataclass
class Piece:
    fid: int
    connector: bool
    roadblock: int
    xy: np.ndarray  # [K, 2] UTM
    group: int  # signal group of a connector, -1 none


@dataclasses.dataclass
class WorldScenario:
    slot: int  # position in its city map
    city: str
    map_name: str
    scenario_type: str
    ego: np.ndarray  # [F, 7] rear axle x, y, heading, body vx, vy, ax, ay (UTM)
    agents: list[Agent]
    pieces: list[Piece]
    crosswalks: list[np.ndarray]
    signal_states: np.ndarray  # [F, 2] per signal group
    route: list[int]
    expected: dict[str, np.ndarray]  # the world's own GameFormer arrays

    @property
    def frames(self) -> int:
        return len(self.ego)


def _rot(vec: np.ndarray, ang: np.ndarray) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    return np.stack([c * vec[..., 0] + s * vec[..., 1], -s * vec[..., 0] + c * vec[..., 1]], -1)


def simulate(n: int, seed: int, **world_options) -> list[WorldScenario]:
    """n procedural scenarios (first attempts, no retries) with their global records."""
    cfg = synthetic.make_config(**world_options)
    index = np.arange(n)
    cities, target = synthetic._assign(seed, index, cfg)
    sim, label, _, left = synthetic._simulate(seed, index, cities, target, 0, cfg)
    plan, roads, veh, peds, rec = sim.plan, sim.net, sim.veh, sim.peds, sim.rec
    expected = features.build(plan, roads, veh, peds, rec, cfg.sensor_range)
    # GameFormer's encoder never emits yellow: a nuPlan extraction reads it as unknown.
    lanes = expected["lanes"]
    yellow = lanes[..., 4] == 1
    lanes[yellow, 4], lanes[yellow, 6] = 0.0, 1.0
    names = labels.names(label, left)
    frames = slice(features.FIRST, features.LAST + 1)
    v_xy, v_h = features.vehicle_poses(plan, roads, rec, frames)  # [N, A, F, 2]
    pieces_xy = features._to_world(plan.kappa, plan.left_hand, roads.map_xy)
    rings = features._to_world(plan.kappa, plan.left_hand, roads.cw_ring)
    n_peds = peds.s.shape[1]
    slots: dict[str, int] = {}
    out = []
    for i in range(n):
        c = synthetic.CITIES[cities[i]]
        slot = slots[c] = slots.get(c, -1) + 1
        off = np.array(CITY_UTM[c][1]) + np.array([slot * SPACING, 0.0])
        e_h = v_h[i, 0]
        e_xy = v_xy[i, 0] - EGO_REAR_AXLE_TO_CENTER * np.stack([np.cos(e_h), np.sin(e_h)], -1)
        vel = np.gradient(e_xy, DT, axis=0)
        acc = np.gradient(vel, DT, axis=0)
        ego = np.column_stack([e_xy + off, e_h, _rot(vel, e_h), _rot(acc, e_h)])
        agents = []
        for k in range(1, v_xy.shape[1]):
            act = rec.active[frames, i, k] & veh.ok[i, k]
            if not act.any():
                continue
            cat = "bicycle" if veh.kind[i, k] == BICYCLE else "vehicle"
            agents.append(_agent(cat, veh.length[i, k], veh.width[i, k], v_xy[i, k], v_h[i, k],
                                 act, e_xy, off, cfg.sensor_range))  # fmt: skip
        p_xy, p_h = features.ped_poses(
            plan, peds, rec, frames, np.full(n_peds, i), np.arange(n_peds)
        )
        for j in range(n_peds):
            if peds.ok[i, j]:
                act = np.ones(len(e_xy), bool)
                size = peds.size[i, j]
                agents.append(
                    _agent(
                        "pedestrian", size, size, p_xy[j], p_h[j], act, e_xy, off, cfg.sensor_range
                    )
                )
        base = (slot + 1) * 100_000
        pieces = [
            Piece(
                int(base + j),
                bool(100 <= roads.map_rb[i, j] < 200 or roads.map_rb[i, j] == 202),
                base + 10_000 + int(roads.map_rb[i, j]),
                pieces_xy[i, j].astype(np.float64) + off,
                int(roads.map_group[i, j]),
            )
            for j in np.nonzero(roads.map_ok[i])[0]
        ]
        sig = np.stack(
            [signals.states(plan.green[i : i + 1], plan.offset[i : i + 1], f * DT)[0][0]
             for f in range(features.FIRST, features.LAST + 1)]
        )  # fmt: skip
        out.append(
            WorldScenario(
                slot,
                c,
                CITY_MAP_NAMES[c],
                str(names[i]),
                ego,
                agents,
                pieces,
                [rings[i, j] + off for j in np.nonzero(roads.cw_ok[i])[0]],
                sig,
                [base + 10_000 + int(r) for r in roads.ego_rbs[i] if r >= 0],
                {k: v[i] for k, v in expected.items()},
            )
        )
    return out


def _agent(cat, length, width, xy, h, act, ego_xy, off, sensor_range) -> Agent:
    seen = act & (np.linalg.norm(xy - ego_xy, axis=-1) <= sensor_range)
    vel = np.gradient(xy, DT, axis=0)
    return Agent(cat, float(length), float(width), xy + off, h.copy(), vel, seen)


# ---------------------------------------------------------------------------------------------
# Log database

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


def _tok(log: str, table: str, i: object) -> bytes:
    return hashlib.blake2b(f"{log}/{table}/{i}".encode(), digest_size=8).digest()


def _mid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * (a + b)


def _mid_angle(a: float, b: float) -> float:
    return float(a + 0.5 * np.angle(np.exp(1j * (b - a))))


def write_log(path: str | Path, sc: WorldScenario, name: str | None = None) -> str:
    """Writes the scenario as a nuPlan log database; returns the tagged lidar_pc token (hex)."""
    path = Path(path)
    name = name or path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    t = lambda table, i: _tok(name, table, i)  # noqa: E731
    log = t("log", 0)
    t0 = 1_630_000_000_000_000 + sc.slot * 10**9
    db.execute("INSERT INTO log VALUES (?,?,?,?,?,?,?)",
               (log, "veh-35", "2021-08-26", t0, name, sc.city, sc.map_name))  # fmt: skip
    lidar = t("lidar", 0)
    db.execute("INSERT INTO lidar VALUES (?,?,?,?,?,?)",
               (lidar, log, "MergedPointCloud", "lidar", b"\x00", b"\x00"))  # fmt: skip
    f = sc.frames
    rows = 2 * f - 1
    # 20 Hz: even rows are the world's frames, odd rows interpolated (never sampled at 10 Hz);
    # odd rows carry a little clock jitter.
    jitter = np.where(np.arange(rows) % 2 == 1, (np.arange(rows) % 7 - 3) * 500, 0)
    ts = t0 + np.arange(rows) * 50_000 + jitter
    ego = np.empty((rows, 7))
    ego[0::2] = sc.ego
    ego[1::2] = _mid(sc.ego[:-1], sc.ego[1:])
    ego[1::2, 2] = [_mid_angle(a, b) for a, b in zip(sc.ego[:-1, 2], sc.ego[1:, 2], strict=True)]
    scene_of = np.minimum(np.arange(rows) // ROWS_PER_SCENE, (rows - 1) // ROWS_PER_SCENE)
    n_scenes = int(scene_of.max()) + 1
    route = " ".join(map(str, sc.route))
    for s in range(n_scenes):
        goal = t("ego_pose", int(np.nonzero(scene_of == s)[0][-1]))
        db.execute("INSERT INTO scene VALUES (?,?,?,?,?)",
                   (t("scene", s), log, f"scene-{s:04d}", goal, route))  # fmt: skip
    epsg = int(CITY_UTM[sc.city][0].split(":")[1])
    for r in range(rows):
        x, y, h, vx, vy, ax, ay = ego[r]
        db.execute(
            "INSERT INTO ego_pose VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (t("ego_pose", r), int(ts[r]) + 3000, x, y, 0.0, np.cos(h / 2), 0.0, 0.0,
             np.sin(h / 2), vx, vy, 0.0, ax, ay, 0.0, 0.0, 0.0, 0.0, epsg, log),
        )  # fmt: skip
        db.execute(
            "INSERT INTO lidar_pc VALUES (?,?,?,?,?,?,?,?)",
            (t("lidar_pc", r), t("lidar_pc", r + 1) if r + 1 < rows else None,
             t("lidar_pc", r - 1) if r else None, t("ego_pose", r), lidar,
             t("scene", int(scene_of[r])), f"{name}/{r:05d}.pcd", int(ts[r])),
        )  # fmt: skip
    for c in CATEGORIES:
        db.execute("INSERT INTO category VALUES (?,?,?)", (t("category", c), c, c))
    # A traffic cone near the ego: in the log, never a GameFormer agent.
    cone = Agent("traffic_cone", 0.4, 0.4, np.repeat(sc.ego[PRESENT : PRESENT + 1, :2] + 4.0, f, 0),
                 np.zeros(f), np.zeros((f, 2)), np.ones(f, bool))  # fmt: skip
    box = 0
    for k, a in enumerate([*sc.agents, cone]):
        track = t("track", k)
        db.execute("INSERT INTO track VALUES (?,?,?,?,?)",
                   (track, t("category", a.category), a.width, a.length, 1.6))  # fmt: skip
        state = np.column_stack([a.xy, a.heading, a.vel])
        for r in range(rows):
            i, odd = divmod(r, 2)
            if not a.seen[i] or (odd and not a.seen[i + 1]):
                continue
            x, y, h, vx, vy = state[i]
            if odd:
                x, y, _, vx, vy = _mid(state[i], state[i + 1])
                h = _mid_angle(state[i, 2], state[i + 1, 2])
            db.execute(
                "INSERT INTO lidar_box VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (t("lidar_box", box), t("lidar_pc", r), track, None, None, x, y, 0.8, a.width,
                 a.length, 1.6, vx, vy, 0.0, h, 0.9),
            )  # fmt: skip
            box += 1
    connectors = [p for p in sc.pieces if p.connector and p.group >= 0]
    n_tl = 0
    for r in range(rows):
        for p in connectors:
            state = STATUS[int(sc.signal_states[r // 2, p.group])]
            db.execute("INSERT INTO traffic_light_status VALUES (?,?,?,?)",
                       (t("tl", n_tl), t("lidar_pc", r), p.fid, state))  # fmt: skip
            n_tl += 1
    tags = [(TAG_ROW, sc.scenario_type), (TAG_ROW, "on_intersection"), (10, sc.scenario_type)]
    if sc.scenario_type in NUPLAN_SCENARIO_TYPES and sc.scenario_type > "behind_long_vehicle":
        # Two allowed tags on one frame: the alphabetically larger type wins.
        tags.append((TAG_ROW, "behind_long_vehicle"))
    for k, (r, typ) in enumerate(tags):
        db.execute("INSERT INTO scenario_tag VALUES (?,?,?,?)",
                   (t("tag", k), t("lidar_pc", r), typ, None))  # fmt: skip
    db.commit()
    db.close()
    return _tok(name, "lidar_pc", TAG_ROW).hex()


# ---------------------------------------------------------------------------------------------
# Maps


def map_path(map_root: str | Path, city: str) -> Path:
    return Path(map_root) / CITY_MAP_NAMES[city] / CITY_UTM[city][2] / "map.gpkg"


def write_maps(map_root: str | Path, scenarios: list[WorldScenario]) -> list[Path]:
    """One map.gpkg per city of the scenarios, with their map pieces."""
    out = []
    for city in sorted({s.city for s in scenarios}):
        out.append(write_map(map_path(map_root, city), [s for s in scenarios if s.city == city]))
    return out


def write_map(path: Path, scenarios: list[WorldScenario]) -> Path:
    import pyogrio.raw
    import pyproj
    import shapely

    city = scenarios[0].city
    utm = CITY_UTM[city][0]
    to_ll = pyproj.Transformer.from_crs(utm, "EPSG:4326", always_xy=True)

    def ll(g):
        return shapely.transform(g, lambda xy: np.column_stack(to_ll.transform(*xy.T)))

    def strip(xy):
        # Lane areas are 10 cm strips around the centreline, so that the devkit's rule (area
        # intersects the query square) picks the same pieces as the world's (a vertex in it).
        return shapely.LineString(xy).buffer(0.05, cap_style="flat")

    pieces = [p for s in scenarios for p in s.pieces]
    lanes = [p for p in pieces if not p.connector]
    conns = [p for p in pieces if p.connector]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)

    def write(layer, geoms, fields: dict, gtype):
        wkb = shapely.to_wkb(ll(np.array(geoms, dtype=object)))
        names = list(fields)
        data = [np.asarray(fields[k]) for k in names]
        pyogrio.raw.write(path, wkb, data, names, layer=layer, driver="GPKG",
                          geometry_type=gtype, crs="EPSG:4326", append=path.exists())  # fmt: skip

    i64 = lambda xs: np.array(xs, np.int64)  # noqa: E731
    f64 = lambda xs: np.array(xs, np.float64)  # noqa: E731
    write("lanes_polygons", [strip(p.xy) for p in lanes], {
        "fid": i64([p.fid for p in lanes]), "lane_fid": i64([p.fid for p in lanes]),
        "lane_group_fid": i64([p.roadblock for p in lanes]), "lane_index": i64([0] * len(lanes)),
        "speed_limit_mps": f64([13.4] * len(lanes)),
    }, "Polygon")  # fmt: skip
    write("baseline_paths", [shapely.LineString(p.xy) for p in pieces], {
        "fid": i64(range(1, len(pieces) + 1)),
        "lane_fid": f64([np.nan if p.connector else p.fid for p in pieces]),
        "lane_connector_fid": f64([p.fid if p.connector else np.nan for p in pieces]),
        "path_type_fid": i64([0] * len(pieces)),
    }, "LineString")  # fmt: skip
    write("lane_connectors", [shapely.LineString(p.xy) for p in conns], {
        "fid": i64([p.fid for p in conns]),
        "lane_group_connector_fid": i64([p.roadblock for p in conns]),
        "intersection_fid": i64([1] * len(conns)), "turn_type_fid": i64([0] * len(conns)),
        "traffic_light_stop_line_fids": np.array(["" for _ in conns], dtype=object),
    }, "LineString")  # fmt: skip
    write("gen_lane_connectors_scaled_width_polygons",
          [shapely.LineString(p.xy).buffer(1.5) for p in conns],
          {"fid": i64([p.fid for p in conns]), "lane_connector_fid": i64([p.fid for p in conns])},
          "Polygon")  # fmt: skip
    for layer, group in (("lane_groups_polygons", lanes), ("lane_group_connectors", conns)):
        ids = sorted({p.roadblock for p in group})
        geoms = [
            shapely.MultiPolygon([strip(p.xy) for p in group if p.roadblock == rb]) for rb in ids
        ]
        write(layer, geoms, {"fid": i64(ids), "intersection_fid": i64([1] * len(ids))},
              "MultiPolygon")  # fmt: skip
    rings = [r for s in scenarios for r in s.crosswalks]
    write("crosswalks", [shapely.Polygon(r) for r in rings],
          {"fid": i64(range(1, len(rings) + 1))}, "Polygon")  # fmt: skip
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


# ---------------------------------------------------------------------------------------------
# pytest fixture (test modules bind it with `world = nuplan_fixture.world`)

CITY_MIX = (("las_vegas", 2.0), ("boston", 1.0), ("pittsburgh", 1.0), ("singapore", 1.0))
_BUILT: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """(scenarios, db dir, map root, tagged tokens) of 8 procedural scenarios, one log each;
    built once per session even when several modules bind the fixture."""
    pytest.importorskip("pyogrio")
    pytest.importorskip("pyproj")
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        scenarios = simulate(8, seed=1, city_mix=CITY_MIX)
        _BUILT[key] = (scenarios, *write_dataset(tmp_path_factory.mktemp("nuplan"), scenarios))
    return _BUILT[key]
