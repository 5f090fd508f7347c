"""The whole design space: every named configuration x seeds, resumable.

    python experiments/sweep.py --preset cpu                 # everything (finished runs skipped)
    python experiments/sweep.py --list                       # configurations and their status
    python experiments/sweep.py --only 'tracin*' --seeds 3   # a subset
    python experiments/sweep.py --commands | parallel -j 4   # one run.py line per pending run
    python experiments/sweep.py --shard 2/8                  # this machine's share of the plan
    python experiments/report.py                             # then: tables, figures, animations

The paper's table (uniform, metadata, tracin, hybrid, loss) runs with `--seeds` seeds (default 5,
the paper had 3); the ablations (see `experiments.configurations`) with `--ablation-seeds`
(default 1). Runs go in-process, one after another, so compiled programs are reused between
them. A run counts as done only when its result was trained with the same configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from experiments import configurations as plan_lib
from experiments import options, stages, stats
from experiments.layout import Layout
from experiments.runconfig import ConfigError, RunConfig
from gf_jax import cli, runtime
from gf_jax import config as gf_config


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/sweep.py", __doc__)
    p.add_argument("--preset", default=None, help="paper | cpu | tiny (default: by backend)")
    p.add_argument("--workdir", default="runs", help="as run.py's --workdir")
    p.add_argument("--data", default=None, help="as run.py's --data")
    p.add_argument(
        "--epochs", type=options.positive_int, default=None, help="override every run's epochs"
    )
    p.add_argument(
        "--seeds",
        type=options.non_negative_int,
        nargs="+",
        default=[5],
        help="main-table seeds: N (1..N; 0: none) or a list",
    )
    p.add_argument(
        "--ablation-seeds",
        type=options.non_negative_int,
        nargs="+",
        default=[1],
        help="ablation seeds, likewise",
    )
    p.add_argument("--only", nargs="+", default=None, help="configuration name patterns (glob)")
    p.add_argument(
        "--shard", type=options.shard, default=(1, 1), help="I/N: every N-th run of the plan from I"
    )
    p.add_argument("--list", action="store_true", help="print the plan and each run's status")
    p.add_argument(
        "--commands",
        action="store_true",
        help="print one run.py command line per pending run, run nothing",
    )
    p.add_argument("--keep-going", action="store_true", help="go on after a failed run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p  # fmt: skip


def seeds(spec: list[int]) -> list[int]:
    """`--seeds 5` means seeds 1..5; several numbers are taken as the seeds themselves."""
    return list(range(1, spec[0] + 1)) if len(spec) == 1 else list(spec)


def planned(args: argparse.Namespace) -> list[RunConfig]:
    preset = args.preset or gf_config.default_preset_name(verbose=not args.commands)
    configs = plan_lib.configurations(preset=preset, data=args.data, epochs=args.epochs)
    runs = plan_lib.plan(configs, seeds(args.seeds), seeds(args.ablation_seeds), args.only)
    return runs


def show(runs: list[RunConfig], layout: Layout) -> None:
    rows = [
        {
            "config": c.run_name,
            "seed": c.seed,
            "status": plan_lib.status(layout, c),
            "command": plan_lib.command_line(c, layout.root),
        }
        for c in runs
    ]
    print(stats.markdown_table(rows, ["config", "seed", "status", "command"]))
    done = sum(r["status"] == "done" for r in rows)
    print(f"\n{len({c.run_name for c in runs})} configurations, {len(runs)} runs, {done} done")


class SweepError(RuntimeError):
    """Some runs of the sweep failed (each is listed above the error line)."""


def execute(runs: list[RunConfig], layout: Layout, args: argparse.Namespace) -> int:
    failed: list[str] = []
    t0 = time.perf_counter()
    for i, cfg in enumerate(runs, 1):
        state = plan_lib.status(layout, cfg)
        elapsed = time.perf_counter() - t0
        print(f"\n[{i}/{len(runs)}] {cfg.run_name} seed {cfg.seed} ({state}, {elapsed:.0f} s)")
        if state == "done":
            continue
        if state == "stale":  # never replace finished work without saying so
            print(f"replacing {layout.run(cfg.run_name, cfg.seed)}: trained with another config")
        try:
            stages.run(cfg, layout, overwrite=state == "stale", progress=not args.quiet)
        except Exception as e:  # one failed configuration must not lose the rest of the sweep
            failed.append(f"{cfg.run_name} seed {cfg.seed}: {cli.describe(e)}")
            if args.debug:
                traceback.print_exc()
            if not args.keep_going:
                break
    done = sum(plan_lib.status(layout, c) == "done" for c in runs)
    print(f"\nsweep: {done} of {len(runs)} runs finished")
    if failed:  # one error line; the runs that failed, one per line, above it
        for f in failed:
            print(f"failed: {f}", file=sys.stderr)
        raise SweepError(f"{len(failed)} run(s) failed, first {failed[0]}")
    return 0


def plan_from(args: argparse.Namespace) -> list[RunConfig]:
    """This machine's runs; a ConfigError naming the flag (exit 2) before any work."""
    index, count = args.shard
    runs = planned(args)
    if not runs:
        flag = "--only" if args.only else "--seeds/--ablation-seeds"
        raise ConfigError(f"{flag}: the plan holds no run (no configuration or seed matches)")
    # Shards of the whole plan, not of what is pending here: machines agree on their shares.
    return plan_lib.shard(runs, index, count)


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    layout = Layout(args.workdir)
    runs = plan_from(args)
    if args.list:
        show(runs, layout)
        return 0
    if args.commands:
        for cfg in runs:
            if plan_lib.status(layout, cfg) != "done":
                print(plan_lib.command_line(cfg, layout.root))
        return 0
    return execute(runs, layout, args)


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
