"""Training throughput, old vs new in one run: glibc malloc against tcmalloc (`gf_jax.runtime`).

    python experiments/bench_train.py [--presets cpu] [--steps 30] [--out runs/bench/train.json]

For each preset and allocator a fresh child process (so the allocator is the one the process
started with) compiles the jitted, donated train step and times `--steps` steps fed by the real
input path: batches gathered from the preset's cached training split (`gf_jax.sampling.batches`),
sharded over the visible devices; then one pass of the eval step over the validation split. It
reports samples/s, the minor page faults and the kernel's share of CPU time per step (the cost
tcmalloc removes), and new/old ratios measured in this one run. `--allocators default` alone
runs where no tcmalloc is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from experiments import benchlib, options
from gf_jax import cli, runtime
from gf_jax.config import PRESETS

ALLOCATORS = ("default", "tcmalloc")


def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def measure(preset_name: str, steps: int, data_root: str) -> dict:
    """In this process: compile, then time `steps` train steps and one eval pass."""
    from gf_jax.data import store
    from gf_jax.evaluate import evaluate

    preset = PRESETS[preset_name]
    mcfg, tcfg = preset.model, preset.train
    train = store.load_split(preset.data, "train", root=data_root, progress=False)
    val = store.load_split(preset.data, "val", root=data_root, progress=False)
    stepper = benchlib.TrainStepper(preset, train, steps)
    step, mesh, eval_fn = stepper.step, stepper.mesh, stepper.eval_fn

    t0 = time.perf_counter()
    step(0)  # compiles
    compile_s = time.perf_counter() - t0
    u0, s0, f0 = _usage()
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    wall = time.perf_counter() - t0
    u1, s1, f1 = _usage()
    params = stepper.params
    evaluate(params, val, mcfg, batch_size=tcfg.eval_batch_size, mesh=mesh, step_fn=eval_fn)
    t0 = time.perf_counter()
    evaluate(params, val, mcfg, batch_size=tcfg.eval_batch_size, mesh=mesh, step_fn=eval_fn)
    eval_s = time.perf_counter() - t0
    return {
        "preset": preset_name,
        "batch": tcfg.batch_size,
        "devices": mesh.devices.size,
        "compile_s": compile_s,
        "step_s": wall / steps,
        "samples_per_s": steps * tcfg.batch_size / wall,
        "faults_per_step": (f1 - f0) / steps,
        "kernel_share": (s1 - s0) / max(u1 - u0 + s1 - s0, 1e-9),
        "eval_examples_per_s": len(val) / eval_s,
    }


class BenchError(RuntimeError):
    """A measuring child process failed."""


def run_child(preset: str, allocator: str, args: argparse.Namespace) -> dict:
    """`measure` in a fresh process started with the allocator."""
    env = {**os.environ, runtime.ENV_SWITCH: "0"}  # the child must not pick its own allocator
    env.pop("LD_PRELOAD", None)
    if allocator == "tcmalloc":
        env = runtime.preload_env(runtime.find_tcmalloc(), env)
    cmd = [sys.executable, "-m", "experiments.bench_train", "--child", preset,
           "--steps", str(args.steps), "--data-root", args.data_root]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:  # its last line is the child's own one-line error
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{preset} x {allocator} child exited {out.returncode}: {last}")
    return {"allocator": allocator, **json.loads(out.stdout.strip().splitlines()[-1])}


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_train.py", __doc__, raw_text=True)
    p.add_argument("--presets", nargs="+", default=["cpu"], choices=sorted(PRESETS))
    p.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=ALLOCATORS)
    p.add_argument("--steps", type=options.positive_int, default=30,
                   help="timed steps after the compiling one")  # fmt: skip
    p.add_argument("--data-root", default="runs/data", help="dataset cache folder")
    p.add_argument("--out", default="runs/bench/train.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if "tcmalloc" in args.allocators and runtime.find_tcmalloc() is None:
        raise cli.UsageError("--allocators tcmalloc: no tcmalloc library installed")
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.data_root)))
        return {}
    rows = [run_child(pr, alloc, args) for pr in args.presets for alloc in args.allocators]
    for r in rows:
        old = next(x for x in rows if x["preset"] == r["preset"])
        r["speedup"] = r["samples_per_s"] / old["samples_per_s"]
    cols = ["preset", "allocator", "batch", "devices", "compile_s", "step_s", "samples_per_s",
            "faults_per_step", "kernel_share", "eval_examples_per_s", "speedup"]  # fmt: skip
    print(benchlib.table(rows, cols))
    print(f"wrote {benchlib.write_record(args.out, 'train', rows, vars(args))}")
    return {"rows": rows}


if __name__ == "__main__":
    sys.exit(benchlib.exit_status(main()))
