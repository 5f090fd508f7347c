"""One method, one seed, as stages: data -> reference run -> scores -> curriculum training.

Every stage is cached in the workdir (`experiments.layout`) and says whether it hit the cache:
  1. data       the preset's splits, built once, memory-mapped.
  2. reference  uniform training with seed 0, every epoch checkpointed with its learning rate
                (only for methods whose scores need a trained model).
  3. scores     one file per scoring option set (`experiments.scoring`).
  4. training   the curriculum (or hard selection) from those scores; `result.json` holds the
                best-validation-epoch metrics, test metrics at that epoch, the per-epoch history
                and the resolved config.
An interrupted run resumes from its last checkpoint when started again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from curriculum import sampler
from experiments import scoring
from experiments.layout import REFERENCE_SEED, Layout
from experiments.runconfig import RunConfig
from gf_jax import config as gf_config
from gf_jax import train
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import Preset, to_dict
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet
from valuation.scores import ScoreFileError


class RunError(RuntimeError):
    """A run cannot proceed (conflicting workdir contents)."""


def resolve_preset(cfg: RunConfig, *, seed: int | None = None) -> Preset:
    """The run's preset with its epoch, seed, data and noise overrides applied."""
    return gf_config.resolve_preset(
        cfg.preset,
        epochs=cfg.epochs,
        seed=cfg.seed if seed is None else seed,
        data=cfg.data,
        noise=cfg.noise,
    )


def same_config(path: Path, config: dict) -> bool:
    """Whether the config saved at `path` is `config`; a preset saved before a field existed
    reads back with that field's default (so older runs stay cache hits)."""
    try:
        saved = json.loads(path.read_text())
        if "preset" in saved:
            saved["preset"] = to_dict(gf_config.preset_from_dict(saved["preset"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return saved == json.loads(json.dumps(config))


def train_or_reuse(
    preset: Preset,
    splits: dict[str, ScenarioSet],
    workdir: Path,
    *,
    extra_config: dict,
    extra_result: dict | None = None,
    sampling: Any = None,
    keep_all: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    label: str = "run",
) -> dict:
    """Trains into `workdir`, resuming an interrupted run; a finished run with the same config is
    a cache hit, one with another config an error unless `overwrite`."""
    config = {"preset": to_dict(preset), **extra_config}
    cfg_path = workdir / "config.json"
    if cfg_path.exists() and not overwrite and not same_config(cfg_path, config):
        # The reference run is shared by every method's run: --overwrite of one run never
        # replaces it, so its hint names the only ways out.
        fix = (
            "delete that folder to retrain it, or choose another --workdir"
            if label == "reference"
            else "pass --overwrite or choose another --workdir/--name"
        )
        raise RunError(f"{workdir}: holds a {label} with a different configuration; {fix}")
    finished = (workdir / "result.json").exists() and not overwrite
    resuming = not finished and not overwrite and (workdir / "checkpoints").is_dir()
    state = "cache hit" if finished else "resuming" if resuming else "training"
    print(f"{label}: {state} at {workdir}")
    fit = train.fit(
        preset,
        splits["train"],
        splits["val"],
        splits["test"],
        workdir=workdir,
        sampling=sampling,
        keep_all_checkpoints=keep_all,
        resume=not overwrite,
        overwrite=overwrite,
        progress=progress,
        extra_config=extra_config,
        extra_result=extra_result,
    )
    return fit.result


def reference_run(
    cfg: RunConfig, splits: dict[str, ScenarioSet], layout: Layout, *, progress: bool
) -> Path:
    """Uniform training with seed 0, every epoch kept: the checkpoints TracIn sums over."""
    ref = resolve_preset(cfg, seed=REFERENCE_SEED)
    workdir = layout.reference(cfg.data, cfg.noise)
    # A finished reference without its checkpoints (small files copied from another machine)
    # cannot be scored: train it again rather than fail inside the scoring stage.
    stripped = (workdir / "result.json").exists() and not CheckpointStore(
        workdir / "checkpoints", keep_all=True
    ).epochs()
    if stripped:
        print(f"reference: {workdir} holds a finished run without checkpoints; retraining it")
    train_or_reuse(
        ref,
        splits,
        workdir,
        extra_config={"method": "reference"},
        keep_all=True,
        overwrite=stripped,
        progress=progress,
        label="reference",
    )
    return workdir


def scores_for(
    cfg: RunConfig,
    preset: Preset,
    splits: dict[str, ScenarioSet],
    layout: Layout,
    *,
    progress: bool,
    refuse_stale_scores: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any], Path | None]:
    """All scores the method needs (plus the rest of its file), from cache when the file still
    fits the training set and recipe; a stale or unreadable file is said and recomputed, or with
    `refuse_stale_scores` a RunError."""
    if not cfg.uses_scores:
        return {}, {}, None
    if not cfg.needs_reference:
        named = scoring.model_free_scores(cfg, splits["train"])
        return named, {"kind": "model-free", "random_seed": cfg.seed}, None
    path, which = scoring.score_file(cfg, preset, layout)
    recipe = scoring.recipe(cfg, preset, resolve_preset(cfg, seed=REFERENCE_SEED))
    args = (cfg, path, splits["train"], recipe, which)
    if path.exists():
        try:
            named, desc = scoring.load_checked(*args)
            print(f"scores: cache hit at {path}")
            return named, desc, path
        except ScoreFileError as e:
            if refuse_stale_scores:
                raise RunError(f"scores: {e}; not recomputed (--refuse-stale-scores)") from None
            print(f"scores: {e}; recomputing")
    # The reference is needed only to compute: a valid score file (e.g. committed with a sweep's
    # small files) is used without the reference's checkpoints.
    reference = reference_run(cfg, splits, layout, progress=progress)
    scoring.compute(cfg, preset, splits, reference, path, which, recipe=recipe)
    try:
        named, desc = scoring.load_checked(*args)
    except ScoreFileError as e:  # e.g. a model whose scores overflow: never loop on it
        raise RunError(f"scores: {e} (just computed)") from None
    return named, desc, path


def sampling_for(
    cfg: RunConfig, preset: Preset, named: dict[str, np.ndarray], n: int
) -> tuple[Any, dict[str, Any]]:
    """The `fit` sampling (None, a subset, or a Curriculum) and a description of it."""
    if cfg.select is not None:
        score_N = named[cfg.method] if cfg.select_from != "random" else np.zeros(n)
        kept = sampler.select(score_N, cfg.select, cfg.select_from, seed=cfg.seed)
        return kept, {"kind": "select", "fraction": cfg.select, "which": cfg.select_from}
    if cfg.method == "uniform":
        return None, {"kind": "uniform"}
    schedule_cfg = cfg.schedule_config(preset.train.epochs)
    curriculum = sampler.Curriculum(schedule_cfg, named[cfg.method])
    return curriculum, {"kind": "curriculum", **to_dict(schedule_cfg)}


def corrupted_mass(sampling: Any, corrupted_N: np.ndarray, epochs: int) -> list[float]:
    """Share of each epoch's draws expected to fall on corrupted scenarios (uniform: their share)."""
    c = np.asarray(corrupted_N, bool)
    if sampling is None:
        return [float(c.mean())] * epochs
    if callable(sampling):
        return [float(np.dot(sampling(e), c)) for e in range(epochs)]
    return [float(c[np.asarray(sampling)].mean())] * epochs if len(c) else []


def run(
    cfg: RunConfig,
    layout: Layout,
    *,
    overwrite: bool = False,
    progress: bool = True,
    refuse_stale_scores: bool = False,
) -> dict:
    """Every stage for one method and seed; returns the result dict also written to disk.

    `refuse_stale_scores`: a score file that no longer fits is an error, not recomputed."""
    preset = resolve_preset(cfg)
    print(
        f"run: {cfg.run_name} seed {cfg.seed} | preset {preset.name} | data "
        f"{preset.data.source} | {preset.train.epochs} epochs | workdir {layout.root}"
    )
    t0 = time.perf_counter()
    splits = store.load_splits(preset.data, root=layout.data, verbose=True)
    named, score_desc, score_path = scores_for(
        cfg, preset, splits, layout, progress=progress, refuse_stale_scores=refuse_stale_scores
    )
    sampling, sampling_desc = sampling_for(cfg, preset, named, len(splits["train"]))
    extra_config = {
        "method": cfg.method,
        "name": cfg.run_name,
        "seed": cfg.seed,
        "run": cfg.to_dict(),
        "sampling": sampling_desc,
        "scores": layout.relative(score_path) if score_path else None,
    }
    corrupted = splits["train"].meta["corrupted"]
    extra_result = {
        "method": cfg.method,
        "name": cfg.run_name,
        "seed": cfg.seed,
        "corrupted_mass": corrupted_mass(sampling, corrupted, preset.train.epochs),
        "score_seconds": score_desc.get("total_seconds"),
        "setup_seconds": time.perf_counter() - t0,
    }
    return train_or_reuse(
        preset,
        splits,
        layout.run(cfg.run_name, cfg.seed),
        sampling=sampling,
        extra_config=extra_config,
        extra_result=extra_result,
        overwrite=overwrite,
        progress=progress,
    )
