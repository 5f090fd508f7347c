"""The scores stage: which score file a run reads, computing it once, and loading it.

One file per (preset model, epochs, training data, scoring options) holds every base score
(TracIn, metadata, metadata mean, loss, hybrid, random); LiSSA has its own file. Metadata and
random scores need no model and are computed in place. Files are named by a digest of what they
depend on, so two runs that need the same scores share one file.

A file is only used if it still fits (`load_checked`): its tokens are the training split's, in
order; every score has one finite value per example; and its recorded `recipe` (a digest of the
name's inputs plus the reference run's training settings) is the run's. Otherwise the stage says
why and recomputes it, or refuses (`run.py --refuse-stale-scores`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.layout import Layout, digest
from experiments.runconfig import RunConfig
from gf_jax.config import Preset, to_dict
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet

BASE_SCORES = ("tracin", "metadata", "metadata_mean", "loss", "hybrid", "random")


def tracin_options(cfg: RunConfig) -> dict[str, Any]:
    """The options of the base score file (they enter its name)."""
    return {
        "mode": cfg.tracin_mode,
        "checkpoints": cfg.tracin_checkpoints,
        "sign": float(cfg.tracin_sign),
        "scoring_dropout": cfg.scoring_dropout,
        "chunk_size": cfg.chunk,
    }


def _inputs(cfg: RunConfig, preset: Preset) -> dict[str, Any]:
    """What the score file's name is a digest of: model, epochs, training data, options."""
    data_key = store.split_key(store.split_recipe(preset.data, "train"))
    base = {"preset": to_dict(preset.model), "train": preset.train.epochs, "data": data_key}
    if cfg.method == "lissa":
        lissa = cfg.lissa
        opts = {"depth": lissa.depth, "repeats": lissa.repeats, "batch": lissa.batch_size}
        return {**base, **opts, "chunk": cfg.chunk}
    return {**base, **tracin_options(cfg)}


def score_file(cfg: RunConfig, preset: Preset, layout: Layout) -> tuple[Path, tuple[str, ...]]:
    """The score file `cfg` reads and the scores it holds; nothing is computed here."""
    if cfg.method == "lissa":
        return layout.score_file(f"{preset.name}_lissa_{digest(_inputs(cfg, preset))}"), ("lissa",)
    return layout.score_file(f"{preset.name}_scores_{digest(_inputs(cfg, preset))}"), BASE_SCORES


def recipe(cfg: RunConfig, preset: Preset, reference: Preset) -> str:
    """The digest a score file records and is checked against: its name's inputs plus the
    reference run's training settings (learning rate, schedule...), which the name omits."""
    return digest({"inputs": _inputs(cfg, preset), "reference": to_dict(reference.train)})


def model_free_scores(cfg: RunConfig, train: ScenarioSet) -> dict[str, np.ndarray]:
    """Metadata and random scores: cheap, no reference run."""
    from valuation import metadata, scores

    return {
        "metadata": metadata.metadata_scores(train, cfg.metadata),
        "random": scores.random_scores(len(train), cfg.seed),
    }


def compute(
    cfg: RunConfig,
    preset: Preset,
    splits: dict[str, ScenarioSet],
    reference: Path,
    path: Path,
    which: tuple[str, ...],
    *,
    recipe: str,
) -> None:
    """Computes `which` from the reference run's checkpoints and writes `path` atomically,
    recording `recipe` (see `recipe()`) for `load_checked`."""
    from valuation import gameformer, scores

    print(f"scores: computing {', '.join(which)} -> {path}")
    t0 = time.perf_counter()
    if cfg.method == "lissa":
        named, desc = gameformer.auto_lissa_scores(
            preset,
            splits["train"],
            splits["val"],
            reference,
            options=cfg.lissa,
            chunk_size=cfg.chunk,
        )
    else:
        named, desc = gameformer.compute_scores(
            preset,
            splits["train"],
            splits["val"],
            reference,
            which=which,
            metadata_composite="weighted",
            **tracin_options(cfg),
        )
    desc["total_seconds"] = time.perf_counter() - t0
    desc["recipe"] = recipe
    scores.save_scores(path, named, desc, tokens=splits["train"].meta["token"])
    print(f"scores: done in {desc['total_seconds']:.1f} s")


def load_checked(
    cfg: RunConfig, path: Path, train: ScenarioSet, recipe: str, which: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The file's scores, with the metadata composite `cfg` asks for applied, after checking
    that the file fits `train` and `recipe`; raises
    `valuation.scores.ScoreFileError` ("PATH: problem") when it is unreadable or stale."""
    from valuation import scores

    named, desc = scores.load_scores(path)
    problem = stale(named, desc, train.meta["token"], recipe, which)
    if problem:
        raise scores.ScoreFileError(f"{path}: {problem}")
    return _with_composite(cfg, named), desc


def stale(
    named: dict[str, np.ndarray],
    desc: dict[str, Any],
    tokens: np.ndarray,
    recipe: str,
    which: tuple[str, ...],
) -> str | None:
    """Why a loaded score file does not fit the training set and recipe, or None if it does."""
    want = np.asarray(tokens, dtype=str)
    if "token" not in named:
        return "holds no training-set tokens"
    got = np.asarray(named["token"], dtype=str)
    if got.shape != want.shape:
        return f"holds {got.size} tokens, the training set has {want.size}"
    if differ := int(np.sum(got != want)):
        return f"tokens do not match the training set ({differ} of {want.size} differ)"
    if missing := [k for k in which if k not in named]:
        return f"lacks the scores {', '.join(missing)}"
    for name, s in named.items():
        if name == "token":
            continue
        if s.shape != want.shape or not np.issubdtype(s.dtype, np.number):
            return f"score {name} has shape {s.shape} ({s.dtype}), the training set has {want.size}"
        if bad := int(np.sum(~np.isfinite(s))):
            return f"score {name} has {bad} non-finite values"
    if desc.get("recipe") != recipe:
        got_recipe = desc.get("recipe", "none recorded")
        return f"scoring recipe {got_recipe} is not this run's {recipe}"
    return None


def _with_composite(cfg: RunConfig, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Swaps in the mean metadata composite (and its hybrid) when `cfg` asks for it."""
    from valuation import scores

    if cfg.method in ("metadata", "hybrid") and cfg.metadata == "mean":
        named["metadata"] = named["metadata_mean"]
        named["hybrid"] = scores.hybrid(named["tracin"], named["metadata_mean"])
    return named
