"""Data throughput: procedural-world builds, GameFormer npz writes and reads, cache memory-map loads,
and nuPlan extraction (scenarios/s per worker count) on a test database written from the world.

    python experiments/bench_data.py [--n 7148] [--nuplan-logs 8] [--workers 1 2] [--out runs/bench/data.json]

The default n is the paper's split sizes together (5,148 + 1,000 + 1,000). The nuPlan database is
written from the procedural world by `gf_jax.data.nuplan.writer` (one log per scenario plus city
maps); it needs the `[nuplan]` extra and is skipped without it (`--nuplan-logs 0` skips it too).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from experiments import benchlib, options
from gf_jax import cli
from gf_jax.data import gameformer_npz, store, synthetic


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_data.py", __doc__, raw_text=True)
    positive = options.positive_int
    p.add_argument("--n", type=positive, default=7148, help="scenarios to build (paper total)")
    p.add_argument("--npz-n", type=positive, default=1000, help="scenarios written/read as npz")
    p.add_argument("--seed", type=options.non_negative_int, default=0)
    p.add_argument("--nuplan-logs", type=options.non_negative_int, default=8,
                   help="logs in the nuPlan test database (0: skip)")  # fmt: skip
    p.add_argument("--workers", type=positive, nargs="*", default=[1, 2],
                   help="nuPlan worker counts")  # fmt: skip
    p.add_argument("--out", default="runs/bench/data.json")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)

    rows = nuplan_rows(args.nuplan_logs, args.workers, args.seed) if args.nuplan_logs else []
    t, world = benchlib.timed(
        lambda: synthetic.generate(args.n, seed=args.seed, noise_fraction=0.05)
    )
    rows.append({"stage": "synthetic.generate", "n": args.n, "seconds": t, "scn_per_s": args.n / t})

    subset = world.subset(range(min(args.npz_n, len(world))))
    m = len(subset)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "npz"
        t, _ = benchlib.timed(lambda: gameformer_npz.write_folder(subset, folder))
        rows.append({"stage": "npz write", "n": m, "seconds": t, "scn_per_s": m / t})
        t, _ = benchlib.timed(lambda: gameformer_npz.read_folder(folder), repeats=2)
        rows.append({"stage": "npz read", "n": m, "seconds": t, "scn_per_s": m / t})

        cache = Path(tmp) / "cache"
        t, _ = benchlib.timed(lambda: store.save(world, cache))
        rows.append({"stage": "cache write", "n": args.n, "seconds": t, "scn_per_s": args.n / t})

        def touch_all():
            s = store.load(cache)
            return sum(float(a[:, ..., 0].sum()) for a in s.arrays.values())

        t, _ = benchlib.timed(lambda: store.load(cache), repeats=3)
        rows.append(
            {"stage": "cache mmap open", "n": args.n, "seconds": t, "scn_per_s": args.n / t}
        )
        t, _ = benchlib.timed(touch_all, repeats=2)
        rows.append(
            {"stage": "cache mmap read all", "n": args.n, "seconds": t, "scn_per_s": args.n / t}
        )

    print(benchlib.table(rows, ["stage", "n", "seconds", "scn_per_s"]))
    path = benchlib.write_record(args.out, "data", rows, vars(args))
    print(f"wrote {path}")
    return {"rows": rows}


def nuplan_rows(logs: int, workers: list[int], seed: int) -> list[dict]:
    """Extraction throughput of the test database, once per worker count (fresh output each)."""
    try:
        import pyogrio  # noqa: F401

        from gf_jax.data import nuplan
        from gf_jax.data.nuplan import recording, writer
    except ImportError as e:
        print(f"skipping nuPlan extraction ({e})")
        return []

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        world = recording.simulate(logs, seed=seed, city_mix=recording.CITY_MIX)
        db, maps, _ = writer.write_dataset(Path(tmp) / "nuplan", world)
        cfg = nuplan.ExtractConfig(scenario_types=tuple(sorted({w.scenario_type for w in world})))
        for w in workers:
            out = Path(tmp) / f"out{w}"
            t, rep = benchlib.timed(
                lambda out=out, w=w: nuplan.extract_to_folder(
                    db, maps, out, config=cfg, workers=w, progress=False
                )
            )
            n = rep.written
            rows.append({"stage": f"nuplan extract x{w}", "n": n, "seconds": t, "scn_per_s": n / t})
    return rows


if __name__ == "__main__":
    sys.exit(benchlib.exit_status(main()))
