"""Training throughput: samples per second of the jitted train step, compile time reported apart.

    python experiments/bench_train.py [--presets cpu paper] [--steps 5] [--out runs/bench/train.json]

Each preset's step (forward, backward, clipping, AdamW; dropout on) runs on its own batch size over
all visible devices. Steady state = best of `--steps` timed steps after one warm-up step. The
ratio column compares each preset with the first one measured in this run.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from experiments import benchlib
from experiments.bench_model import random_batch
from gf_jax import mesh as mesh_lib
from gf_jax import model, train
from gf_jax.config import PRESETS


def bench_preset(name: str, steps: int, batch_size: int | None) -> dict:
    preset = PRESETS[name]
    mcfg, tcfg = preset.model, preset.train
    mesh = mesh_lib.data_mesh()
    b = mesh_lib.round_up_to_devices(batch_size or tcfg.batch_size, mesh)
    step_fn, _ = train.compiled_steps(mcfg, tcfg)
    params = mesh_lib.replicate(model.init_params(mcfg, jax.random.key(0)), mesh)
    opt_state = mesh_lib.replicate(train.make_optimizer(tcfg).init(params), mesh)
    batch = mesh_lib.shard_batch(random_batch(b, mcfg.neighbors), mesh)
    weight = mesh_lib.shard_batch(jnp.ones(b), mesh)
    lr = jnp.float32(tcfg.learning_rate)

    t0 = time.perf_counter()
    params, opt_state, loss = step_fn(params, opt_state, batch, weight, jax.random.key(0), lr)
    jax.block_until_ready(loss)
    first = time.perf_counter() - t0
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        params, opt_state, loss = step_fn(params, opt_state, batch, weight, jax.random.key(i), lr)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "preset": name,
        "params": model.param_count(params),
        "batch": b,
        "devices": mesh.devices.size,
        "compile_s": first - best,
        "step_s": best,
        "samples_per_s": b / best,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up step")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--out", default="runs/bench/train.json")
    args = p.parse_args(argv)
    rows = [bench_preset(name, args.steps, args.batch_size) for name in args.presets]
    for r in rows:
        r["ratio_vs_first"] = r["samples_per_s"] / rows[0]["samples_per_s"]
    cols = ["preset", "params", "batch", "devices", "compile_s", "step_s", "samples_per_s",
            "ratio_vs_first"]  # fmt: skip
    print(benchlib.table(rows, cols))
    print(f"wrote {benchlib.write_record(args.out, 'train', rows, vars(args))}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
