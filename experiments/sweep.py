"""The whole design space: every named configuration x seeds, resumable.

    python experiments/sweep.py --preset cpu                 # everything (finished runs skipped)
    python experiments/sweep.py --list                       # configurations and their status
    python experiments/sweep.py --only 'tracin*' --seeds 3   # a subset
    python experiments/report.py                             # then: tables, figures, animations

The paper's table (uniform, metadata, tracin, hybrid, loss) runs with `--seeds` seeds (default 5,
the paper had 3); the ablations with `--ablation-seeds` (default 1): hard top-20 % selection by
TracIn, metadata, at random and from TracIn's bottom; the released code's curriculum; TracIn's
sign flipped; best-checkpoint TracIn; dropout on while scoring; the metadata mean composite; LiSSA;
random scores through the same curriculum; TracIn and uniform on a world without label noise.
Runs go in-process, one after another, so compiled programs are reused between them.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import run as run_lib
from experiments import stats

MAIN = ("uniform", "metadata", "tracin", "hybrid", "loss")
# name -> run.py arguments (the name is what run.py itself calls the run folder).
ABLATIONS: dict[str, list[str]] = {
    "tracin-select0.2-top": ["--method", "tracin", "--select", "0.2"],
    "metadata-select0.2-top": ["--method", "metadata", "--select", "0.2"],
    "uniform-select0.2-random": ["--method", "uniform", "--select", "0.2", "--select-from", "random"],
    "tracin-select0.2-bottom": ["--method", "tracin", "--select", "0.2", "--select-from", "bottom"],
    "tracin-code": ["--method", "tracin", "--curriculum", "code"],
    "tracin-signflip": ["--method", "tracin", "--tracin-sign", "-1"],
    "tracin-ckpt-best": ["--method", "tracin", "--tracin-checkpoints", "best"],
    "tracin-dropout": ["--method", "tracin", "--scoring-dropout"],
    "metadata-metadata-mean": ["--method", "metadata", "--metadata", "mean"],
    "lissa": ["--method", "lissa"],
    "random": ["--method", "random"],
    "tracin-noise0": ["--method", "tracin", "--noise", "0"],
    "uniform-noise0": ["--method", "uniform", "--noise", "0"],
}  # fmt: skip


def configurations() -> dict[str, list[str]]:
    """Every named configuration -> its run.py arguments (without seed, preset, workdir)."""
    out = {m: ["--method", m] for m in MAIN}
    out.update(ABLATIONS)
    for name, argv in out.items():  # the names are run.py's own folder names
        assert run_lib.run_name(run_lib.parser().parse_args(argv)) == name, name
    return out


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(configuration, seed) pairs in run order: seed-major over the main table, then ablations,
    so a partly finished sweep already holds complete seeds of the paper's table."""
    main_seeds = _seeds(args.seeds)
    abl_seeds = _seeds(args.ablation_seeds)
    pairs = [(m, s) for s in main_seeds for m in MAIN]
    pairs += [(a, s) for s in abl_seeds for a in ABLATIONS]
    if args.only:
        pairs = [(n, s) for n, s in pairs if any(fnmatch.fnmatch(n, p) for p in args.only)]
    return pairs


def _seeds(spec: list[int]) -> list[int]:
    """`--seeds 5` means seeds 1..5; several numbers are taken as the seeds themselves."""
    return list(range(1, spec[0] + 1)) if len(spec) == 1 else list(spec)


def status(workdir: Path, name: str, seed: int) -> str:
    d = workdir / name / f"seed{seed}"
    if (d / "result.json").exists():
        return "done"
    return "partial" if (d / "checkpoints").is_dir() else "todo"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/sweep.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default=None, help="paper | cpu | tiny (default: by backend)")
    p.add_argument("--workdir", default="runs", help="as run.py's --workdir")
    p.add_argument("--data", default=None, help="as run.py's --data")
    p.add_argument("--epochs", type=int, default=None, help="override every run's epochs")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[5], help="main-table seeds: N (1..N) or a list"
    )
    p.add_argument(
        "--ablation-seeds", type=int, nargs="+", default=[1], help="ablation seeds, likewise"
    )
    p.add_argument("--only", nargs="+", default=None, help="configuration name patterns (glob)")
    p.add_argument("--list", action="store_true", help="print the plan and each run's status")
    p.add_argument("--keep-going", action="store_true", help="go on after a failed run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    configs = configurations()
    pairs = plan(args)
    workdir = Path(args.workdir)
    if not pairs:
        print("sweep: nothing matches --only", file=sys.stderr)
        return 1
    if args.list:
        rows = [
            {"config": n, "seed": s, "status": status(workdir, n, s), "args": " ".join(configs[n])}
            for n, s in pairs
        ]
        print(stats.markdown_table(rows, ["config", "seed", "status", "args"]))
        done = sum(r["status"] == "done" for r in rows)
        print(f"\n{len(configs)} configurations, {len(pairs)} runs, {done} done")
        return 0

    common = ["--workdir", args.workdir]
    for flag in ("preset", "data", "epochs"):
        if getattr(args, flag) is not None:
            common += [f"--{flag}", str(getattr(args, flag))]
    if args.quiet:
        common.append("--quiet")
    failed: list[str] = []
    t0 = time.perf_counter()
    for i, (name, seed) in enumerate(pairs, 1):
        state = status(workdir, name, seed)
        print(
            f"\n[{i}/{len(pairs)}] {name} seed {seed} ({state}, {time.perf_counter() - t0:.0f} s)"
        )
        if state == "done":
            continue
        run_args = run_lib.parser().parse_args([*configs[name], "--seed", str(seed), *common])
        try:
            run_lib.run(run_args)
        except Exception as e:  # one failed configuration must not lose the rest of the sweep
            failed.append(f"{name} seed {seed}: {type(e).__name__}: {e}")
            traceback.print_exc()
            if not args.keep_going:
                break
    done = sum(status(workdir, n, s) == "done" for n, s in pairs)
    print(f"\nsweep: {done} of {len(pairs)} runs finished")
    for f in failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
