"""One-shot accelerator check: train-step throughput, TracIn throughput per mode, one real epoch.

    python experiments/gpu_check.py [--preset paper] [--n-train N] [--n-val N] [--steps 50]
                                    [--loop-n 64] [--chunk 64] [--budget-s 420]
                                    [--out runs/bench/gpu_check.json]

Sections, in order (each records whether it ran; the JSON is rewritten after each, so a run cut
short still leaves what it measured):
  train_step  the jitted, donated train step (`gf_jax.steps.compiled_steps`) at the preset's batch
              size on random inputs: compile seconds, XLA FLOPs per example, samples/s over a
              window of `--steps` back-to-back steps after warm-up, achieved TFLOP/s.
  data        building the preset's train and val splits of the procedural world (fresh cache).
  epoch       `gf_jax.train.fit` for one epoch of the preset on those splits: wall time, the
              train pass (`train_seconds`), the rest (init, val eval, checkpoint) and the seconds
              XLA spent compiling inside fit.
  tracin      one checkpoint (random initial parameters) over the train split: the validation
              gradient, then `<grad l_i, gbar_val>` per example in modes loop (on a `--loop-n`
              prefix), jvp and vmap; examples/s each, the ratio to loop, and the largest
              difference between the modes' scores relative to the scores' scale.
XLA's cost analysis counts a scan body once, so the LSTM recurrence is slightly under-counted in
the FLOPs. Sections after train_step (and TracIn's modes) start only while the elapsed time is
under `--budget-s`; on one H200 the paper preset's compiles alone took ~330 s of it (train step
~90 s, each TracIn program 41-89 s; docs/bench/gpu-h200.json), hence TracIn last. Compile
seconds come from JAX's compile-duration events. Nothing assumes a GPU: on CPU it runs the same
code, slowly (use `--preset tiny`). The library is `experiments.gpu_sections`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax

from experiments import benchlib, options
from experiments.gpu_sections import (
    COLUMNS,
    SECTIONS,
    compile_seconds,
    device_info,
    run_sections,
    table_rows,
)
from gf_jax import atomic, cli, runtime
from gf_jax.config import resolve_preset
from valuation import grads


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/gpu_check.py", __doc__, raw_text=True)
    positive = options.positive_int
    p.add_argument("--preset", default="paper", choices=["paper", "cpu", "tiny"])
    p.add_argument("--n-train", type=positive, default=None,
                   help="default: the preset's (paper 5,148)")  # fmt: skip
    p.add_argument("--n-val", type=positive, default=None, help="default: the preset's (1,000)")
    p.add_argument("--steps", type=positive, default=50, help="timed train steps after warm-up")
    p.add_argument("--loop-n", type=positive, default=64, help="examples timed in loop mode")
    p.add_argument("--chunk", type=positive, default=grads.DEFAULT_CHUNK, help="TracIn chunk size")
    p.add_argument("--budget-s", type=options.non_negative_float, default=420.0,
                   help="start no further section once this many seconds have passed")  # fmt: skip
    p.add_argument("--data-root", default=None, help="split cache (default: a fresh temp folder)")
    p.add_argument("--precision", default=None, choices=["default", "high", "highest"],
                   help="jax_default_matmul_precision (default: left as it is)")  # fmt: skip
    p.add_argument("--out", default="runs/bench/gpu_check.json")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parser().parse_args(argv)


@cli.guarded
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.precision:
        jax.config.update("jax_default_matmul_precision", args.precision)
    preset = resolve_preset(args.preset, epochs=1)
    sizes = {
        "n_train": args.n_train or preset.data.n_train,
        "n_val": args.n_val or preset.data.n_val,
    }
    preset = dataclasses.replace(preset, data=dataclasses.replace(preset.data, **sizes)).validate()
    compile_seconds()  # the listener must see the first compile
    sections: dict[str, dict[str, Any]] = {
        s: {"ran": False, "why": "not reached"} for s in SECTIONS
    }

    def save() -> dict[str, Any]:
        record = {
            "benchmark": "gpu_check",
            "config": {**vars(args), **sizes, "batch_size": preset.train.batch_size},
            "machine": {**benchlib.machine(), **device_info()},
            "elapsed_s": time.perf_counter() - t0,
            "sections": sections,
            "rows": table_rows(sections),
        }
        atomic.write_json(args.out, record)
        return record

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        run_sections(preset, args, Path(tmp), sections, save)
    record = save()
    m = record["machine"]
    print(f"jax {m['jax']} on {m['backend']}: {m['device_count']} x {', '.join(m['device_kinds'])}")
    print(benchlib.table(record["rows"], COLUMNS))
    print(f"total {record['elapsed_s']:.1f} s; wrote {args.out}")
    return record


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(benchlib.exit_status(main()))
