"""The procedural multi-agent driving world: `generate(n, seed=...)` -> a validated ScenarioSet.

Scenarios are built by `gf_jax.data.world` (private): a recipe per wanted scenario type, a lane
graph (straight multi-lane roads, signalised crossroads, T-junctions, on-ramp merges, crosswalks)
in one of four city styles (Singapore drives on the left), traffic simulated at 10 Hz (ACC/IDM car
following, MOBIL lane changes, signals, yielding, pedestrians, cyclists, an expert ego), scenario
types read from what happened, optional label noise, and the GameFormer feature layout. Everything
is vectorised over chunks of scenarios (chunks run on worker processes for large builds); each
scenario draws from its own seed, so it does not depend on the chunk or process it was built in.

CLI: `python -m gf_jax.data.synthetic preview --n 6 --out DIR [--seed S] [--city C] [--type T]`
writes one PNG per scenario and a contact sheet.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax import cli
from gf_jax.config import CITY_MIX_NUPLAN
from gf_jax.data.schema import (
    ARRAY_KEYS,
    CITIES,
    CITY_MAP_NAMES,
    LAYOUT,
    ScenarioSet,
    empty_meta,
)
from gf_jax.data.world import (
    features,
    labels,
    noise,
    pedestrians,
    population,
    recipes,
    roads,
    traffic,
)
from gf_jax.data.world.cities import city_table
from gf_jax.data.world.draws import Draws

WORLD_VERSION = 1
SCENARIO_TYPES = recipes.SCENARIO_TYPES

# Roughly even over the 13 types, a little more of the everyday ones (GameFormer caps every
# nuPlan type at the same count, so its training set is close to balanced).
DEFAULT_SCENARIO_MIX: tuple[tuple[str, float], ...] = (
    ("following_lane_with_lead", 0.11),
    ("near_multiple_vehicles", 0.09),
    ("stationary_in_traffic", 0.08),
    ("stopping_with_lead", 0.08),
    ("starting_straight_traffic_light_intersection_traversal", 0.08),
    ("starting_left_turn", 0.08),
    ("starting_right_turn", 0.08),
    ("changing_lane", 0.08),
    ("high_magnitude_speed", 0.06),
    ("low_magnitude_speed", 0.06),
    ("behind_long_vehicle", 0.06),
    ("waiting_for_pedestrian_to_cross", 0.07),
    ("high_lateral_acceleration", 0.07),
)


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Options of the procedural world (all have defaults; `generate` takes them as keywords).

    Attributes:
      noise_fraction: share of scenarios whose ego future is corrupted (exactly round(f * n)).
      city_mix: (city, weight) pairs; cities from `schema.CITIES`. Default: nuPlan's composition.
      scenario_mix: (scenario type, weight) pairs; types from `SCENARIO_TYPES`. Each scenario
        aims for a type drawn from this mix; its label is what the simulation actually showed.
      sensor_range: metres around the ego within which other agents are observed.
      retries: re-simulations (fresh draws) of a scenario that missed its aimed-for type.
      chunk_size: scenarios simulated together (memory vs. numpy overhead).
      workers: processes building chunks in parallel; 0 = automatic (one per chunk, at most 4 and
        the number of CPUs; none below 512 scenarios). Results do not depend on it.
    """

    noise_fraction: float = 0.0
    city_mix: tuple[tuple[str, float], ...] = CITY_MIX_NUPLAN
    scenario_mix: tuple[tuple[str, float], ...] = DEFAULT_SCENARIO_MIX
    sensor_range: float = 80.0
    retries: int = 2
    chunk_size: int = 512
    workers: int = 0

    def validate(self) -> WorldConfig:
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ValueError(
                f"WorldConfig: noise_fraction must be in [0, 1], got {self.noise_fraction}"
            )
        for name, mix, allowed in (
            ("city_mix", self.city_mix, CITIES),
            ("scenario_mix", self.scenario_mix, SCENARIO_TYPES),
        ):
            bad = [k for k, _ in mix if k not in allowed]
            if bad:
                raise ValueError(
                    f"WorldConfig: {name} has unknown entries {bad}; choose from {allowed}"
                )
            if any(w < 0 for _, w in mix) or sum(w for _, w in mix) <= 0:
                raise ValueError(f"WorldConfig: {name} weights must be >= 0 and not all 0: {mix}")
        if self.sensor_range <= 0 or self.retries < 0 or self.chunk_size < 1 or self.workers < 0:
            raise ValueError(
                f"WorldConfig: invalid sensor_range/retries/chunk_size/workers in {self}"
            )
        return self


PRESETS: dict[str, WorldConfig] = {
    "nuplan": WorldConfig(),
    "train": WorldConfig(noise_fraction=0.05),
    "balanced_cities": WorldConfig(city_mix=tuple((c, 1.0) for c in CITIES)),
    "intersections": WorldConfig(
        scenario_mix=(
            ("starting_left_turn", 1.0),
            ("starting_right_turn", 1.0),
            ("starting_straight_traffic_light_intersection_traversal", 1.0),
            ("waiting_for_pedestrian_to_cross", 1.0),
            ("stationary_in_traffic", 1.0),
        )
    ),
}


def _as_pairs(mix: Any) -> tuple[tuple[str, float], ...]:
    items = mix.items() if isinstance(mix, Mapping) else mix
    return tuple((str(k), float(w)) for k, w in items)


def make_config(**world_options: Any) -> WorldConfig:
    """A validated WorldConfig from keyword options (mixes may be dicts or sequences of pairs)."""
    fields = {f.name for f in dataclasses.fields(WorldConfig)}
    unknown = sorted(set(world_options) - fields)
    if unknown:
        raise TypeError(f"unknown world option(s) {unknown}; known: {sorted(fields)}")
    opts = dict(world_options)
    for key in ("city_mix", "scenario_mix"):
        if key in opts:
            opts[key] = _as_pairs(opts[key])
    return WorldConfig(**opts).validate()


def token(seed: int, index: int) -> str:
    """16 hex characters, deterministic in (seed, index)."""
    return hashlib.blake2b(f"gf-jax-world:{seed}:{index}".encode(), digest_size=8).hexdigest()


def generate(n: int, *, seed: int, **world_options: Any) -> ScenarioSet:
    """`n` scenarios of the procedural world in the GameFormer layout, validated.

    Args:
      n: number of scenarios.
      seed: the same seed gives identical arrays; scenario i depends only on (seed, i) and the
        options (noise choices depend on n).
      **world_options: fields of `WorldConfig` (noise_fraction, city_mix, scenario_mix, ...).
    """
    config = make_config(**world_options)
    if n < 0:
        raise ValueError(f"generate: n must be >= 0, got {n}")
    seed = int(seed)
    index = np.arange(n)
    city, target = assign_cities(seed, index, config)
    jobs = [
        (
            seed,
            index[a : a + config.chunk_size],
            city[a : a + config.chunk_size],
            target[a : a + config.chunk_size],
            config,
        )
        for a in range(0, n, config.chunk_size)
    ]
    # Worker processes pay off from a few hundred scenarios on (a fork costs ~0.1 s, a spawn ~2 s).
    workers = config.workers or (min(4, os.cpu_count() or 1, len(jobs)) if n >= 512 else 1)
    parts = _run_parallel(jobs, workers) if workers > 1 and len(jobs) > 1 else None
    if parts is None:
        parts = [_chunk_job(j) for j in jobs]
    arrays = {
        k: np.concatenate([p[0][k] for p in parts]) if parts else _empty(k) for k in ARRAY_KEYS
    }
    types = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, str)

    corrupted = np.zeros(n, bool)
    if config.noise_fraction > 0 and n:
        rng = np.random.default_rng([seed, 0x5EED])
        chosen = noise.choose(n, config.noise_fraction, rng)
        arrays["ego_agent_future"] = noise.corrupt(arrays["ego_agent_future"], chosen, rng)
        corrupted[chosen] = True
    city_names = np.array(CITIES)[city] if n else np.zeros(0, str)
    meta = empty_meta(
        n,
        map_name=np.array([CITY_MAP_NAMES[c] for c in city_names], dtype=str).reshape(n),
        token=np.array([token(seed, i) for i in index], dtype=str).reshape(n),
        city=city_names.astype(str),
        scenario_type=types.astype(str),
        corrupted=corrupted,
    )
    return ScenarioSet(arrays, meta, f"synthetic(seed={seed})").validate()


def _empty(key: str) -> np.ndarray:
    return np.zeros((0, *LAYOUT[key][0]), np.float32)


def assign_cities(seed: int, index: np.ndarray, config: WorldConfig):
    """City and aimed-for scenario type of each scenario, from its own stream."""
    u = np.array([np.random.default_rng([seed, int(i), 1 << 20]).random(2) for i in index]).reshape(
        -1, 2
    )
    cw = np.array([dict(config.city_mix).get(c, 0.0) for c in CITIES])
    tw = np.array([dict(config.scenario_mix).get(t, 0.0) for t in SCENARIO_TYPES])
    city = np.searchsorted(np.cumsum(cw) / cw.sum(), u[:, 0], side="right").clip(0, len(CITIES) - 1)
    target = np.searchsorted(np.cumsum(tw) / tw.sum(), u[:, 1], side="right").clip(0, len(tw) - 1)
    # Zero-weight categories never come out of the rounding at the top end.
    city = np.where(cw[city] > 0, city, np.argmax(cw))
    target = np.where(tw[target] > 0, target, np.argmax(tw))
    return city, target


@dataclasses.dataclass
class _Sim:
    """One simulated attempt of a chunk: everything the feature conversion needs."""

    plan: Any
    net: Any
    veh: Any
    peds: Any
    rec: Any

    def rows(self, rows: np.ndarray) -> _Sim:
        if len(rows) == len(self.plan):
            return self
        take = lambda obj, axis=0: type(obj)(  # noqa: E731
            **{
                f.name: np.take(getattr(obj, f.name), rows, axis=axis)
                for f in dataclasses.fields(obj)
            }
        )
        return _Sim(
            self.plan.subset(rows),
            take(self.net),
            take(self.veh),
            take(self.peds),
            take(self.rec, 1),
        )


def simulate(seed: int, index, city, target, attempt: int, config: WorldConfig):
    """Simulates scenarios and reads their types; (sim, label index, hit target, left-handed)."""
    left = city_table("left_hand")[city].astype(bool)
    sim_t = recipes.sim_target(target, left)
    d = Draws(seed, index, attempt)
    plan = recipes.make_plan(index, sim_t, city, d)
    net = roads.build(plan)
    veh = population.place_vehicles(plan, net, d)
    peds = pedestrians.place_peds(plan, net, d)
    rec = traffic.simulate(plan, net, veh, peds, d.uniform(shape=(population.N_VEHICLES,)))
    cond = labels.conditions(plan, net, rec, veh.length, veh.kind)
    label, hit = labels.choose(cond, sim_t)
    return _Sim(plan, net, veh, peds, rec), label, hit, left


def _run_parallel(jobs: list, workers: int):
    """Chunks on worker processes, in order; None if processes cannot be used here.

    Forked workers start instantly, but forking a process with threads (JAX) is unsafe, so then
    they are spawned; spawning fails in a script without a `__main__` guard, and the caller falls
    back to building in this process.
    """
    threaded = "jax" in sys.modules or threading.active_count() > 1
    ctx = multiprocessing.get_context("spawn" if threaded else "fork")
    try:
        with concurrent.futures.ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=ctx
        ) as pool:
            return list(pool.map(_chunk_job, jobs))
    except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError) as e:
        warnings.warn(
            f"synthetic.generate: worker processes unavailable ({e}); building serially",
            stacklevel=3,
        )
        return None


def _chunk_job(job) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return _chunk(*job)


def _chunk(seed, index, city, target, config: WorldConfig):
    """One chunk: simulate; re-simulate (fresh draws) the scenarios that missed their type; convert
    each scenario's final attempt (its hit, or the last try) to the GameFormer layout."""
    n = len(index)
    arrays = {k: np.zeros((n, *LAYOUT[k][0]), np.float32) for k in ARRAY_KEYS}
    names = np.zeros(n, dtype=object)
    pending = np.arange(n)
    for attempt in range(config.retries + 1):
        sim, label, hit, left = simulate(
            seed, index[pending], city[pending], target[pending], attempt, config
        )
        final = hit | (attempt == config.retries)
        rows = np.nonzero(final)[0]
        if len(rows):
            sub = sim.rows(rows)
            feats = features.build(
                sub.plan, sub.net, sub.veh, sub.peds, sub.rec, config.sensor_range
            )
            for k in ARRAY_KEYS:
                arrays[k][pending[rows]] = feats[k]
            names[pending[rows]] = labels.names(label[rows], left[rows])
        pending = pending[~final]
        if not len(pending):
            break
    return arrays, names.astype(str)


# ---------------------------------------------------------------------------------------------
# CLI


def _check_preview(args: argparse.Namespace) -> None:
    """Every flag of `preview`, before any scenario is simulated."""
    if args.n < 1:
        raise cli.UsageError(f"--n {args.n}: must be at least 1 scenario")
    if args.seed < 0:
        raise cli.UsageError(f"--seed {args.seed}: must be >= 0")
    if args.city is not None and args.city not in CITIES:
        raise cli.UsageError(f"--city {args.city}: unknown city; choose from {', '.join(CITIES)}")
    if args.type is not None and args.type not in SCENARIO_TYPES:
        raise cli.UsageError(f"--type {args.type}: unknown scenario type; see --help")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out}: exists and is not a folder")


def _preview(args: argparse.Namespace) -> int:
    from gf_jax import viz

    opts: dict[str, Any] = {}
    if args.city:
        opts["city_mix"] = ((args.city, 1.0),)
    if args.type:
        opts["scenario_mix"] = ((args.type, 1.0),)
    s = generate(args.n, seed=args.seed, **opts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(s)):
        p = out / f"scenario_{i:03d}_{s.meta['scenario_type'][i]}.png"
        viz.save_scenarios(s, [i], p, cols=1, panel=6.5, dpi=120, signals=True)
        paths.append(p)
    sheet = out / "contact_sheet.png"
    viz.save_scenarios(s, list(range(len(s))), sheet, signals=True)
    print(f"wrote {len(paths)} scenario pictures and {sheet}")
    return 0


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m gf_jax.data.synthetic", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="write PNG pictures of generated scenarios")
    pv.add_argument("--n", type=int, default=6, help="scenarios to draw (>= 1)")
    pv.add_argument("--out", required=True, help="folder for the PNGs (created)")
    pv.add_argument("--seed", type=int, default=0, help="seed of the world (>= 0)")
    pv.add_argument("--city", default=None, help=f"one of {', '.join(CITIES)}")
    pv.add_argument(
        "--type",
        default=None,
        help=f"aim every scenario at this scenario type: {', '.join(SCENARIO_TYPES)}",
    )
    args = parser.parse_args(argv)
    _check_preview(args)
    return _preview(args)


if __name__ == "__main__":
    raise SystemExit(main())
