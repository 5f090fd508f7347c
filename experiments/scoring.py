"""The scores stage: which score file a run reads, computing it once, and loading it.

One file per (preset model, epochs, training data, scoring options) holds every base score
(TracIn, metadata, metadata mean, loss, hybrid, random); LiSSA has its own file. Metadata and
random scores need no model and are computed in place. Files are named by a digest of what they
depend on, so two runs that need the same scores share one file.
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


def score_file(cfg: RunConfig, preset: Preset, layout: Layout) -> tuple[Path, tuple[str, ...]]:
    """The score file `cfg` reads and the scores it holds; nothing is computed here."""
    data_key = store.split_key(store.split_recipe(preset.data, "train"))
    base = {"preset": to_dict(preset.model), "train": preset.train.epochs, "data": data_key}
    if cfg.method == "lissa":
        opts = {"depth": cfg.lissa.depth, "repeats": cfg.lissa.repeats}
        opts["batch"] = cfg.lissa.batch_size
        name = f"{preset.name}_lissa_{digest({**base, **opts, 'chunk': cfg.chunk})}"
        return layout.score_file(name), ("lissa",)
    name = f"{preset.name}_scores_{digest({**base, **tracin_options(cfg)})}"
    return layout.score_file(name), BASE_SCORES


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
) -> None:
    """Computes `which` from the reference run's checkpoints and writes `path` atomically."""
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
    scores.save_scores(path, named, desc, tokens=splits["train"].meta["token"])
    print(f"scores: done in {desc['total_seconds']:.1f} s")


def load(cfg: RunConfig, path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The file's scores, with the metadata composite `cfg` asks for applied."""
    from valuation import scores

    named, desc = scores.load_scores(path)
    if cfg.method in ("metadata", "hybrid") and cfg.metadata == "mean":
        named["metadata"] = named["metadata_mean"]
        named["hybrid"] = scores.hybrid(named["tracin"], named["metadata_mean"])
    return named, desc
