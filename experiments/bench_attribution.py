"""Retraining many models: K subset models in one vmapped program against K sequential steps.

    python experiments/bench_attribution.py [--preset attribution] [--models 2,4] [--steps 20]
                                            [--out runs/bench/attribution.json]

The attribution benchmark retrains ~100 models of one preset. Each could take its own optimizer
step in turn (what `fit` does, one model at a time), or K models could step together in one
program: the train step `jax.vmap`-ed over a leading model axis of the parameters, optimizer
states, batches (each model its own examples), dropout keys. This measures both in one process
on the same batches from the preset's cached training split: samples/s of K sequential compiled
steps against one vmapped step over K models, and their ratio (vmapped / sequential; above 1
means training several subset models in one program is faster on this machine). Compile times
are reported separately and excluded from the rates.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any

import numpy as np

from experiments import benchlib, options
from gf_jax import cli, runtime
from gf_jax.config import PRESETS


def measure(preset_name: str, k: int, steps: int, data_root: str) -> dict[str, Any]:
    """Samples/s of K models trained sequentially and vmapped, after one compiling step each."""
    import jax
    import jax.numpy as jnp

    from gf_jax import model
    from gf_jax import steps as steps_lib
    from gf_jax.data import store
    from gf_jax.sampling import batches

    preset = PRESETS[preset_name]
    mcfg, tcfg = preset.model, preset.train
    train = store.load_split(preset.data, "train", root=data_root, progress=False)
    tx = steps_lib.make_optimizer(tcfg)
    step_fn, _ = steps_lib.compiled_steps(mcfg, tcfg)
    one = functools.partial(steps_lib.train_step, model_cfg=mcfg, tx=tx, grad_accum=tcfg.grad_accum)
    vstep = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None)), donate_argnums=(0, 1))

    # Model m trains on its own examples: a random half of the split, as an LDS subset.
    rng = np.random.default_rng(0)
    need = (steps + 1) * tcfg.batch_size
    feeds = [
        batches(train, np.resize(rng.permutation(len(train))[: len(train) // 2], need),
                tcfg.batch_size, mcfg.neighbors)
        for _ in range(k)
    ]  # fmt: skip
    host = [[next(f) for _ in range(steps + 1)] for f in feeds]  # [K][steps + 1] (batch, weight)
    lr = jnp.float32(tcfg.learning_rate)

    def init(m: int) -> tuple[Any, Any]:
        params = model.init_params(mcfg, jax.random.key(m))
        return params, tx.init(params)

    # Sequential: K models, each step of each in turn (what K separate fits do).
    states = [init(m) for m in range(k)]

    def sequential(i: int) -> None:
        for m in range(k):
            batch, weight = host[m][i]
            p, o, loss = step_fn(*states[m], batch, weight, jax.random.key(i), lr)
            states[m] = (p, o)
        loss.block_until_ready()

    # Vmapped: the same K models stacked on a leading axis, one program per step.
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[init(m) for m in range(k)])

    def vmapped(i: int) -> None:
        nonlocal stacked
        batch = jax.tree.map(lambda *xs: np.stack(xs), *[host[m][i][0] for m in range(k)])
        weight = np.stack([host[m][i][1] for m in range(k)])
        keys = jax.random.split(jax.random.key(i), k)
        p, o, loss = vstep(*stacked, batch, weight, keys, lr)
        stacked = (p, o)
        loss.block_until_ready()

    row: dict[str, Any] = {"preset": preset_name, "models": k, "batch": tcfg.batch_size}
    for name, fn in (("sequential", sequential), ("vmapped", vmapped)):
        t0 = time.perf_counter()
        fn(0)  # compiles
        row[f"{name}_compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(1, steps + 1):
            fn(i)
        row[f"{name}_samples_per_s"] = k * steps * tcfg.batch_size / (time.perf_counter() - t0)
    row["ratio"] = row["vmapped_samples_per_s"] / row["sequential_samples_per_s"]
    return row


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_attribution.py", __doc__, raw_text=True)
    p.add_argument("--preset", default="attribution", choices=sorted(PRESETS))
    p.add_argument("--models", type=options.positive_int_list, default="2,4",
                   help="K: models trained together")  # fmt: skip
    p.add_argument("--steps", type=options.positive_int, default=20,
                   help="timed steps after the compiling one")  # fmt: skip
    p.add_argument("--data-root", default="runs/data", help="dataset cache folder")
    p.add_argument("--out", default="runs/bench/attribution.json")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    ks = [int(x) for x in args.models.split(",")]
    rows = [measure(args.preset, k, args.steps, args.data_root) for k in ks]
    cols = ["preset", "models", "batch", "sequential_compile_s", "vmapped_compile_s",
            "sequential_samples_per_s", "vmapped_samples_per_s", "ratio"]  # fmt: skip
    print(benchlib.table(rows, cols))
    print(f"wrote {benchlib.write_record(args.out, 'attribution', rows, vars(args))}")
    return {"rows": rows}


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(benchlib.exit_status(main()))
