"""GameFormer forward (and forward+backward) cost: wall time per example and XLA FLOPs.

    python experiments/bench_model.py [--presets cpu paper] [--batch 8] [--repeats 5]
                                      [--no-grad] [--out runs/bench/model.json]

Times are jitted calls after a warm-up, best of `--repeats`, with block_until_ready; FLOPs come
from XLA's cost analysis of the compiled program. Compute does not depend on the input values
(masks only select), so the inputs are random arrays in the scenario layout.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchlib, options
from gf_jax import cli, losses, model
from gf_jax.config import PRESETS, ModelConfig
from gf_jax.data.schema import LAYOUT, MODEL_INPUT_KEYS


def random_batch(b: int, neighbors: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    arrays = {
        k: rng.normal(0, 5, (b, *shape)).astype(np.float32) for k, (shape, _) in LAYOUT.items()
    }
    batch = {name: arrays[key] for name, key in MODEL_INPUT_KEYS.items()}
    batch["ego_agent_future"] = arrays["ego_agent_future"]
    batch["neighbor_agents_future"] = arrays["neighbor_agents_future"][:, :neighbors]
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX returns one dict per device program
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def measure(name: str, fn, args: tuple, batch: int, repeats: int) -> dict:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    best, _ = benchlib.timed(lambda: jax.block_until_ready(compiled(*args)), repeats)
    flops = _flops(compiled)
    return {
        "pass": name,
        "batch": batch,
        "compile_s": compile_s,
        "ms_per_batch": best * 1e3,
        "ms_per_example": best * 1e3 / batch,
        "gflop_per_example": flops / batch / 1e9,
        "gflop_per_s": flops / best / 1e9,
    }


def bench_preset(preset: str, cfg: ModelConfig, batch: int, repeats: int, grad: bool) -> list[dict]:
    params = model.init_params(cfg, jax.random.key(0))
    data = random_batch(batch, cfg.neighbors)
    rows = [measure("forward", lambda p, b: model.apply(p, b, cfg), (params, data), batch, repeats)]
    if grad:
        loss_grad = jax.value_and_grad(lambda p, b: losses.loss_fn(p, b, cfg))
        rows.append(measure("loss+grad", loss_grad, (params, data), batch, repeats))
    for r in rows:
        r.update(preset=preset, params=model.param_count(params))
    return rows


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_model.py", __doc__, raw_text=True)
    p.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=sorted(PRESETS))
    p.add_argument("--batch", type=options.positive_int, default=8)
    p.add_argument("--repeats", type=options.positive_int, default=5)
    p.add_argument("--no-grad", dest="grad", action="store_false", help="forward only")
    p.add_argument(
        "--precision",
        default="default",
        choices=["default", "high", "highest"],
        help="jax_default_matmul_precision (matters on GPU: TF32 vs float32)",
    )
    p.add_argument("--out", default="runs/bench/model.json")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    jax.config.update("jax_default_matmul_precision", args.precision)

    rows = []
    for name in args.presets:
        rows += bench_preset(name, PRESETS[name].model, args.batch, args.repeats, args.grad)
    cols = ["preset", "params", "pass", "batch", "compile_s", "ms_per_example", "gflop_per_example",
            "gflop_per_s"]  # fmt: skip
    print(benchlib.table(rows, cols))
    path = benchlib.write_record(args.out, "model", rows, vars(args))
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    sys.exit(benchlib.exit_status(main()))
