"""The epoch loop's pieces: the state a run carries, its start or resume, one epoch, its commit.

`fit` (gf_jax.train) calls these in order: `init_state`, then `run_epoch` and `commit_epoch` per
epoch. Randomness follows the state, not the process: the epoch's examples come from
(seed, epoch), the dropout key from (seed, global step), so a resumed run is bit-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from gf_jax import checkpoint, model, steps
from gf_jax import mesh as mesh_lib
from gf_jax import workdir as workdir_lib
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet
from gf_jax.evaluate import evaluate
from gf_jax.sampling import Sampling, batches, epoch_indices

Params = Any


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What stays fixed over a run's epochs.

    Attributes:
      preset: the run's model, data and training configs.
      train: the training split.
      val: the validation split, evaluated after every epoch.
      sampling: which examples each epoch draws (see `gf_jax.sampling.epoch_indices`).
      mesh: the devices; batches are sharded over them, parameters replicated.
      step_fn: the jitted train step (`steps.compiled_steps`).
      eval_fn: the jitted eval step.
      checkpoints: the run's checkpoint store.
      progress: show a progress bar and one line per epoch.
    """

    preset: Preset
    train: ScenarioSet
    val: ScenarioSet
    sampling: Sampling
    mesh: jax.sharding.Mesh
    step_fn: Callable[..., Any]
    eval_fn: Callable[..., Any]
    checkpoints: checkpoint.CheckpointStore
    progress: bool


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a run carries from one epoch to the next; a checkpoint restores all of it.

    Attributes:
      params: model parameters, replicated over the mesh (donated to the next step).
      opt_state: optimizer state, replicated (donated to the next step).
      epoch: the next 0-based epoch to run (= epochs finished).
      step: optimizer steps taken so far; the dropout key and the warm-up follow it.
      history: one record per finished epoch (lr, train loss, val metrics), oldest first.
    """

    params: Params
    opt_state: Any
    epoch: int
    step: int
    history: tuple[dict[str, Any], ...]


def init_state(trainer: Trainer, *, resume: bool) -> TrainState:
    """Fresh parameters from the seed, or the newest checkpoint that reads back when resuming.

    The lead reads the checkpoint (falling back past damaged ones, and saying so) and every
    other process receives it by broadcast, so only the lead needs the workdir's files.
    """
    mcfg, tcfg = trainer.preset.model, trainer.preset.train
    params = model.init_params(mcfg, jax.random.fold_in(jax.random.key(tcfg.seed), 0))
    opt_state = steps.make_optimizer(tcfg).init(params)
    epoch, step, history = 0, 0, ()
    held: dict[str, Any] = {}  # the lead's restored arrays, until they are broadcast

    def restore() -> dict | None:  # on the lead; its failure stops every process
        warn = functools.partial(tqdm.write, file=sys.stderr)
        found = trainer.checkpoints.restore_latest(opt_state, report=warn) if resume else None
        if found is None:
            return None
        held["arrays"] = found[:2]
        return found[2]

    meta = mesh_lib.on_lead(restore)
    if meta is not None:
        arrays = mesh_lib.broadcast_arrays(held.get("arrays"), like=(params, opt_state))
        params, opt_state = arrays
        epoch, step, history = meta["epoch"] + 1, meta["step"], tuple(meta["history"])
    return TrainState(
        params=mesh_lib.replicate(params, trainer.mesh),
        opt_state=mesh_lib.replicate(opt_state, trainer.mesh),
        epoch=epoch,
        step=step,
        history=history,
    )


def best_params(trainer: Trainer, like: Params) -> Params:
    """The best-validation parameters from `best/`, read by the lead, replicated on the mesh."""
    held: dict[str, Any] = {}

    def restore() -> None:  # on the lead; its failure stops every process
        held["params"] = trainer.checkpoints.params("best")

    mesh_lib.lead_does(restore)
    params = mesh_lib.broadcast_arrays(held.get("params"), like=like)
    return mesh_lib.replicate(params, trainer.mesh)


def precompile(trainer: Trainer, state: TrainState) -> None:
    """Multi-process: compiles the train and eval steps on every process, then waits for all.

    A collective's first run gives every process a fixed 30 s to arrive (gloo on CPU); compiling
    a step may take longer than that, and longer on one host than on another.
    """
    if jax.process_count() == 1:
        return
    mcfg, tcfg = trainer.preset.model, trainer.preset.train
    shard = functools.partial(mesh_lib.shard_batch, mesh=trainer.mesh)
    idx_B = np.arange(min(tcfg.batch_size, len(trainer.train)))
    batch, weight_B = next(batches(trainer.train, idx_B, tcfg.batch_size, mcfg.neighbors))
    lr = jnp.float32(tcfg.lr_at_step(0, 0))
    args = (state.params, state.opt_state, shard(batch), shard(weight_B), jax.random.key(0), lr)
    trainer.step_fn.lower(*args).compile()  # the later calls find it in JAX's cache
    eval_size = mesh_lib.round_up_to_devices(tcfg.eval_batch_size, trainer.mesh)
    idx_B = np.arange(min(eval_size, len(trainer.val)))
    batch, _ = next(batches(trainer.val, idx_B, eval_size, mcfg.neighbors))
    trainer.eval_fn.lower(state.params, shard(batch)).compile()
    mesh_lib.barrier()


def run_epoch(trainer: Trainer, state: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Trains epoch `state.epoch`, evaluates on val; the new state and the epoch's record.

    `state`'s arrays are donated to the steps: use only the returned state afterwards.
    """
    tcfg = trainer.preset.train
    params, opt_state, step, train_loss, seconds = train_pass(trainer, state)
    t0 = time.perf_counter()
    val_metrics = evaluate(
        params,
        trainer.val,
        trainer.preset.model,
        batch_size=tcfg.eval_batch_size,
        mesh=trainer.mesh,
        step_fn=trainer.eval_fn,
    )
    record = {
        "epoch": state.epoch + 1,
        "step": step,
        "lr": tcfg.lr_at_epoch(state.epoch),
        "train_loss": train_loss,
        # A process's first epoch includes compiling: the train step's in train_seconds, the
        # eval step's in eval_seconds (later epochs, and resumed runs after theirs, do not).
        "train_seconds": seconds,
        "eval_seconds": time.perf_counter() - t0,
        **{f"val_{k}": v for k, v in val_metrics.items()},
    }
    history = (*state.history, record)
    return TrainState(params, opt_state, state.epoch + 1, step, history), record


def train_pass(trainer: Trainer, state: TrainState) -> tuple[Params, Any, int, float, float]:
    """One epoch's optimizer steps: (params, opt_state, step, mean train loss, seconds)."""
    mcfg, tcfg = trainer.preset.model, trainer.preset.train
    epoch, step = state.epoch, state.step
    idx_N = epoch_indices(len(trainer.train), epoch, tcfg.seed, trainer.sampling)
    bar = tqdm(
        batches(trainer.train, idx_N, tcfg.batch_size, mcfg.neighbors),
        total=math.ceil(len(idx_N) / tcfg.batch_size),
        desc=f"epoch {epoch + 1}/{tcfg.epochs}",
        unit="batch",
        disable=not trainer.progress,
        leave=False,
    )
    dropout_key = jax.random.fold_in(jax.random.key(tcfg.seed), 1)
    last = trainer.checkpoints.path(epoch - 1) if epoch else None  # committed before this epoch
    check = functools.partial(finite_loss, epoch=epoch, last_checkpoint=last)
    params, opt_state = state.params, state.opt_state
    pending: jax.Array | None = None
    loss_sum, loss_count = 0.0, 0
    t0 = time.perf_counter()
    for batch, weight_B in bar:
        params, opt_state, loss = trainer.step_fn(
            params,
            opt_state,
            mesh_lib.shard_batch(batch, trainer.mesh),
            mesh_lib.shard_batch(weight_B, trainer.mesh),
            jax.random.fold_in(dropout_key, step),
            jnp.float32(tcfg.lr_at_step(epoch, step)),  # a traced argument: no recompiles
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
    return params, opt_state, step, loss_sum / max(loss_count, 1), time.perf_counter() - t0


def commit_epoch(trainer: Trainer, state: TrainState, record: dict[str, Any], log: Path) -> None:
    """Checkpoints the epoch just run (and `best/` if it is the best so far), then logs it.

    The checkpoint comes first: a kill in between leaves a log row too few, never one too many.
    Only the lead writes (the parameters are replicated, so they are everyone's); if it fails
    (a full disk), every process stops with its message.
    """
    mesh_lib.lead_does(lambda: _commit(trainer, state, record, log))


def _commit(trainer: Trainer, state: TrainState, record: dict[str, Any], log: Path) -> None:
    epoch = state.epoch - 1
    best = min(state.history, key=lambda r: r["val_plan_ade"])
    is_best = best["epoch"] == record["epoch"]
    meta = {"step": state.step, "lr": record["lr"], "history": list(state.history)}
    trainer.checkpoints.save(epoch, state.params, state.opt_state, meta, is_best=is_best)
    workdir_lib.append_jsonl(log, record)
    if trainer.progress:
        tqdm.write(
            f"epoch {record['epoch']:>3}  loss {record['train_loss']:.3f}  "
            f"val ADE {record['val_plan_ade']:.3f}  FDE {record['val_plan_fde']:.3f}"
            f"{'  *' if is_best else ''}"
        )


def finite_loss(
    loss: jax.Array, at_step: int, *, epoch: int, last_checkpoint: Path | None
) -> float:
    """The loss as a float; TrainingError naming the step and the kept checkpoint if not finite.

    Every process sees the same (replicated) loss, so all of them stop here together.
    """
    value = float(loss)
    if not math.isfinite(value):
        kept = (
            f"the last good checkpoint, {last_checkpoint} (epoch {epoch}), is kept"
            if last_checkpoint is not None
            else "no checkpoint was written before it"
        )
        raise workdir_lib.TrainingError(
            f"non-finite loss {value} at epoch {epoch + 1}, step {at_step}; {kept}"
        )
    return value
