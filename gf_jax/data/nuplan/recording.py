"""The procedural world as a nuPlan log would record it (input of `gf_jax.data.nuplan.writer`).

`simulate(n, seed)` runs the procedural world (`gf_jax.data.synthetic`) and keeps, per scenario,
what a nuPlan log records: global UTM poses of the ego rear axle and of every observed agent at
every 10 Hz frame, signal states, the map pieces (lanes, lane connectors, crosswalks), the ego
route's roadblocks, together with the GameFormer arrays the world produces directly (`expected`), so
that a pipeline reading the written files can be checked against them. Each city gets its UTM zone;
scenarios of one city are placed `SPACING` metres apart so that their 60 m map queries never
overlap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gf_jax.data import synthetic
from gf_jax.data.schema import CITY_MAP_NAMES
from gf_jax.data.world import features, labels, signals
from gf_jax.data.world.population import BICYCLE, EGO_REAR_AXLE_TO_CENTER

# City -> (UTM zone, false origin of the first scenario, map version folder).
CITY_UTM = {
    "las_vegas": ("EPSG:32611", (664_000.0, 3_996_000.0), "9.15.1915"),
    "boston": ("EPSG:32619", (330_000.0, 4_690_000.0), "9.12.1817"),
    "pittsburgh": ("EPSG:32617", (585_000.0, 4_477_000.0), "9.17.1937"),
    "singapore": ("EPSG:32648", (365_000.0, 143_000.0), "9.17.1964"),
}
# A city mix with every nuPlan city (several UTM zones, left-hand traffic in Singapore).
CITY_MIX = (("las_vegas", 2.0), ("boston", 1.0), ("pittsburgh", 1.0), ("singapore", 1.0))
SPACING = 3000.0
DT = 0.1
PRESENT = features.P  # index of the present among the recorded frames


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


@dataclasses.dataclass
class _Run:
    """One simulated batch and the world-frame geometry every scenario record reads from."""

    sim: Any  # synthetic's simulated batch: plan, net, veh, peds, rec
    sensor_range: float
    frames: slice
    v_xy: np.ndarray  # [N, A, F, 2] vehicle box centres
    v_h: np.ndarray  # [N, A, F]
    pieces_xy: np.ndarray  # map pieces in the world frame
    rings: np.ndarray  # crosswalk rings in the world frame


def simulate(n: int, seed: int, **world_options) -> list[WorldScenario]:
    """n procedural scenarios (first attempts, no retries) with their global records."""
    cfg = synthetic.make_config(**world_options)
    index = np.arange(n)
    cities, target = synthetic.assign_cities(seed, index, cfg)
    sim, label, _, left = synthetic.simulate(seed, index, cities, target, 0, cfg)
    plan, roads = sim.plan, sim.net
    expected = features.build(plan, roads, sim.veh, sim.peds, sim.rec, cfg.sensor_range)
    # GameFormer's encoder never emits yellow: a nuPlan extraction reads it as unknown.
    lanes = expected["lanes"]
    yellow = lanes[..., 4] == 1
    lanes[yellow, 4], lanes[yellow, 6] = 0.0, 1.0
    names = labels.names(label, left)
    frames = slice(features.FIRST, features.LAST + 1)
    v_xy, v_h = features.vehicle_poses(plan, roads, sim.rec, frames)
    run = _Run(sim, cfg.sensor_range, frames, v_xy, v_h,
               features.to_world(plan.kappa, plan.left_hand, roads.map_xy),
               features.to_world(plan.kappa, plan.left_hand, roads.cw_ring))  # fmt: skip
    slots: dict[str, int] = {}
    out = []
    for i in range(n):
        c = synthetic.CITIES[cities[i]]
        slot = slots[c] = slots.get(c, -1) + 1
        sc = _scenario(run, i, slot, c, str(names[i]))
        sc.expected = {k: v[i] for k, v in expected.items()}
        out.append(sc)
    return out


def _scenario(run: _Run, i: int, slot: int, city: str, scenario_type: str) -> WorldScenario:
    """Scenario i of the run, placed at `slot` in its city's UTM map (no `expected` yet)."""
    roads = run.sim.net
    off = np.array(CITY_UTM[city][1]) + np.array([slot * SPACING, 0.0])
    e_h = run.v_h[i, 0]
    e_xy = run.v_xy[i, 0] - EGO_REAR_AXLE_TO_CENTER * np.stack([np.cos(e_h), np.sin(e_h)], -1)
    vel = np.gradient(e_xy, DT, axis=0)
    acc = np.gradient(vel, DT, axis=0)
    ego = np.column_stack([e_xy + off, e_h, _rot(vel, e_h), _rot(acc, e_h)])
    base = (slot + 1) * 100_000
    pieces = [
        Piece(
            int(base + j),
            bool(100 <= roads.map_rb[i, j] < 200 or roads.map_rb[i, j] == 202),
            base + 10_000 + int(roads.map_rb[i, j]),
            run.pieces_xy[i, j].astype(np.float64) + off,
            int(roads.map_group[i, j]),
        )
        for j in np.nonzero(roads.map_ok[i])[0]
    ]
    plan = run.sim.plan
    sig = np.stack(
        [signals.states(plan.green[i : i + 1], plan.offset[i : i + 1], f * DT)[0][0]
         for f in range(features.FIRST, features.LAST + 1)]
    )  # fmt: skip
    return WorldScenario(
        slot,
        city,
        CITY_MAP_NAMES[city],
        scenario_type,
        ego,
        _agents(run, i, e_xy, off),
        pieces,
        [run.rings[i, j] + off for j in np.nonzero(roads.cw_ok[i])[0]],
        sig,
        [base + 10_000 + int(r) for r in roads.ego_rbs[i] if r >= 0],
        {},
    )


def _agents(run: _Run, i: int, e_xy: np.ndarray, off: np.ndarray) -> list[Agent]:
    """The vehicles, bicycles and pedestrians of scenario i, seen within the sensor range."""
    plan, veh, peds, rec = run.sim.plan, run.sim.veh, run.sim.peds, run.sim.rec
    agents = []
    for k in range(1, run.v_xy.shape[1]):
        act = rec.active[run.frames, i, k] & veh.ok[i, k]
        if not act.any():
            continue
        cat = "bicycle" if veh.kind[i, k] == BICYCLE else "vehicle"
        agents.append(_agent(cat, veh.length[i, k], veh.width[i, k], run.v_xy[i, k], run.v_h[i, k],
                             act, e_xy, off, run.sensor_range))  # fmt: skip
    n_peds = peds.s.shape[1]
    p_xy, p_h = features.ped_poses(
        plan, peds, rec, run.frames, np.full(n_peds, i), np.arange(n_peds)
    )
    for j in range(n_peds):
        if peds.ok[i, j]:
            act = np.ones(len(e_xy), bool)
            size = peds.size[i, j]
            agents.append(
                _agent("pedestrian", size, size, p_xy[j], p_h[j], act, e_xy, off, run.sensor_range)
            )
    return agents


def _agent(cat, length, width, xy, h, act, ego_xy, off, sensor_range) -> Agent:
    seen = act & (np.linalg.norm(xy - ego_xy, axis=-1) <= sensor_range)
    vel = np.gradient(xy, DT, axis=0)
    return Agent(cat, float(length), float(width), xy + off, h.copy(), vel, seen)
