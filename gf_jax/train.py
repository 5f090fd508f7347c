"""Training GameFormer: `fit` runs a workdir's epochs, evaluates, and writes `result.json` once.

`fit` trains on a ScenarioSet for `epochs`, drawing each epoch's examples from a caller-supplied
distribution (the curriculum), evaluating on val after every epoch and on test with the best-val
parameters at the end. Everything random flows from `TrainConfig.seed`: the epoch's sample order
from `(seed, epoch)`, the dropout key from `(seed, global step)`. A resumed run therefore replays
exactly the stream an uninterrupted run would have seen. The pieces live in their own modules
(`steps`, `sampling`, `evaluate`, `workdir`, `loop`); the names callers use are re-exported here.

    python -m gf_jax.train --preset cpu --seed 0 --workdir runs/uniform/seed0
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from gf_jax import atomic, checkpoint, loop, runtime, steps
from gf_jax import mesh as mesh_lib
from gf_jax import workdir as workdir_lib
from gf_jax.config import Preset, resolve_preset, to_dict
from gf_jax.data.schema import ScenarioSet
from gf_jax.evaluate import METRIC_KEYS, evaluate
from gf_jax.sampling import Sampling, batches, epoch_indices
from gf_jax.steps import compiled_steps, eval_step, make_optimizer, train_step
from gf_jax.workdir import TrainingError

__all__ = [  # fit's API, and the names callers used to import from here
    "METRIC_KEYS",
    "FitResult",
    "Sampling",
    "TrainingError",
    "batches",
    "compiled_steps",
    "epoch_indices",
    "eval_step",
    "evaluate",
    "fit",
    "main",
    "make_optimizer",
    "train_step",
]

Params = Any
# The keys `fit` itself writes to result.json; `extra_result` may not reuse them.
RESULT_KEYS = frozenset(
    {"best_epoch", *METRIC_KEYS, "history", "config", "steps", "test", "fit_seconds"}
)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit` returns; the best parameters are read from the workdir only when asked for.

    Attributes:
      result: the contents of `result.json`.
      workdir: the run's folder, holding the best-val checkpoint under `checkpoints/best`.
    """

    result: dict[str, Any]
    workdir: Path

    @functools.cached_property
    def best_params(self) -> Params:
        """The best-validation-epoch parameters, restored on first use (then cached)."""
        return checkpoint.CheckpointStore(self.workdir / workdir_lib.CHECKPOINTS_DIR).params("best")

    @property
    def params(self) -> Params:
        """`best_params` under its former name."""
        return self.best_params


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
    extra_result: dict | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Trains GameFormer and writes checkpoints, `metrics.jsonl`, `config.json`, `result.json`.

    Args:
      preset: model, data and training configs (the train config's seed drives everything).
      train, val, test: the splits; test is evaluated once, with the best-val parameters.
      workdir: output folder; locked while the run is alive.
      sampling: None (uniform shuffled passes), int array (subset), or epoch -> probabilities.
      keep_all_checkpoints: keep every epoch's checkpoint (reference runs for TracIn).
      resume: continue from the last complete checkpoint in `workdir`; a finished run there is
        returned as it is.
      overwrite: allow replacing a finished run in `workdir`.
      extra_config: merged into the saved config (e.g. method and curriculum settings).
      extra_result: merged into `result.json` (e.g. method, seed, timings); its keys may not be
        ones `fit` writes itself (RESULT_KEYS). `fit_seconds` is this call's wall time.
      mesh: devices to train on (default: a `data` mesh over all devices).
    """
    t0 = time.perf_counter()
    preset.validate()
    clash = sorted(RESULT_KEYS & set(extra_result or {}))
    if clash:
        raise ValueError(f"extra_result: keys {clash} are written by fit itself")
    workdir = Path(workdir)
    with workdir_lib.lock(workdir):
        result_path = workdir / workdir_lib.RESULT_FILE
        if result_path.exists() and not overwrite and not resume:
            raise TrainingError(f"{workdir}: holds a finished run; pass --overwrite to replace it")
        if result_path.exists() and resume:
            return FitResult(json.loads(result_path.read_text()), workdir)
        config = {"preset": to_dict(preset), **(extra_config or {})}
        ckpts = workdir_lib.prepare(workdir, config, resume=resume, keep_all=keep_all_checkpoints)
        trainer = make_trainer(preset, train, val, sampling, ckpts, mesh=mesh, progress=progress)
        state = loop.init_state(trainer, resume=resume)
        log = workdir / workdir_lib.METRICS_FILE
        if state.epoch:  # resumed: drop log rows of an epoch whose checkpoint never landed
            workdir_lib.truncate_jsonl(log, state.epoch)
        while state.epoch < preset.train.epochs:
            # Looked up on the module at each call, so a test can simulate a kill between epochs.
            state, record = loop.run_epoch(trainer, state)
            loop.commit_epoch(trainer, state, record, log)
        result = finish(trainer, state, test, config)
        result = {**result, "fit_seconds": time.perf_counter() - t0, **(extra_result or {})}
        atomic.write_json(result_path, result)
        return FitResult(result, workdir)


def make_trainer(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    sampling: Sampling,
    ckpts: checkpoint.CheckpointStore,
    *,
    mesh: jax.sharding.Mesh | None,
    progress: bool,
) -> loop.Trainer:
    """The run's fixed parts: the mesh (checked against the batch), the compiled steps."""
    tcfg = preset.train
    mesh = mesh or mesh_lib.data_mesh()
    n_dev = mesh.devices.size
    if tcfg.batch_size % (n_dev * tcfg.grad_accum):
        raise ValueError(
            f"batch_size {tcfg.batch_size} must be divisible by grad_accum x devices "
            f"({tcfg.grad_accum} x {n_dev})"
        )
    step_fn, eval_fn = steps.compiled_steps(preset.model, tcfg)
    return loop.Trainer(preset, train, val, sampling, mesh, step_fn, eval_fn, ckpts, progress)


def finish(
    trainer: loop.Trainer, state: loop.TrainState, test: ScenarioSet | None, config: dict
) -> dict[str, Any]:
    """The result of a finished run: the best-val epoch's metrics, and test at that epoch."""
    history = list(state.history)
    best = min(history, key=lambda r: r["val_plan_ade"])
    result: dict[str, Any] = {
        "best_epoch": best["epoch"],
        **{k: best[f"val_{k}"] for k in METRIC_KEYS},
        "history": history,
        "config": config,
        "steps": state.step,
    }
    if test is not None:
        result["test"] = evaluate(
            trainer.checkpoints.params("best"),
            test,
            trainer.preset.model,
            batch_size=trainer.preset.train.eval_batch_size,
            mesh=trainer.mesh,
            step_fn=trainer.eval_fn,
        )
    return result


# ----------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m gf_jax.train`."""
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from gf_jax.data import store  # the data layer only when training from the command line

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


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
