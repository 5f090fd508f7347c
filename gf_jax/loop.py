"""The epoch loop's pieces: the state a run carries, its start or resume, one epoch, its commit.

`fit` (gf_jax.train) calls these in order: `init_state`, then `run_epoch` and `commit_epoch` per
epoch. Randomness follows the state, not the process: the epoch's examples come from
(seed, epoch), the dropout key from (seed, global step), so a resumed run is bit-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
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
    """Fresh parameters from the seed, or the last complete checkpoint when resuming."""
    mcfg, tcfg = trainer.preset.model, trainer.preset.train
    params = model.init_params(mcfg, jax.random.fold_in(jax.random.key(tcfg.seed), 0))
    opt_state = steps.make_optimizer(tcfg).init(params)
    epoch, step, history = 0, 0, ()
    latest = trainer.checkpoints.latest() if resume else None
    if latest is not None:
        params, opt_state, meta = trainer.checkpoints.restore(latest, opt_state)
        epoch, step, history = meta["epoch"] + 1, meta["step"], tuple(meta["history"])
    return TrainState(
        params=mesh_lib.replicate(params, trainer.mesh),
        opt_state=mesh_lib.replicate(opt_state, trainer.mesh),
        epoch=epoch,
        step=step,
        history=history,
    )


def run_epoch(trainer: Trainer, state: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Trains epoch `state.epoch`, evaluates on val; the new state and the epoch's record.

    `state`'s arrays are donated to the steps: use only the returned state afterwards.
    """
    tcfg = trainer.preset.train
    params, opt_state, step, train_loss, seconds = train_pass(trainer, state)
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
        "train_seconds": seconds,
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
    check = functools.partial(finite_loss, epoch=epoch, where=trainer.checkpoints.root)
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
    """
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


def finite_loss(loss: jax.Array, at_step: int, *, epoch: int, where: Path) -> float:
    """The loss as a float; TrainingError naming the step and the kept checkpoint if not finite."""
    value = float(loss)
    if not math.isfinite(value):
        raise workdir_lib.TrainingError(
            f"non-finite loss {value} at epoch {epoch + 1}, step {at_step}; "
            f"the last good checkpoint is kept in {where}"
        )
    return value
