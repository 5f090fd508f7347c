"""One retrain of the benchmark: train on a set of examples, record its per-scenario outcome.

A `RunSpec` names the run, the training seed and the examples it trains on (None: all). `retrain`
is resumable at two levels: a run whose outcome files exist is skipped (its recorded indices and
epochs must match, or the outcome is stale and refused), and an interrupted `fit` resumes from
its last checkpoint (scratch saved under another configuration is started over). Subsets train
with `gf_jax.train.fit(sampling=indices)`: each epoch is a shuffled pass over the subset.
Repeated fits in one process reuse the compiled train and eval steps (`gf_jax.steps.
compiled_steps` is cached per config pair; measured on the tiny preset: the first fit 157 s on
busy cores, the next ones 8.5 s, of which 3.2 s are checkpoint writes).

The outcome is written in two steps, the arrays then the JSON, so the JSON marks a complete
outcome; the retrain's checkpoints are deleted afterwards unless kept.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.attribution import outcomes, subsets
from experiments.attribution.layout import OUTCOME_JSON, OUTCOME_NPZ, Layout
from gf_jax import atomic, train
from gf_jax import workdir as workdir_lib
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import Preset, scale_milestones, to_dict
from gf_jax.data.schema import ScenarioSet


class StaleOutcomeError(RuntimeError):
    """A stored outcome was trained on other examples than the run now asks for."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One retrain.

    Attributes:
      name: the run's folder name (`experiments.attribution.layout`).
      kind: `reference`, `subset`, `ceiling` or `removal`.
      seed: the training seed.
      indices: the training examples (sorted int array); None: the whole training set.
      keep_all: keep every epoch's checkpoint (reference runs: the scorers read them).
      epochs: the run's epochs, milestones scaled with them (`AttributionConfig.retrain_epochs`);
        None: the preset's.
      labels: what identifies the run in the analysis (subset index, scorer, side, fraction).
    """

    name: str
    kind: str
    seed: int
    indices: np.ndarray | None = None
    keep_all: bool = False
    epochs: int | None = None
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)

    def digest(self, n_train: int) -> str:
        return subsets.digest(np.arange(n_train) if self.indices is None else self.indices)

    def train_epochs(self, preset: Preset) -> int:
        """The epochs this run trains for under the benchmark's `preset`."""
        return preset.train.epochs if self.epochs is None else self.epochs

    def schedule(self, preset: Preset) -> Preset:
        """`preset` with this run's seed, and its epochs with the milestones scaled to them."""
        t = preset.train
        epochs = self.train_epochs(preset)
        milestones = scale_milestones(t.lr_milestones, t.epochs, epochs)
        t = dataclasses.replace(t, seed=self.seed, epochs=epochs, lr_milestones=milestones)
        return dataclasses.replace(preset, train=t)


def load(layout: Layout, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(outcome.json, outcome.npz arrays) of a finished run, or None if it has not finished."""
    folder = layout.run(name)
    if not (folder / OUTCOME_JSON).exists():
        return None
    record = json.loads((folder / OUTCOME_JSON).read_text())
    with np.load(folder / OUTCOME_NPZ, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return record, arrays


def finished(layout: Layout, spec: RunSpec, n_train: int, preset: Preset) -> dict[str, Any] | None:
    """The outcome record of `spec` if it has finished, else None; StaleOutcomeError when the
    stored outcome was trained on other examples or for another number of epochs."""
    done = load(layout, spec.name)
    if done is None:
        return None
    record = done[0]
    if record["digest"] != spec.digest(n_train):
        raise StaleOutcomeError(
            f"{layout.run(spec.name)}: trained on other examples than this run needs "
            "(the scores or subsets changed); delete the folder to retrain it"
        )
    epochs = spec.train_epochs(preset)
    # Outcomes recorded before "epochs" was kept trained the preset's (the `epochs` budget).
    recorded = record.get("epochs", preset.train.epochs)
    if recorded != epochs:
        raise StaleOutcomeError(
            f"{layout.run(spec.name)}: trained for {recorded} epochs, "
            f"this run needs {epochs} (the retrain budget changed); delete the folder to "
            "retrain it"
        )
    return record


def fit(
    spec: RunSpec,
    preset: Preset,
    splits: dict[str, ScenarioSet],
    layout: Layout,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> train.FitResult:
    """`gf_jax.train.fit` of `spec` in its scratch folder (resumed unless `overwrite`)."""
    seeded = spec.schedule(preset)
    digest = spec.digest(len(splits["train"]))
    folder = layout.train(spec.name)
    best = CheckpointStore(folder / workdir_lib.CHECKPOINTS_DIR).path("best")
    if (folder / workdir_lib.RESULT_FILE).exists() and not best.exists():
        # Finished, but its checkpoints were deleted before its outcome was kept (the workdir
        # was copied without this run): the outcome needs the parameters, so train it again.
        overwrite = True
    if _saved_preset(folder) not in (None, json.loads(json.dumps(to_dict(seeded)))):
        # Scratch left by a run under another schedule or preset: nothing in it can be resumed.
        overwrite = True
    return train.fit(
        seeded,
        splits["train"],
        splits["val"],
        splits["test"],
        workdir=folder,
        sampling=spec.indices,
        keep_all_checkpoints=spec.keep_all,
        resume=not overwrite,
        overwrite=overwrite,
        progress=progress,
        extra_config={"attribution": {"run": spec.name, "kind": spec.kind, "digest": digest}},
    )


def _saved_preset(folder: Path) -> dict[str, Any] | None:
    """The preset of the run saved in scratch `folder`, None if there is none."""
    path = folder / workdir_lib.CONFIG_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())["preset"]


def retrain(
    spec: RunSpec,
    preset: Preset,
    splits: dict[str, ScenarioSet],
    layout: Layout,
    *,
    keep_checkpoints: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The outcome record of `spec`: read back if finished, else trained and written.

    `preset` is the benchmark's; the run's own seed and epochs replace its training ones.
    """
    n_train = len(splits["train"])
    done = finished(layout, spec, n_train, preset)
    if done is not None:
        return done
    t0 = time.perf_counter()
    fitted = fit(spec, preset, splits, layout, progress=progress)
    t1 = time.perf_counter()
    per_J = outcomes.per_example(fitted.best_params, splits["val"], preset)
    t2 = time.perf_counter()
    result = fitted.result
    record = {
        "name": spec.name,
        "kind": spec.kind,
        "seed": spec.seed,
        "labels": spec.labels,
        "n_train": n_train if spec.indices is None else len(spec.indices),
        "digest": spec.digest(n_train),
        "epochs": spec.train_epochs(preset),
        "best_epoch": result["best_epoch"],
        "steps": result["steps"],
        "val": {k: result[k] for k in train.METRIC_KEYS},
        "test": result.get("test", {}),
        "fit_seconds": result.get("fit_seconds"),
        "outcome_seconds": t2 - t1,
        "wall_seconds": t2 - t0,
    }
    write(layout.run(spec.name), record, per_J)
    if not (keep_checkpoints or spec.keep_all):
        shutil.rmtree(layout.train(spec.name) / "checkpoints", ignore_errors=True)
    return record


def write(folder: Path, record: dict[str, Any], per_J: dict[str, np.ndarray]) -> None:
    """The arrays first, then the JSON that marks the outcome complete (both atomic)."""

    def arrays(f: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v, np.float32) for k, v in per_J.items()})
        f.write(buf.getvalue())

    atomic.write_bytes(folder / OUTCOME_NPZ, arrays)
    atomic.write_json(folder / OUTCOME_JSON, record)
