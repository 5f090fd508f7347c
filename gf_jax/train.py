"""Training GameFormer: a jitted, donated train step, per-epoch sampling, evaluation and resume.

`fit` trains on a ScenarioSet for `epochs`, drawing each epoch's examples from a caller-supplied
distribution (the curriculum), evaluating on val after every epoch and on test with the best-val
parameters at the end. Everything random flows from `TrainConfig.seed`: the epoch's sample order
from `(seed, epoch)`, the dropout key from `(seed, global step)`. A resumed run therefore replays
exactly the stream an uninterrupted run would have seen.

    python -m gf_jax.train --preset cpu --seed 0 --workdir runs/uniform/seed0
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from gf_jax import atomic, checkpoint, losses, metrics, model
from gf_jax import mesh as mesh_lib
from gf_jax.config import ModelConfig, Preset, TrainConfig, get_preset, to_dict
from gf_jax.data.schema import ScenarioSet

Params = Any
Sampling = Callable[[int], np.ndarray] | np.ndarray | None
METRIC_KEYS = ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe", "pred_ade", "pred_fde")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a locked or finished workdir)."""


# ----------------------------------------------------------------------------- optimizer


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW as PyTorch's (decoupled decay on every parameter) after global-norm clipping.

    The learning rate is applied outside (`-lr * update`) so that the per-epoch schedule is an
    argument of the jitted step, not a constant baked into it (no recompiles).
    """
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
        optax.add_decayed_weights(cfg.weight_decay),
    )


# ----------------------------------------------------------------------------- steps


def train_step(
    params: Params,
    opt_state: Any,
    batch: dict,
    weight_B: jax.Array,
    rng: jax.Array,
    lr: jax.Array,
    *,
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
    grad_accum: int,
) -> tuple[Params, Any, jax.Array]:
    """One optimizer step on a (possibly padded) batch; gradient accumulation over micro-batches.

    Returns the new params, optimizer state and the batch's mean loss.
    """

    def micro(b: dict, w: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        # Sum (not mean) per micro-batch so that accumulation equals one big weighted mean.
        def f(p):
            return jnp.sum(
                losses.per_example_loss(model.apply(p, b, model_cfg, rng=key), b, model_cfg)[
                    "total"
                ]
                * w
            )

        return jax.value_and_grad(f)(params)

    total_w = jnp.maximum(jnp.sum(weight_B), 1.0)
    if grad_accum == 1:
        loss_sum, grads = micro(batch, weight_B, rng)
    else:
        split = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), (batch, weight_B))
        keys = jax.random.split(rng, grad_accum)

        def body(carry, xs):
            (b, w), key = xs
            loss_sum, grads = micro(b, w, key)
            return jax.tree.map(jnp.add, carry, (loss_sum, grads)), None

        zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
        (loss_sum, grads), _ = jax.lax.scan(body, zero, (split, keys))
    grads = jax.tree.map(lambda g: g / total_w, grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state, loss_sum / total_w


def eval_step(params: Params, batch: dict, *, model_cfg: ModelConfig) -> dict[str, jax.Array]:
    """Per-example loss and metric sums for one batch (eval mode, no dropout)."""
    outputs = model.apply(params, batch, model_cfg)
    terms = losses.loss_terms(outputs, batch, model_cfg)
    return {"loss": terms["total"], **metrics.per_example_metrics(outputs, terms, batch)}


def compiled_steps(model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[Callable, Callable]:
    """The jitted train and eval steps for a config pair, built once per process.

    Caching the jitted callables means a second `fit` with the same model and optimizer (a sweep,
    a resumed run, a test) reuses the compiled executables instead of recompiling. Epoch counts
    and learning rates do not enter the step, so they do not split the cache.
    """
    return _compiled_steps(
        model_cfg, train_cfg.clip_norm, train_cfg.weight_decay, train_cfg.grad_accum
    )


@functools.lru_cache(maxsize=16)
def _compiled_steps(
    model_cfg: ModelConfig, clip_norm: float, weight_decay: float, grad_accum: int
) -> tuple[Callable, Callable]:
    tx = make_optimizer(TrainConfig(clip_norm=clip_norm, weight_decay=weight_decay))
    train_fn = jax.jit(
        functools.partial(train_step, model_cfg=model_cfg, tx=tx, grad_accum=grad_accum),
        donate_argnums=(0, 1),
    )
    eval_fn = jax.jit(functools.partial(eval_step, model_cfg=model_cfg))
    return train_fn, eval_fn


# ----------------------------------------------------------------------------- data


def epoch_indices(n: int, epoch: int, seed: int, sampling: Sampling) -> np.ndarray:
    """The training example indices of 0-based `epoch`, a pure function of (seed, epoch).

    `sampling` None: a shuffled pass over all N examples (the original's loader).
    An int array: a shuffled pass over that subset (hard selection).
    A callable `epoch -> probabilities [N]`: N draws with replacement (the released curriculum).
    """
    rng = np.random.default_rng([seed, epoch, 0x5A3])
    if sampling is None:
        return rng.permutation(n)
    if callable(sampling):
        p = np.asarray(sampling(epoch), np.float64)
        if p.shape != (n,) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"epoch {epoch}: sampling probabilities must be [{n}], finite, >= 0")
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    subset = np.asarray(sampling)
    if subset.ndim != 1 or subset.size == 0 or subset.min() < 0 or subset.max() >= n:
        raise ValueError(f"subset of training indices must be a non-empty 1-D array in [0, {n})")
    return rng.permutation(subset)


def batches(
    data: ScenarioSet, indices: np.ndarray, batch_size: int, neighbors: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Fixed-size host batches; the last one is padded with example 0 and weight 0."""
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        weight = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weight[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        idx_sorted = np.sort(idx)  # memmaps read faster in order; undo it afterwards
        inv = np.argsort(np.argsort(idx))
        full = data.batch(neighbors)
        yield {k: np.asarray(v[idx_sorted])[inv] for k, v in full.items()}, weight


def _aggregate(sums: dict[str, list[np.ndarray]], weights: list[np.ndarray]) -> dict[str, float]:
    w = np.concatenate(weights)
    per = {k: np.concatenate(v) for k, v in sums.items()}
    out = {"loss": float(np.sum(per["loss"] * w) / w.sum())}
    agg = metrics.aggregate({k: v[w > 0] for k, v in per.items() if k != "loss"})
    out.update({k: float(v) for k, v in agg.items()})
    return out


def evaluate(
    params: Params,
    data: ScenarioSet,
    model_cfg: ModelConfig,
    *,
    batch_size: int = 64,
    mesh: jax.sharding.Mesh | None = None,
    step_fn: Callable | None = None,
) -> dict[str, float]:
    """Loss and planning/prediction metrics over a whole split (eval mode)."""
    mesh = mesh or mesh_lib.data_mesh()
    batch_size = mesh_lib.round_up_to_devices(batch_size, mesh)
    step_fn = step_fn or jax.jit(functools.partial(eval_step, model_cfg=model_cfg))
    sums: dict[str, list[np.ndarray]] = {}
    weights = []
    for batch, weight in batches(data, np.arange(len(data)), batch_size, model_cfg.neighbors):
        out = jax.device_get(step_fn(params, mesh_lib.shard_batch(batch, mesh)))
        for k, v in out.items():
            sums.setdefault(k, []).append(np.asarray(v))
        weights.append(weight)
    return _aggregate(sums, weights)


# ----------------------------------------------------------------------------- workdir


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """An exclusive lock on the workdir; a second writer is refused at once."""
    workdir.mkdir(parents=True, exist_ok=True)
    f = open(workdir / ".lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        f.close()
        raise TrainingError(f"{workdir}: in use by another running job (lock held)") from e
    try:
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- fit


@dataclasses.dataclass(frozen=True)
class FitResult:
    params: Params
    result: dict[str, Any]


def fit(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    test: ScenarioSet | None = None,
    *,
    workdir: str | os.PathLike,
    sampling: Sampling = None,
    keep_all_checkpoints: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    extra_config: dict | None = None,
    mesh: jax.sharding.Mesh | None = None,
    _stop_after_epoch: int | None = None,
) -> FitResult:
    """Trains GameFormer and writes checkpoints, `metrics.jsonl`, `config.json`, `result.json`.

    Args:
      preset: model, data and training configs (the train config's seed drives everything).
      train, val, test: the splits; test is evaluated once, with the best-val parameters.
      workdir: output folder; locked while the run is alive.
      sampling: None (uniform shuffled passes), int array (subset), or epoch -> probabilities.
      keep_all_checkpoints: keep every epoch's checkpoint (reference runs for TracIn).
      resume: continue from the last complete checkpoint in `workdir`.
      overwrite: allow replacing a finished run in `workdir`.
      extra_config: merged into the saved config (e.g. method and curriculum settings).
      mesh: devices to train on (default: a `data` mesh over all devices).
      _stop_after_epoch: testing hook that simulates a kill after that many epochs.
    """
    workdir = Path(workdir)
    mcfg, tcfg = preset.model, preset.train
    preset.validate()
    with workdir_lock(workdir):
        result_path = workdir / "result.json"
        if result_path.exists() and not overwrite and not resume:
            raise TrainingError(f"{workdir}: holds a finished run; pass --overwrite to replace it")
        if result_path.exists() and resume:
            result = json.loads(result_path.read_text())
            params = checkpoint.CheckpointStore(workdir / "checkpoints").params("best")
            return FitResult(params, result)
        ckpts = checkpoint.CheckpointStore(workdir / "checkpoints", keep_all=keep_all_checkpoints)
        if not resume:
            ckpts.clear()
            (workdir / "metrics.jsonl").unlink(missing_ok=True)
            result_path.unlink(missing_ok=True)
        config = {"preset": to_dict(preset), **(extra_config or {})}
        atomic.write_json(workdir / "config.json", config)

        mesh = mesh or mesh_lib.data_mesh()
        n_dev = mesh.devices.size
        if tcfg.batch_size % (n_dev * tcfg.grad_accum):
            raise ValueError(
                f"batch_size {tcfg.batch_size} must be divisible by grad_accum x devices "
                f"({tcfg.grad_accum} x {n_dev})"
            )
        tx = make_optimizer(tcfg)
        key = jax.random.key(tcfg.seed)
        params = model.init_params(mcfg, jax.random.fold_in(key, 0))
        opt_state = tx.init(params)
        start_epoch, step, history = 0, 0, []
        if resume and ckpts.latest() is not None:
            params, opt_state, meta = ckpts.restore(ckpts.latest(), opt_state)
            start_epoch, step, history = meta["epoch"] + 1, meta["step"], meta["history"]
            _truncate_jsonl(workdir / "metrics.jsonl", start_epoch)
        params = mesh_lib.replicate(params, mesh)
        opt_state = mesh_lib.replicate(opt_state, mesh)

        step_fn, eval_fn = compiled_steps(mcfg, tcfg)
        dropout_key = jax.random.fold_in(key, 1)
        n = len(train)

        for epoch in range(start_epoch, tcfg.epochs):
            lr = tcfg.lr_at_epoch(epoch)
            idx = epoch_indices(n, epoch, tcfg.seed, sampling)
            n_batches = math.ceil(len(idx) / tcfg.batch_size)
            bar = tqdm(
                batches(train, idx, tcfg.batch_size, mcfg.neighbors),
                total=n_batches,
                desc=f"epoch {epoch + 1}/{tcfg.epochs}",
                unit="batch",
                disable=not progress,
                leave=False,
            )
            t0 = time.perf_counter()
            pending: jax.Array | None = None
            loss_sum, loss_count = 0.0, 0

            check = functools.partial(_finite_loss, epoch=epoch, where=ckpts.root)
            for batch, weight in bar:
                rng = jax.random.fold_in(dropout_key, step)
                params, opt_state, loss = step_fn(
                    params,
                    opt_state,
                    mesh_lib.shard_batch(batch, mesh),
                    mesh_lib.shard_batch(weight, mesh),
                    rng,
                    jnp.float32(lr),
                )
                step += 1
                # Read the previous step's loss after dispatching this one: no stall per step.
                if pending is not None:
                    loss_sum += check(pending, step - 1)
                    loss_count += 1
                    bar.set_postfix(loss=f"{loss_sum / loss_count:.3f}")
                pending = loss
            if pending is not None:
                loss_sum += check(pending, step)
                loss_count += 1
            train_time = time.perf_counter() - t0

            val_metrics = evaluate(
                params, val, mcfg, batch_size=tcfg.eval_batch_size, mesh=mesh, step_fn=eval_fn
            )
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": lr,
                "train_loss": loss_sum / max(loss_count, 1),
                "train_seconds": train_time,
                **{f"val_{k}": v for k, v in val_metrics.items()},
            }
            history.append(record)
            best = min(history, key=lambda r: r["val_plan_ade"])
            is_best = best["epoch"] == epoch + 1
            ckpts.save(
                epoch,
                params,
                opt_state,
                {"step": step, "lr": lr, "history": history},
                is_best=is_best,
            )
            _append_jsonl(workdir / "metrics.jsonl", record)
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1:>3}  loss {record['train_loss']:.3f}  "
                    f"val ADE {val_metrics['plan_ade']:.3f}  FDE {val_metrics['plan_fde']:.3f}"
                    f"{'  *' if is_best else ''}"
                )
            if _stop_after_epoch is not None and epoch + 1 >= _stop_after_epoch:
                raise KeyboardInterrupt(f"stopped after epoch {epoch + 1} (test hook)")

        best = min(history, key=lambda r: r["val_plan_ade"])
        best_params = ckpts.params("best")
        result: dict[str, Any] = {
            "best_epoch": best["epoch"],
            **{k: best[f"val_{k}"] for k in METRIC_KEYS},
            "history": history,
            "config": config,
            "steps": step,
        }
        if test is not None:
            test_metrics = evaluate(
                best_params, test, mcfg, batch_size=tcfg.eval_batch_size, mesh=mesh, step_fn=eval_fn
            )
            result["test"] = test_metrics
        atomic.write_json(result_path, result)
        return FitResult(best_params, result)


def _finite_loss(loss: jax.Array, at_step: int, *, epoch: int, where: Path) -> float:
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingError(
            f"non-finite loss {value} at epoch {epoch + 1}, step {at_step}; "
            f"the last good checkpoint is kept in {where}"
        )
    return value


def _truncate_jsonl(path: Path, epochs: int) -> None:
    """Keeps the first `epochs` records: a kill between checkpoint and log leaves no duplicates."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["epoch"] <= epochs]
    atomic.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gf_jax.train", description="Uniform GameFormer training run."
    )
    p.add_argument(
        "--preset", default=None, help="paper | cpu | tiny (default: paper on GPU, else cpu)"
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (sampling, init, dropout)")
    p.add_argument("--workdir", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    p.add_argument(
        "--data",
        default=None,
        help="synthetic (default), npz:DIR, nuplan:DB_DIR,MAPS_DIR or real-samples",
    )
    p.add_argument("--data-root", default="runs/data", help="dataset cache folder")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run")
    p.add_argument("--keep-all-checkpoints", action="store_true", help="keep every epoch")
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator address host:port")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: process count")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's id")
    args = p.parse_args(argv)

    from gf_jax.data import store

    mesh_lib.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    preset = resolve_preset(args.preset, epochs=args.epochs, seed=args.seed, data=args.data)
    splits = store.load_splits(preset.data, root=args.data_root, verbose=True)
    try:
        out = fit(
            preset,
            splits["train"],
            splits["val"],
            splits["test"],
            workdir=args.workdir,
            resume=args.resume,
            overwrite=args.overwrite,
            keep_all_checkpoints=args.keep_all_checkpoints,
        )
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    r = out.result
    print(f"best epoch {r['best_epoch']}: " + "  ".join(f"{k} {r[k]:.3f}" for k in METRIC_KEYS))
    return 0


def resolve_preset(
    name: str | None, *, epochs: int | None = None, seed: int | None = None, data: str | None = None
) -> Preset:
    """The named preset (default by backend) with command-line overrides applied."""
    if name is None:
        name = "paper" if jax.default_backend() == "gpu" else "cpu"
        print(f"preset: {name} (JAX backend {jax.default_backend()})")
    preset = get_preset(name)
    train = preset.train
    if epochs is not None:
        scale = epochs / train.epochs
        ms = tuple(sorted({max(1, round(m * scale)) for m in train.lr_milestones}))
        train = dataclasses.replace(train, epochs=epochs, lr_milestones=ms)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    data_cfg = preset.data if data is None else dataclasses.replace(preset.data, source=data)
    return dataclasses.replace(preset, train=train, data=data_cfg).validate()


if __name__ == "__main__":
    sys.exit(main())
