"""What the claims are measured on: the reference run's preset and splits, and the TracIn,
metadata and hybrid scores (from the workdir's score files, as the report finds them; computed
here from the reference run when there is none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.claims.config import TheoryConfig
from experiments.layout import Layout
from experiments.reporting import loading
from gf_jax.config import Preset

NEEDED = ("tracin", "metadata", "hybrid")


def reference_preset(cfg: TheoryConfig) -> Preset:
    """The resolved preset the reference run saved."""
    return loading.run_preset(Path(cfg.reference))


def load_inputs(cfg: TheoryConfig, preset: Preset) -> dict[str, Any]:
    """{"splits": train/val, "scores": the NEEDED scores [N] float64, "corrupted": [N] bool,
    "note": where the scores came from}."""
    from gf_jax.data import store
    from valuation import gameformer

    layout = Layout(Path(cfg.workdir))
    splits = {s: store.load_split(preset.data, s, root=layout.data) for s in ("train", "val")}
    named, source = loading.load_scores(layout, preset, data=cfg.data)
    note = f"scores from {source.get('tracin')}"
    if not all(k in named for k in NEEDED):
        named, _ = gameformer.compute_scores(
            preset, splits["train"], splits["val"], Path(cfg.reference), which=NEEDED
        )
        note = "scores computed here (no score file in the workdir)"
    return {
        "splits": splits,
        "scores": {k: np.asarray(named[k], np.float64) for k in NEEDED},
        "corrupted": np.asarray(splits["train"].meta["corrupted"], bool),
        "note": note,
    }
