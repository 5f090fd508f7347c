"""Per-pair attribution cost: `valuation.pairs.score_matrix` against one training run.

    python experiments/bench_pairs.py [--preset cpu] [--n 256] [--n-val 256] [--checkpoints 1]
                                      [--chunk 32] [--dims exact,512] [--repeats 1] [--steps 20]
                                      [--data-root runs/data] [--out runs/bench/pairs.json]

Scores `--n` training examples against `--n-val` validation targets (default: the whole
validation split) of the preset's cached splits, at `--checkpoints` copies of freshly initialised
parameters (the cost does not depend on their values), once per `--dims` entry: `exact`
(`dim=None`) or a projected dimension. Times exclude compilation (a warm-up call on the same
chunk shapes first).

Extrapolation to what the sweep's TracIn `all` recipe scores (the whole training set x the whole
validation set x one checkpoint per epoch): a pass costs a fixed part (the validation gradients,
computed once per checkpoint) plus a part per training example (its gradient and its J products),
so a second timed call on one chunk of training examples (`chunk_s`) separates the two; on a
loaded machine the split is noisy, so raise `--n` and `--repeats` for a figure to quote. An
`--n-val` below the split scales both parts up in J (an upper bound: the training gradients do
not grow with J).
`cost / training run` divides that by one training run: epochs x ceil(N_train / batch) train
steps at the step time measured here (`gf_jax.steps.compiled_steps` fed by
`gf_jax.sampling.batches`); evaluation and checkpoint writes are left out, so the ratio errs high.

Memory: `rss_growth_mb` is the growth of the process's peak RSS (ru_maxrss, a high-water mark of
the whole process, so 0 when an earlier step had already reached it) during the timed calls;
`held_mb` is what the chunk size bounds, the gradients held while the training set is walked: one
chunk of training gradients [chunk, F] float32 plus the validation block, [J, F] exact or
[J, dim] projected (J padded to whole chunks); the [N, J] float64 result adds `matrix_mb`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import jax

from experiments import benchlib, options
from gf_jax import cli, model, runtime
from gf_jax import mesh as mesh_lib
from gf_jax.config import PRESETS, Preset
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet
from valuation import gameformer, pairs
from valuation.chunks import chunk_size_for

EXACT = "exact"


def dim_list(text: str) -> list[int | None]:
    """`exact` (dim None) and projected dimensions >= 1, comma-separated, e.g. exact,512."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p == EXACT or (p.isdigit() and int(p) >= 1) for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected {EXACT} or integers >= 1 like {EXACT},512, got {text!r}"
        )
    return [None if p == EXACT else int(p) for p in parts]


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the process's high-water mark, never lowered.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_run_seconds(preset: Preset, train: ScenarioSet, steps: int) -> dict:
    """One training run's step time: epochs x ceil(N / batch) steps at the measured step time."""
    tcfg = preset.train
    step = benchlib.TrainStepper(preset, train, steps).step
    step(0)  # compiles
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    step_s = (time.perf_counter() - t0) / steps
    run_steps = tcfg.epochs * -(-len(train) // tcfg.batch_size)
    return {"step_s": step_s, "steps": run_steps, "seconds": step_s * run_steps}


def _per_checkpoint_fit(t_small: float, m: int, t_full: float, n: int) -> tuple[float, float]:
    """(fixed seconds, seconds per training example) of one checkpoint's pass, from passes over
    m and n > m training examples; on a non-increasing pair (noise on busy cores, or n == m) the
    whole time counts per example, which only overstates the extrapolation."""
    if n > m and t_full > t_small:
        per_example = (t_full - t_small) / (n - m)
        return max(t_small - m * per_example, 0.0), per_example
    return 0.0, t_full / n


def bench_dim(dim: int | None, args: argparse.Namespace, preset: Preset, data: dict) -> dict:
    """Times score_matrix at one dim (warm-up, one chunk, all n) and extrapolates it."""
    train_N, val_J = data["train"], data["val"]
    n, j, k, f = args.n, args.n_val, args.checkpoints, data["params"]
    chunk = chunk_size_for(max(n, j), args.chunk, mesh_lib.data_mesh())
    m = min(chunk, n)
    head_B = {key: v[:m] for key, v in train_N.items()}

    def score(train: dict) -> float:
        t0 = time.perf_counter()
        pairs.score_matrix(data["loss"], data["checkpoints"], train, val_J, dim=dim,
                           chunk_size=args.chunk)  # fmt: skip
        return time.perf_counter() - t0

    score(head_B)  # warm-up: one chunk has every program's shapes (chunks are padded)
    t_small = seconds = float("inf")
    rss0 = _peak_rss_mb()
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both
        t_small = min(t_small, score(head_B))
        seconds = min(seconds, score(train_N))
    rss1 = _peak_rss_mb()
    fixed, per_example = _per_checkpoint_fit(t_small / k, m, seconds / k, n)
    full_n, full_j = data["full_n"], data["full_j"]
    full_s = preset.train.epochs * (full_j / j) * (fixed + full_n * per_example)
    width = f if dim is None else dim
    return {
        "dim": EXACT if dim is None else dim,
        "examples": n, "targets": j, "checkpoints": k, "chunk": chunk,
        "chunk_s": t_small, "seconds": seconds, "examples_per_s": n / seconds,
        "fixed_s": fixed, "ms_per_example": per_example * 1e3,
        "full_s": full_s, "cost / training run": full_s / data["train_run"]["seconds"],
        "rss_growth_mb": rss1 - rss0, "peak_rss_mb": rss1,
        "held_mb": 4 * (chunk * f + -(-j // chunk) * chunk * width) / 2**20,
        "matrix_mb": 8 * n * j / 2**20,
    }  # fmt: skip


def load_inputs(args: argparse.Namespace, preset: Preset) -> dict:
    """The examples scored, the checkpoints, the whole splits' sizes and the training run."""
    splits = {s: store.load_split(preset.data, s, root=args.data_root, progress=False)
              for s in ("train", "val")}  # fmt: skip
    if args.n_val is None:  # the whole split; resolved here so the record states it
        args.n_val = len(splits["val"])
    for flag, size, split in (("--n", args.n, "train"), ("--n-val", args.n_val, "val")):
        if size > len(splits[split]):
            raise cli.UsageError(f"{flag} {size}: the {preset.name} {split} split has only "
                                 f"{len(splits[split])} examples")  # fmt: skip
    mcfg = preset.model
    params = model.init_params(mcfg, jax.random.key(0))
    train_N = gameformer.examples(splits["train"], mcfg)
    val_J = gameformer.examples(splits["val"], mcfg)
    return {
        "loss": gameformer.loss_fn(mcfg),
        "checkpoints": [(params, preset.train.learning_rate)] * args.checkpoints,
        "train": {key: v[: args.n] for key, v in train_N.items()},
        "val": {key: v[: args.n_val] for key, v in val_J.items()},
        "full_n": len(splits["train"]),
        "full_j": len(splits["val"]),
        "params": model.param_count(params),
        "train_run": train_run_seconds(preset, splits["train"], args.steps),
    }


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_pairs.py", __doc__, raw_text=True)
    positive = options.positive_int
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--n", type=positive, default=256, help="training examples scored")
    p.add_argument("--n-val", type=positive, default=None,
                   help="validation targets (default: the whole validation split)")  # fmt: skip
    p.add_argument("--checkpoints", type=positive, default=1, help="checkpoints scored at")
    p.add_argument("--chunk", type=positive, default=32, help="examples per jitted call")
    p.add_argument("--dims", type=dim_list, default=f"{EXACT},512",
                   help=f"{EXACT} and/or projected dimensions, comma-separated")  # fmt: skip
    p.add_argument("--repeats", type=positive, default=1,
                   help="best of this many timed calls (one chunk, then --n, in turn)")  # fmt: skip
    p.add_argument("--steps", type=positive, default=20,
                   help="timed train steps after the compiling one")  # fmt: skip
    p.add_argument("--data-root", default="runs/data", help="dataset cache folder")
    p.add_argument("--out", default="runs/bench/pairs.json")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    preset = PRESETS[args.preset]
    data = load_inputs(args, preset)
    run = data["train_run"]
    print(f"{preset.name}: F = {data['params']:,} parameters; training run = {run['steps']:,} "
          f"steps x {run['step_s'] * 1e3:.1f} ms = {run['seconds']:,.1f} s on "
          f"{jax.devices()[0].device_kind} x{jax.device_count()}")  # fmt: skip
    rows = [{"preset": preset.name, **bench_dim(dim, args, preset, data)} for dim in args.dims]
    cols = ["preset", "dim", "examples", "targets", "checkpoints", "chunk", "chunk_s", "seconds",
            "examples_per_s", "fixed_s", "ms_per_example", "full_s", "cost / training run",
            "rss_growth_mb", "peak_rss_mb", "held_mb", "matrix_mb"]  # fmt: skip
    print(benchlib.table(rows, cols))
    config = {**vars(args), "dims": [r["dim"] for r in rows], "params": data["params"],
              "full_train": data["full_n"], "full_val": data["full_j"],
              "epochs": preset.train.epochs, "train_run": run}  # fmt: skip
    print(f"wrote {benchlib.write_record(args.out, 'pairs', rows, config)}")
    return {"rows": rows, "train_run": run}


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(benchlib.exit_status(main()))
