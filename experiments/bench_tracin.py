"""TracIn throughput for one checkpoint: `loop` (the paper's batch-1 approach), `vmap`, `jvp`.

    python experiments/bench_tracin.py [--presets cpu] [--n 256] [--n-val 64] [--chunk 32]
                                       [--repeats 2] [--out runs/bench/tracin.json]

For each preset and mode: the pass `<grad l_i, gbar_val>` over `--n` training examples (examples/s,
speed-up over `loop`, and its cost in units of one training epoch over the same examples, timed
with `gf_jax.train.compiled_steps`), plus the validation gradient over `--n-val` examples. Times
exclude compilation (a warm-up call on the same shapes first) and include the host-to-device
transfer of the chunks, as a real scoring run does.

FLOP floor: XLA's cost analysis of each compiled program gives FLOPs per example; the machine's
peak is measured as the best f32 matmul throughput (`--peak-n`); floor = FLOPs / peak, and
`frac_peak` = achieved FLOP/s / peak. (Cost analysis counts a scan body once, so the LSTM
recurrence is slightly under-counted, the same way in every mode.) Memory: XLA's memory analysis of
each program (arguments + outputs + temporaries, MB); on a GPU also the device's peak bytes in use.
Inputs are random arrays in the scenario layout: compute does not depend on their values.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchlib, options
from experiments.bench_model import random_batch
from gf_jax import cli, model, runtime, train
from gf_jax import mesh as mesh_lib
from gf_jax.config import PRESETS
from valuation import gameformer, grads


def _flops(compiled, devices: int = 1) -> float:
    """Total FLOPs of a program (cost analysis reports one device's share of an SPMD program)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return devices * float(cost.get("flops", float("nan"))) if cost else float("nan")


def _program_mb(compiled) -> float:
    try:
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        return total / 2**20
    except Exception:  # not every backend reports it
        return float("nan")


def _device_peak_mb() -> float:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak else float("nan")


def peak_gflops(n: int, mesh, repeats: int = 5) -> float:
    """Best observed f32 matmul throughput (GFLOP/s), one n x n matmul per device at once."""
    k = mesh.devices.size
    a = mesh_lib.shard_batch(jnp.ones((k, n, n), jnp.float32), mesh)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    best, _ = benchlib.timed(lambda: jax.block_until_ready(f(a)), repeats)
    return k * 2 * n**3 / best / 1e9


def _host(batch: dict) -> dict:
    return {k: np.asarray(v) for k, v in batch.items()}


def _compiled(fn, *args):
    t0 = time.perf_counter()
    c = fn.lower(*args).compile()
    return c, time.perf_counter() - t0


def train_epoch_seconds(preset_name: str, n: int, mesh, data: dict, repeats: int) -> dict:
    """One epoch of training steps over n examples (the preset's batch size, dropout on)."""
    preset = PRESETS[preset_name]
    mcfg, tcfg = preset.model, preset.train
    b = mesh_lib.round_up_to_devices(tcfg.batch_size, mesh)
    step_fn, _ = train.compiled_steps(mcfg, tcfg)
    params = mesh_lib.replicate(model.init_params(mcfg, jax.random.key(0)), mesh)
    opt_state = mesh_lib.replicate(train.make_optimizer(tcfg).init(params), mesh)
    batch = mesh_lib.shard_batch({k: v[:b] for k, v in data.items()}, mesh)
    weight = mesh_lib.shard_batch(jnp.ones(b), mesh)
    lr = jnp.float32(tcfg.learning_rate)
    compiled, compile_s = _compiled(
        step_fn, params, opt_state, batch, weight, jax.random.key(0), lr
    )
    flops = _flops(compiled, mesh.devices.size) / b
    mb = _program_mb(compiled)
    steps = -(-n // b)

    def epoch():
        nonlocal params, opt_state
        loss = None
        for i in range(steps):
            rows = np.arange(i * b, (i + 1) * b) % len(data["ego_agent_past"])
            host = {k: v[rows] for k, v in data.items()}
            params, opt_state, loss = step_fn(
                params, opt_state, mesh_lib.shard_batch(host, mesh), weight, jax.random.key(i), lr
            )
        jax.block_until_ready(loss)

    epoch()  # warm-up (the donated step's executable and the data path)
    best, _ = benchlib.timed(epoch, repeats)
    return {
        "seconds": best,
        "examples": steps * b,
        "gflop_per_example": flops / 1e9,
        "program_mb": mb,
        "compile_s": compile_s,
        "batch": b,
    }


def bench_preset(name: str, args: argparse.Namespace, peak: float) -> list[dict]:
    cfg = PRESETS[name].model
    mesh = mesh_lib.data_mesh()
    loss = gameformer.loss_fn(cfg)
    k = grads.kernels(loss, False)
    params = model.init_params(cfg, jax.random.key(0))
    n = args.n
    # Train and val are distinct random sets with enough examples for a padded-free epoch.
    data = _host(random_batch(max(n, 64), cfg.neighbors, seed=1))
    val = _host(random_batch(args.n_val, cfg.neighbors, seed=2))
    chunk = grads.chunk_size_for(max(n, args.n_val), args.chunk, mesh)
    train_set = {kk: v[:n] for kk, v in data.items()}

    # The per-chunk programs, compiled once up front for FLOP and memory figures.
    p_rep, key = mesh_lib.replicate((params, jax.random.key(0)), mesh)
    c0 = next(grads.iter_chunks(train_set, chunk, mesh))
    one = (params, grads.example_at(train_set, 0), jax.random.key(0))
    p1, ex1, key1 = jax.device_put(one, mesh.devices.flat[0])
    programs = {
        "jvp": (_compiled(k.jvp, p_rep, c0.data, p_rep, key, c0.index_B), chunk),
        "vmap": (_compiled(k.grads, p_rep, c0.data, key, c0.index_B), chunk),
        "loop": (_compiled(k.example_grad, p1, ex1, key1, 0), 1),
        "val_grad": (_compiled(k.grad_sum, p_rep, c0.data, c0.weight_B, key, c0.index_B), chunk),
    }

    v = grads.mean_grad(loss, params, val, chunk_size=chunk, mesh=mesh)
    jax.block_until_ready(v)
    epoch = train_epoch_seconds(name, n, mesh, data, args.repeats)
    epoch_per_ex = epoch["seconds"] / epoch["examples"]

    def row(
        mode: str, m: int, seconds: float, gflop: float, mb: float, compile_s: float, batch: int
    ) -> dict:
        per_ex = seconds / m
        return {
            "preset": name, "mode": mode, "batch": batch, "examples": m,
            "examples_per_s": 1.0 / per_ex, "ms_per_example": per_ex * 1e3,
            "x_epoch": per_ex / epoch_per_ex,  # the pass in units of a training epoch
            "gflop_per_example": gflop, "gflop_per_s": gflop / per_ex,
            "frac_peak": gflop / peak / per_ex, "program_mb": mb, "compile_s": compile_s,
        }  # fmt: skip

    rows = []
    for mode in ("loop", "vmap", "jvp"):
        m = min(n, args.loop_n) if mode == "loop" else n
        subset = {kk: vv[:m] for kk, vv in train_set.items()}
        warm = {kk: vv[: 1 if mode == "loop" else chunk] for kk, vv in train_set.items()}
        grads.grad_dots(loss, params, warm, v, mode=mode, chunk_size=chunk, mesh=mesh)
        best, _ = benchlib.timed(
            lambda mode=mode, subset=subset: grads.grad_dots(
                loss, params, subset, v, mode=mode, chunk_size=chunk, mesh=mesh
            ),
            args.repeats,
        )
        (compiled, compile_s), per = programs[mode]
        ndev = 1 if mode == "loop" else mesh.devices.size  # the loop runs on one device
        gflop = _flops(compiled, ndev) / per / 1e9
        rows.append(row(mode, m, best, gflop, _program_mb(compiled), compile_s, per))
    # The validation gradient (every mode needs it per checkpoint): one backward per chunk.
    best, _ = benchlib.timed(
        lambda: jax.block_until_ready(
            grads.mean_grad(loss, params, val, chunk_size=chunk, mesh=mesh)
        ),
        args.repeats,
    )
    (compiled, compile_s), per = programs["val_grad"]
    gflop = _flops(compiled, mesh.devices.size) / per / 1e9
    rows.append(row("val_grad", args.n_val, best, gflop, _program_mb(compiled), compile_s, per))
    rows.append(row("train_epoch", epoch["examples"], epoch["seconds"],
                    epoch["gflop_per_example"], epoch["program_mb"], epoch["compile_s"],
                    epoch["batch"]))  # fmt: skip
    loop_rate = rows[0]["examples_per_s"]
    for r in rows:
        r["x_loop"] = r["examples_per_s"] / loop_rate
        r["params"] = model.param_count(params)
        r["devices"] = mesh.devices.size
        r["device_peak_mb"] = _device_peak_mb()
    return rows


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/bench_tracin.py", __doc__, raw_text=True)
    positive = options.positive_int
    p.add_argument(
        "--presets",
        nargs="+",
        default=None,
        choices=sorted(PRESETS),
        help="default: cpu, plus paper when JAX sees a GPU",
    )
    p.add_argument("--n", type=positive, default=256, help="training examples scored per mode")
    p.add_argument("--loop-n", type=positive, default=256, help="examples timed in loop mode")
    p.add_argument("--n-val", type=positive, default=64, help="validation examples")
    p.add_argument("--chunk", type=positive, default=32, help="examples per jitted call")
    p.add_argument("--repeats", type=positive, default=2, help="best of this many timed passes")
    p.add_argument("--peak-n", type=positive, default=2048, help="matmul size for peak FLOP/s")
    p.add_argument("--out", default="runs/bench/tracin.json")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    presets = args.presets or (["cpu", "paper"] if jax.default_backend() == "gpu" else ["cpu"])

    peak = peak_gflops(args.peak_n, mesh_lib.data_mesh())
    print(
        f"peak f32 matmul: {peak:,.1f} GFLOP/s on {jax.devices()[0].device_kind} "
        f"x{jax.device_count()}"
    )
    rows = []
    for name in presets:
        rows += bench_preset(name, args, peak)
    cols = [
        "preset",
        "devices",
        "mode",
        "batch",
        "examples",
        "examples_per_s",
        "ms_per_example",
        "x_loop",
        "x_epoch",
        "gflop_per_example",
        "gflop_per_s",
        "frac_peak",
        "program_mb",
        "compile_s",
    ]
    print(benchlib.table(rows, cols))
    for name in presets:
        r = {row["mode"]: row for row in rows if row["preset"] == name}
        floor_x = r["loop"]["gflop_per_example"] / r["jvp"]["gflop_per_example"]
        print(
            f"{name}: jvp {r['jvp']['x_loop']:.2f}x loop (FLOP ratio loop/jvp {floor_x:.2f}); "
            f"jvp pass = {r['jvp']['x_epoch']:.2f} training epochs over the same examples"
        )
    config = {**vars(args), "presets": presets, "peak_gflop_per_s": peak}
    print(f"wrote {benchlib.write_record(args.out, 'tracin', rows, config)}")
    return {"rows": rows, "peak_gflop_per_s": peak}


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(benchlib.exit_status(main()))
