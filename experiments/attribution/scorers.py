"""Every scorer of the benchmark, computed once from the full-data reference runs and saved.

    tracin          sum_k lr_k <g_i, g_j> over every epoch checkpoint of reference run 0,
                    per (training example i, validation scenario j)  (`valuation.pairs`)
    tracin_best     the same at the best-validation checkpoint only (the released code's)
    tracin_dropout  all checkpoints, dropout on while scoring (the released code's)
    cosine          sum_k lr_k cos(g_i, g_j)
    trak<m>         TRAK over the final checkpoints of reference runs 0 .. m-1 (`valuation.trak`)
    self_influence  sum_k lr_k <g_i, g_i>
    lissa           influence on the mean validation loss, LiSSA inverse-HVP at the final
                    checkpoint, damping and scale from its top Hessian eigenvalue
    loss            training loss at the final checkpoint (the released "loss SPL")
    metadata        the six interaction-difficulty features, weighted (`metadata_mean`: mean)
    hybrid          mean of the TracIn and metadata percentile ranks
    random          uniform random numbers (the control)

Pair scorers save their matrix [N, J] (float32: they only enter rank statistics) and its row
means [N], the per-example score the curriculum would use; the others save [N] only. A scorer
whose file exists is not recomputed. Positive means helpful for the gradient scorers; loss,
self-influence and metadata measure difficulty, not help (see `noise` for how both are read).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.attribution.config import AttributionConfig, Streams, is_pair_scorer
from experiments.attribution.layout import Layout
from gf_jax import atomic
from gf_jax.config import Preset
from gf_jax.data.schema import ScenarioSet

INFO_KEY = "_info"
LISSA_ATTEMPTS = 4  # each failed attempt raises the damping tenfold


@dataclasses.dataclass
class Inputs:
    """What the scorers share, loaded on first use.

    Attributes:
      cfg: the benchmark's config.
      preset: the preset of the reference runs.
      train, val: the splits (scored, and the targets).
      references: the reference runs' `fit` folders, seed order (run 0 first).
    """

    cfg: AttributionConfig
    preset: Preset
    train: ScenarioSet
    val: ScenarioSet
    references: list[Path]

    @functools.cached_property
    def loss(self) -> Any:
        from valuation import gameformer

        return gameformer.loss_fn(self.preset.model)

    @functools.cached_property
    def train_ex(self) -> dict[str, np.ndarray]:
        from valuation import gameformer

        return gameformer.examples(self.train, self.preset.model)

    @functools.cached_property
    def val_ex(self) -> dict[str, np.ndarray]:
        from valuation import gameformer

        return gameformer.examples(self.val, self.preset.model)

    def checkpoints(self, which: str) -> list[tuple[Any, float]]:
        """(params, lr) of reference run 0's `all` or `best` checkpoints."""
        from valuation import gameformer

        return gameformer.load_checkpoints(self.references[0], which)[0]

    def final(self, m: int) -> Any:
        """The final-epoch parameters of reference run m."""
        from valuation import gameformer

        store = gameformer.checkpoint_store(self.references[m])
        return store.params(store.latest())

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.cfg.seed), stream)


def compute(name: str, inputs: Inputs, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """(per-example scores [N] float64, pair scores [N, J] or None) of scorer `name`."""
    from valuation import metadata, pairs, scores, trak

    cfg = inputs.cfg
    chunk = {"chunk_size": cfg.chunk_size}
    if name in ("tracin", "tracin_best", "tracin_dropout", "cosine"):
        dropout = inputs.key(Streams.DROPOUT) if name == "tracin_dropout" else None
        matrix_NxJ = pairs.score_matrix(
            inputs.loss,
            inputs.checkpoints("best" if name == "tracin_best" else "all"),
            inputs.train_ex,
            inputs.val_ex,
            method="cosine" if name == "cosine" else "tracin",
            dim=cfg.pair_dim,
            key=inputs.key(Streams.PROJECTION),
            dropout_key=dropout,
            **chunk,
        )
        return pairs.per_example(matrix_NxJ), matrix_NxJ
    if is_pair_scorer(name):  # trak<m>
        models = [inputs.final(m) for m in range(int(name[4:]))]
        matrix_NxJ = trak.trak_scores(
            inputs.loss,
            models,
            inputs.train_ex,
            inputs.val_ex,
            dim=cfg.trak_dim,
            key=inputs.key(Streams.PROJECTION),
            **chunk,
        )
        return pairs.per_example(matrix_NxJ), matrix_NxJ
    if name == "self_influence":
        ckpts = inputs.checkpoints("all")
        return pairs.self_influence(
            inputs.loss, ckpts, inputs.train_ex, dim=cfg.pair_dim, **chunk
        ), None
    if name == "lissa":
        return lissa_scores(inputs), None
    if name == "loss":
        return scores.loss_scores(inputs.loss, inputs.final(0), inputs.train_ex, **chunk), None
    if name in ("metadata", "metadata_mean"):
        how = "mean" if name == "metadata_mean" else "weighted"
        return metadata.metadata_scores(inputs.train, how), None
    if name == "hybrid":
        tracin_N = load(layout.score_file("tracin"))[0]
        metadata_N = load(layout.score_file("metadata"))[0]
        return scores.hybrid(tracin_N, metadata_N), None
    if name == "random":
        return np.random.default_rng([cfg.seed, Streams.RANDOM_SCORES]).random(
            len(inputs.train)
        ), None
    raise ValueError(f"unknown scorer {name!r}")


def lissa_scores(inputs: Inputs) -> np.ndarray:
    """LiSSA influence at reference run 0's final checkpoint (damping raised on divergence)."""
    from valuation import gameformer, influence, lissa

    cfg = inputs.cfg
    opts, lam = gameformer.auto_lissa_options(
        inputs.preset,
        inputs.train,
        inputs.references[0],
        depth=cfg.lissa_depth,
        repeats=cfg.lissa_repeats,
        batch_size=cfg.lissa_batch,
    )
    for attempt in range(LISSA_ATTEMPTS):
        try:
            return influence.lissa_influence(
                inputs.loss,
                inputs.final(0),
                inputs.train_ex,
                inputs.val_ex,
                options=opts,
                key=inputs.key(Streams.LISSA),
                chunk_size=cfg.chunk_size,
            ).scores
        except lissa.LissaDivergenceError:
            if attempt == LISSA_ATTEMPTS - 1:
                raise
            damping = max(opts.damping * 10, 1e-3)
            opts = dataclasses.replace(opts, damping=damping, scale=1.5 * (lam + damping))
    raise AssertionError("unreachable")


def ensure(inputs: Inputs, layout: Layout, *, progress: bool = True) -> dict[str, float]:
    """Computes and saves every scorer of the config that has no file yet; {name: seconds}."""
    seconds = {}
    for name in inputs.cfg.scorer_names:
        path = layout.score_file(name)
        if path.exists():
            continue
        if progress:
            print(f"scores: computing {name}")
        t0 = time.perf_counter()
        per_N, pairs_NxJ = compute(name, inputs, layout)
        seconds[name] = time.perf_counter() - t0
        save(path, per_N, pairs_NxJ, {"scorer": name, "seconds": seconds[name]})
        if progress:
            print(f"scores: {name} done in {seconds[name]:.1f} s")
    return seconds


def save(path: Path, per_N: np.ndarray, pairs_NxJ: np.ndarray | None, info: dict) -> None:
    """Writes a score file atomically (float32 pairs, float64 per-example scores)."""
    per_N = np.asarray(per_N, np.float64)
    if per_N.ndim != 1 or not np.isfinite(per_N).all():
        raise ValueError(f"{path.name}: per-example scores must be finite [N], got {per_N.shape}")
    arrays = {"per_example": per_N, INFO_KEY: np.asarray(json.dumps(info, sort_keys=True))}
    if pairs_NxJ is not None:
        arrays["pairs"] = np.asarray(pairs_NxJ, np.float32)

    def write(f: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        f.write(buf.getvalue())

    atomic.write_bytes(path, write)


def load(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(per-example [N], pairs [N, J] or None, info) of a score file."""
    with np.load(path, allow_pickle=False) as z:
        pairs_NxJ = z["pairs"] if "pairs" in z.files else None
        return z["per_example"], pairs_NxJ, json.loads(str(z[INFO_KEY]))
