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
import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from gf_jax import atomic, checkpoint, cli, loop, runtime, steps
from gf_jax import mesh as mesh_lib
from gf_jax import workdir as workdir_lib
from gf_jax.config import PRESETS, Preset, default_preset_name, resolve_preset, to_dict
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
      workdir: output folder; locked while the run is alive. In a multi-process run only
        process 0 takes the lock and writes there; every process returns the same result.
      sampling: None (uniform shuffled passes), int array (subset), or epoch -> probabilities.
      keep_all_checkpoints: keep every epoch's checkpoint (reference runs for TracIn).
      resume: continue from the newest checkpoint in `workdir` that reads back (a damaged newer
        one is reported and removed); a finished run there is returned as it is. Either is
        refused (TrainingError naming the differing keys) if its saved config is not `config`.
      overwrite: start over, replacing a finished or interrupted run in `workdir`. Without
        `resume` or `overwrite`, a workdir holding either is refused: no work is lost unasked.
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
    config = {"preset": to_dict(preset), **(extra_config or {})}
    with contextlib.ExitStack() as held:

        def open_workdir() -> dict[str, Any]:  # the lead's verdict, shared with every process
            held.enter_context(workdir_lib.lock(workdir))
            stale = workdir_lib.remove_temporaries(workdir)
            if stale:
                names = ", ".join(str(p.relative_to(workdir)) for p in stale)
                print(f"train: removed {names} in {workdir}, left by a killed run", file=sys.stderr)
            return workdir_lib.plan(workdir, config, resume=resume, overwrite=overwrite)

        plan = mesh_lib.on_lead(open_workdir)
        if plan["state"] == workdir_lib.FINISHED:
            return FitResult(plan["result"], workdir)
        ckpts = checkpoint.CheckpointStore(
            workdir / workdir_lib.CHECKPOINTS_DIR, keep_all=keep_all_checkpoints
        )
        trainer = make_trainer(preset, train, val, sampling, ckpts, mesh=mesh, progress=progress)
        fresh = plan["state"] == workdir_lib.FRESH
        state = loop.init_state(trainer, resume=not fresh)
        # Only now that the state is in memory is anything written (by the lead).
        mesh_lib.lead_does(
            lambda: workdir_lib.begin(workdir, config, fresh=fresh, history=state.history)
        )
        log = workdir / workdir_lib.METRICS_FILE
        loop.precompile(trainer, state)
        while state.epoch < preset.train.epochs:
            # Looked up on the module at each call, so a test can simulate a kill between epochs.
            state, record = loop.run_epoch(trainer, state)
            loop.commit_epoch(trainer, state, record, log)
        result = finish(trainer, state, test, config)
        result = {**result, "fit_seconds": time.perf_counter() - t0, **(extra_result or {})}
        mesh_lib.lead_does(lambda: atomic.write_json(workdir / workdir_lib.RESULT_FILE, result))
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
    progress = progress and mesh_lib.is_lead()  # one progress display per run
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
            loop.best_params(trainer, like=state.params),
            test,
            trainer.preset.model,
            batch_size=trainer.preset.train.eval_batch_size,
            mesh=trainer.mesh,
            step_fn=trainer.eval_fn,
        )
    return result


# ----------------------------------------------------------------------------- CLI


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m gf_jax.train`."""
    p = cli.ArgumentParser(
        prog="python -m gf_jax.train", description="Uniform GameFormer training run."
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="paper | cpu | tiny (default: paper on GPU, else cpu)",
    )
    p.add_argument(
        "--seed", type=_at_least(0), default=0, help="training seed (sampling, init, dropout)"
    )
    p.add_argument("--workdir", required=True, help="output folder")
    p.add_argument(
        "--epochs", type=_at_least(1), default=None, help="override the preset's epoch count"
    )
    p.add_argument(
        "--data",
        default=None,
        help="synthetic (default), npz:DIR, nuplan:DB_DIR,MAPS_DIR or real-samples",
    )
    p.add_argument("--data-root", default="runs/data", help="dataset cache folder")
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (or return a finished one)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start over, replacing a finished or interrupted run",
    )
    p.add_argument("--keep-all-checkpoints", action="store_true", help="keep every epoch")
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator address host:port")
    p.add_argument(
        "--num-processes", type=_at_least(1), default=None, help="multi-host: process count"
    )
    p.add_argument(
        "--process-id", type=_at_least(0), default=None, help="multi-host: this process's id"
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, all checked before any work: cli.UsageError (exit 2) naming the flag."""
    args = parser().parse_args(argv)
    mesh_lib.Cluster(args.coordinator, args.num_processes, args.process_id).validate()
    if args.data is not None:
        from gf_jax.data import store  # the data layer only when training from the command line
        from gf_jax.data.schema import DataError

        try:
            store.parse_source(args.data)
        except DataError as e:
            raise cli.UsageError(f"--data: {e}") from e
    return args


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gf_jax.train`: 0 done, 1 refused or failed (one line), 2 a wrong option."""
    args = parse_args(argv)
    from gf_jax.data import store  # the data layer only when training from the command line

    cluster = mesh_lib.Cluster(args.coordinator, args.num_processes, args.process_id)
    mesh_lib.initialize_distributed(cluster)
    lead = mesh_lib.is_lead()
    workdir = Path(args.workdir)
    mesh_lib.lead_does(lambda: workdir_lib.check_usable(workdir))  # before minutes of data work
    name = args.preset or default_preset_name(verbose=lead)
    preset = resolve_preset(name, epochs=args.epochs, seed=args.seed, data=args.data)
    splits = mesh_lib.lead_first(  # a shared data cache is built once, by the lead
        lambda: store.load_splits(preset.data, root=args.data_root, verbose=lead, progress=lead)
    )
    try:
        out = fit(
            preset,
            splits["train"],
            splits["val"],
            splits["test"],
            workdir=workdir,
            resume=args.resume,
            overwrite=args.overwrite,
            keep_all_checkpoints=args.keep_all_checkpoints,
        )
    except KeyboardInterrupt:
        cli.fail(f"interrupted; rerun with --resume to continue {workdir} from its last checkpoint")
        return 130
    r = out.result
    if lead:
        print(f"best epoch {r['best_epoch']}: " + "  ".join(f"{k} {r[k]:.3f}" for k in METRIC_KEYS))
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
