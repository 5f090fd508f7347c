"""The measurements of `experiments/gpu_check.py` (its docstring describes each section) and the
table its record carries.

Each `*_section` returns one section's JSON object; `run_sections` runs them in order under a
time budget, rewriting the record after each; `table_rows` turns the sections into the rows of
the printed table (`COLUMNS`).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench_model import random_batch
from gf_jax import mesh as mesh_lib
from gf_jax import model, steps
from gf_jax import train as train_lib
from gf_jax.config import Preset
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet
from valuation import gameformer, grads, tracin

# The epoch runs before TracIn: it reuses train_step's compiled step, so it is cheap, and on one
# H200 the four TracIn programs took 41-89 s each to compile (docs/bench/gpu-h200.json): last, the
# section the budget may cut is the one that records what it measured mode by mode.
SECTIONS = ("train_step", "data", "epoch", "tracin")
_COMPILE_S = [0.0]  # seconds of tracing, lowering and XLA compilation seen in this process
_LISTENING = [False]


def _on_duration(event: str, seconds: float, **_: Any) -> None:
    if event.startswith("/jax/core/compile/"):
        _COMPILE_S[0] += seconds


def compile_seconds() -> float:
    """Seconds JAX has spent compiling so far (a listener registered once per process)."""
    if not _LISTENING[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _LISTENING[0] = True
    return _COMPILE_S[0]


def device_info() -> dict[str, Any]:
    devices = jax.devices()
    stats = devices[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kinds": sorted({d.device_kind for d in devices}),
        "device_count": len(devices),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "device0_peak_mb": peak / 2**20 if peak else None,
    }


def xla_flops(compiled: Any, devices: int) -> float:
    """Total FLOPs of a compiled program (cost analysis gives one device's share under SPMD)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per device program
        cost = cost[0]
    return devices * float(cost.get("flops", math.nan)) if cost else math.nan


# ----------------------------------------------------------------------------- sections


def train_step_section(preset: Preset, n_steps: int) -> dict[str, Any]:
    """The preset's train step on a random batch: compile, FLOPs, steady samples/s."""
    mcfg, tcfg = preset.model, preset.train
    mesh = mesh_lib.data_mesh()
    b = mesh_lib.round_up_to_devices(tcfg.batch_size, mesh)
    step_fn, _ = steps.compiled_steps(mcfg, tcfg)
    params = mesh_lib.replicate(model.init_params(mcfg, jax.random.key(0)), mesh)
    opt_state = mesh_lib.replicate(steps.make_optimizer(tcfg).init(params), mesh)
    # Compute does not depend on the input values (masks only select): random inputs suffice.
    batch = mesh_lib.shard_batch(random_batch(b, mcfg.neighbors), mesh)
    weight_B = mesh_lib.shard_batch(jnp.ones(b), mesh)
    lr = jnp.float32(tcfg.learning_rate)
    c0, t0 = compile_seconds(), time.perf_counter()
    # lower().compile() fills the jitted function's cache: the calls below reuse this executable.
    compiled = step_fn.lower(params, opt_state, batch, weight_B, jax.random.key(0), lr).compile()
    compile_wall = time.perf_counter() - t0
    flops = xla_flops(compiled, mesh.devices.size)
    for i in range(2):  # warm-up: first-call allocations, donation buffers
        params, opt_state, loss = step_fn(params, opt_state, batch, weight_B, jax.random.key(i), lr)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for i in range(n_steps):  # dispatched back to back, as fit does; one sync at the end
        params, opt_state, loss = step_fn(params, opt_state, batch, weight_B, jax.random.key(i), lr)
    jax.block_until_ready(loss)
    seconds = time.perf_counter() - t0
    step_s = seconds / n_steps
    return {
        "params": model.param_count(params),
        "batch": b,
        "devices": mesh.devices.size,
        "steps": n_steps,
        "seconds": seconds,
        "step_s": step_s,
        "samples_per_s": b / step_s,
        "compile_s": compile_wall,
        "jax_compile_s": compile_seconds() - c0,
        "gflop_per_example": flops / b / 1e9,
        "tflop_per_s": flops / step_s / 1e12,
        "final_loss": float(loss),
    }


def data_section(preset: Preset, root: Path) -> tuple[dict[str, Any], dict[str, ScenarioSet]]:
    """Builds (or loads, if `root` already holds them) the train and val splits."""
    t0 = time.perf_counter()
    hits = {s: any(root.glob(f"{s}-*")) for s in ("train", "val")}
    splits = {s: store.load_split(preset.data, s, root=root) for s in ("train", "val")}
    seconds = time.perf_counter() - t0
    n = sum(len(v) for v in splits.values())
    info = {
        "n_train": len(splits["train"]),
        "n_val": len(splits["val"]),
        "cache_hit": any(hits.values()),
        "seconds": seconds,
        "scenarios_per_s": n / seconds,
    }
    return info, splits


def _prefix(data: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: v[:n] for k, v in data.items()}


def timed_pass(fn: Callable[[Any], Any], data: dict[str, np.ndarray], warm_n: int) -> tuple:
    """fn on a `warm_n`-example prefix (compiles), then timed on all of data: (out, figures)."""
    c0, t0 = compile_seconds(), time.perf_counter()
    jax.block_until_ready(fn(_prefix(data, warm_n)))
    warm_s, compile_s = time.perf_counter() - t0, compile_seconds() - c0
    n = grads.num_examples(data)
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(data))
    seconds = time.perf_counter() - t0
    figures = {"examples": n, "seconds": seconds, "examples_per_s": n / seconds}
    return out, {**figures, "warmup_s": warm_s, "compile_s": compile_s}


def max_rel_diff(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """max_i |a_i - b_i| / max_i |b_i| per pair of modes, on the examples both scored."""
    out = {}
    names = list(scores)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            m = min(len(scores[a]), len(scores[b]))
            sa, sb = scores[a][:m], scores[b][:m]
            scale = max(float(np.max(np.abs(sb))), 1e-30)
            out[f"{a}_vs_{b}"] = float(np.max(np.abs(sa - sb))) / scale
    return out


def tracin_section(
    preset: Preset,
    splits: dict[str, ScenarioSet],
    args: argparse.Namespace,
    over_budget: Callable[[], bool],
) -> dict[str, Any]:
    """One checkpoint's TracIn: the validation gradient, then the training pass per mode.

    The two halves are timed apart (they are what `tracin.checkpoint_dots` does per
    checkpoint), so examples/s compares the modes' training passes on one shared gbar_val.
    """
    mcfg = preset.model
    loss = gameformer.loss_fn(mcfg)
    # A random checkpoint: the cost does not depend on the parameter values.
    params = model.init_params(mcfg, jax.random.key(0))
    lr = preset.train.learning_rate
    train = gameformer.examples(splits["train"], mcfg)
    val = gameformer.examples(splits["val"], mcfg)
    mesh = mesh_lib.data_mesh()
    n, n_val = grads.num_examples(train), grads.num_examples(val)
    chunk = grads.chunk_size_for(max(n, n_val), args.chunk, mesh)  # one shape, as tracin uses
    common = {"chunk_size": chunk, "mesh": mesh}
    v, val_fig = timed_pass(
        lambda d: tracin.validation_gradient(loss, params, d, mode="jvp", **common), val, chunk
    )
    modes: dict[str, dict[str, Any]] = {}
    scores: dict[str, np.ndarray] = {}
    for mode in ("loop", "jvp", "vmap"):  # loop first: the reference every ratio divides by
        if over_budget():
            modes[mode] = {"ran": False}
            continue
        data = _prefix(train, min(n, args.loop_n) if mode == "loop" else n)
        dots, fig = timed_pass(
            lambda d, mode=mode: grads.grad_dots(loss, params, d, v, mode=mode, **common),
            data,
            1 if mode == "loop" else chunk,
        )
        scores[mode] = lr * dots  # TracIn's score for one checkpoint: lr * <g_i, gbar_val>
        modes[mode] = {"ran": True, **fig}
    loop_rate = modes["loop"].get("examples_per_s")
    for fig in modes.values():
        if fig["ran"] and loop_rate:
            fig["x_loop"] = fig["examples_per_s"] / loop_rate
    diffs = max_rel_diff(scores)
    jvp = modes.get("jvp", {})
    return {
        "n_train": n,
        "n_val": n_val,
        "chunk": chunk,
        "loop_n": min(n, args.loop_n),
        "val_grad": val_fig,
        "modes": modes,
        "max_rel_diff": max(diffs.values(), default=math.nan),
        "rel_diff_pairs": diffs,
        "score_scale": max((float(np.max(np.abs(s))) for s in scores.values()), default=math.nan),
        # One checkpoint of a real scoring run in jvp mode: val gradient + training pass.
        "jvp_checkpoint_s": val_fig["seconds"] + jvp["seconds"] if jvp.get("ran") else None,
    }


def epoch_section(preset: Preset, splits: dict[str, ScenarioSet], workdir: Path) -> dict[str, Any]:
    """`fit` (progress on) for the preset's epochs (main asks for 1), split as its result allows.

    The train step is usually compiled already by train_step (same config, same shapes: the
    cached executable is reused), so `jax_compile_s` is mostly the eval step's compile.
    """
    c0, t0 = compile_seconds(), time.perf_counter()
    out = train_lib.fit(
        preset, splits["train"], splits["val"], None, workdir=workdir, progress=True
    )
    wall = time.perf_counter() - t0
    result = out.result
    record = result["history"][0]  # also the one row of metrics.jsonl
    train_s, fit_s = float(record["train_seconds"]), float(result["fit_seconds"])
    samples = result["steps"] * preset.train.batch_size
    return {
        "wall_s": wall,
        "fit_s": fit_s,
        "train_s": train_s,
        "eval_s": float(record["eval_seconds"]),  # with the eval step's compile
        "rest_s": fit_s - train_s,  # init, val evaluation (with its compile), checkpoint
        "jax_compile_s": compile_seconds() - c0,
        "steps": result["steps"],
        "samples": samples,
        "val_n": len(splits["val"]),
        "samples_per_s": samples / train_s,
        "train_loss": float(record["train_loss"]),
        "val": {k[4:]: float(v) for k, v in record.items() if k.startswith("val_")},
    }


# ----------------------------------------------------------------------------- all sections


def run_sections(
    preset: Preset,
    args: argparse.Namespace,
    tmp: Path,
    sections: dict[str, dict[str, Any]],
    save: Callable[[], Any],
) -> None:
    """Runs the sections in order into `sections`, calling `save` after each."""
    t_start = time.perf_counter()

    def over_budget() -> bool:
        return time.perf_counter() - t_start > args.budget_s

    splits: dict[str, ScenarioSet] = {}

    def data() -> dict[str, Any]:
        info, built = data_section(preset, Path(args.data_root) if args.data_root else tmp / "data")
        splits.update(built)
        return info

    parts = {
        "train_step": lambda: train_step_section(preset, args.steps),
        "data": data,
        "epoch": lambda: epoch_section(preset, splits, tmp / "fit"),
        "tracin": lambda: tracin_section(preset, splits, args, over_budget),
    }
    assert tuple(parts) == SECTIONS
    for name, fn in parts.items():
        why = None
        if name != "train_step" and over_budget():
            why = f"over budget ({args.budget_s:g} s)"
        elif name in ("tracin", "epoch") and not splits:
            why = "no data"
        if why is None:
            t0 = time.perf_counter()
            sections[name] = {"ran": True, **fn(), "section_s": time.perf_counter() - t0}
        else:
            sections[name] = {"ran": False, "why": why}
        save()


# ----------------------------------------------------------------------------- report

COLUMNS = ["section", "measure", "n", "seconds", "per_s", "x_loop", "compile_s", "gflop_per_ex",
           "tflop_per_s", "value"]  # fmt: skip


def _pass_row(label: str, fig: dict[str, Any]) -> dict[str, Any]:
    row = {"measure": label, "n": fig["examples"], "seconds": fig["seconds"],
           "per_s": fig["examples_per_s"], "compile_s": fig["compile_s"]}  # fmt: skip
    return {**row, "x_loop": fig["x_loop"]} if "x_loop" in fig else row


def section_rows(name: str, s: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one section: one per measurement, or one saying why it did not run."""
    if not s.get("ran"):
        return [{"measure": f"skipped: {s.get('why', 'not run')}"}]
    if name == "train_step":
        return [{"measure": f"train step B={s['batch']}", "n": s["steps"] * s["batch"],
                 "seconds": s["seconds"], "per_s": s["samples_per_s"], "compile_s": s["compile_s"],
                 "gflop_per_ex": s["gflop_per_example"], "tflop_per_s": s["tflop_per_s"]}]  # fmt: skip
    if name == "data":
        what = "load train+val (cache hit)" if s["cache_hit"] else "build train+val"
        return [{"measure": what, "n": s["n_train"] + s["n_val"], "seconds": s["seconds"],
                 "per_s": s["scenarios_per_s"]}]  # fmt: skip
    if name == "tracin":
        rows = [_pass_row("val gradient (jvp)", s["val_grad"])]
        for mode, fig in s["modes"].items():
            label = f"{mode} pass" + (" (prefix)" if mode == "loop" else "")
            rows.append(_pass_row(label, fig) if fig["ran"] else {"measure": f"{mode}: skipped"})
        return [*rows, {"measure": "scores max rel diff", "value": s["max_rel_diff"]}]
    return [  # epoch
        {"measure": "fit, 1 epoch", "seconds": s["fit_s"], "compile_s": s["jax_compile_s"]},
        {
            "measure": f"  train pass ({s['steps']} steps)",
            "n": s["samples"],
            "seconds": s["train_s"],
            "per_s": s["samples_per_s"],
        },
        {"measure": "  val eval (with compile)", "n": s["val_n"], "seconds": s["eval_s"]},
        {"measure": "  init+eval+checkpoint", "seconds": s["rest_s"]},
        {"measure": "val plan_ade", "value": s["val"]["plan_ade"]},
    ]


def table_rows(sections: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"section": name, **r} for name, s in sections.items() for r in section_rows(name, s)]
