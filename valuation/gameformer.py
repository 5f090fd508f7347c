"""GameFormer adapter: the generic valuation code applied to gf_jax's model, data and checkpoints.

    loss = loss_fn(model_config)                    # loss(params, example, rng=None), ONE example
    data = examples(scenarios, model_config)        # the example pytree, leading axis N
    ckpts = load_checkpoints(reference, "all")      # [(params, lr), ...] of a reference run
    path = score_dataset(preset, train, val, reference, name="cpu_synthetic_seed0")

`score_dataset` computes every requested score (tracin, metadata, metadata_mean, loss, hybrid,
random, lissa, self_influence) and writes `<out>/<name>.npz` with the metadata (preset, data,
checkpoints, mode, seconds) atomically; `valuation.scores.load_scores` reads it back.

LiSSA settings travel as one `lissa.LissaOptions`: `compute_scores(lissa=options)`, or
`auto_lissa_scores(..., options=budget)`, which takes depth, repeats and mini-batch size from any
`lissa.LissaBudget` and picks damping and scale from the top Hessian eigenvalue.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gf_jax import losses
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import ModelConfig, Preset, to_dict
from gf_jax.data.schema import ScenarioSet
from valuation import hvp, influence, lissa, metadata, scores, tracin
from valuation.checkpoints import check as check_checkpoints
from valuation.checkpoints import subset as checkpoint_subset
from valuation.grads import DEFAULT_CHUNK, LossFn, Params

DEFAULT_SCORES = ("tracin", "metadata", "metadata_mean", "loss", "hybrid", "random")
SCORES = (*DEFAULT_SCORES, "lissa", "self_influence")


@functools.lru_cache(maxsize=16)
def loss_fn(model_config: ModelConfig) -> LossFn:
    """The per-example GameFormer training loss; one function object per config, so the jitted
    valuation kernels compile once per config and process."""

    def loss(params: Params, example: dict, rng: jax.Array | None = None) -> jax.Array:
        return losses.example_loss(params, example, model_config, rng)

    return loss


def examples(scenarios: ScenarioSet, model_config: ModelConfig) -> dict[str, np.ndarray]:
    """Model inputs and targets of every scenario, leading axis N (views, no copies)."""
    return scenarios.batch(model_config.neighbors)


def checkpoint_store(reference: str | os.PathLike) -> CheckpointStore:
    """The store of a reference run, given its workdir or its `checkpoints/` folder."""
    root = Path(reference)
    if (root / "checkpoints").is_dir():
        root = root / "checkpoints"
    store = CheckpointStore(root, keep_all=True)
    if not store.epochs():
        raise FileNotFoundError(f"{root}: no epoch checkpoints (train the reference run first)")
    return store


def load_checkpoints(
    reference: str | os.PathLike, which: str = "all", *, weighting: str = "lr"
) -> tuple[list[tuple[Params, float]], list[dict]]:
    """([(params, weight)], [{epoch, lr}]) of a reference run.

    which: `all` (every epoch), `best` (the best-validation epoch, the released code's default),
    `everyJ` or `lastN` (see `valuation.checkpoints`).
    weighting: `lr` (the learning rate used in that epoch, Pruthi et al.) or `mean` (1/K, the
    released code's plain mean over checkpoints).
    """
    check_checkpoints(which)
    if weighting not in ("lr", "mean"):
        raise ValueError(f"weighting must be 'lr' or 'mean', got {weighting!r}")
    store = checkpoint_store(reference)
    epochs = list(store.epochs())
    keys: list[int | str] = (
        ["best"] if which == "best" else [epochs[i] for i in checkpoint_subset(len(epochs), which)]
    )
    out, info = [], []
    for key in keys:
        meta = store.metadata(key)
        lr = float(meta["lr"])
        weight = lr if weighting == "lr" else 1.0 / len(keys)
        out.append((store.params(key), weight))
        info.append({"checkpoint": str(key), "epoch": int(meta["epoch"]), "lr": lr})
    return out, info


# An alias kept for callers of the old name: the one LiSSA options class lives in `lissa`.
LissaOptions = lissa.LissaOptions


@dataclasses.dataclass
class _Scoring:
    """One `compute_scores` call: its options (documented there), the inputs every score shares
    (checkpoints load on first use) and the scores computed so far, each once and timed."""

    preset: Preset
    train: ScenarioSet
    val: ScenarioSet
    reference: str | os.PathLike
    store: CheckpointStore
    mode: str
    checkpoints: str
    weighting: str
    sign: float
    scoring_dropout: bool
    metadata_composite: str
    chunk_size: int
    seed: int
    lissa: LissaOptions
    named: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    used: list[dict] = dataclasses.field(default_factory=list)  # checkpoints actually loaded
    lissa_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Derived in __post_init__:
    loss: LossFn = dataclasses.field(init=False)
    train_ex: dict[str, np.ndarray] = dataclasses.field(init=False)
    val_ex: dict[str, np.ndarray] = dataclasses.field(init=False)
    key: jax.Array = dataclasses.field(init=False)
    final_epoch: int = dataclasses.field(init=False)
    common: dict[str, Any] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        cfg = self.preset.model
        self.loss = loss_fn(cfg)
        self.train_ex, self.val_ex = examples(self.train, cfg), examples(self.val, cfg)
        self.key = jax.random.key(self.seed)
        self.final_epoch = self.store.latest()
        # Stream 1 of the seed: dropout while scoring; stream 2: LiSSA's mini-batches.
        dropout_key = jax.random.fold_in(self.key, 1) if self.scoring_dropout else None
        self.common = {"chunk_size": self.chunk_size, "dropout_key": dropout_key}

    @functools.cached_property
    def ckpts(self) -> list[tuple[Params, float]]:
        out, info = load_checkpoints(self.reference, self.checkpoints, weighting=self.weighting)
        self.used.extend(info)
        return out

    @functools.cached_property
    def final(self) -> Params:
        return self.store.params(self.final_epoch)

    def get(self, name: str) -> np.ndarray:
        """Score `name` [N] float64, computed on first request (`hybrid` reuses `tracin`)."""
        if name not in self.named:
            t0 = time.perf_counter()
            self.named[name] = np.asarray(self.build(name), np.float64)
            self.seconds[name] = time.perf_counter() - t0
        return self.named[name]

    def build(self, name: str) -> np.ndarray:
        """Computes score `name` (no caching: use `get`)."""
        if name == "tracin":
            return tracin.tracin_scores(
                self.loss,
                self.ckpts,
                self.train_ex,
                self.val_ex,
                mode=self.mode,
                sign=self.sign,
                **self.common,
            )
        if name == "self_influence":
            sq_mode = "vmap" if self.mode == "jvp" else self.mode  # <g_i, g_i> needs every g_i
            return tracin.tracin_scores(
                self.loss,
                self.ckpts,
                self.train_ex,
                None,
                mode=sq_mode,
                self_influence=True,
                **self.common,
            )
        builders = {
            "metadata": lambda: metadata.metadata_scores(self.train, self.metadata_composite),
            "metadata_mean": lambda: metadata.metadata_scores(self.train, "mean"),
            "hybrid": lambda: scores.hybrid(self.get("tracin"), self.get("metadata")),
            "loss": lambda: scores.loss_scores(self.loss, self.final, self.train_ex, **self.common),
            "random": lambda: scores.random_scores(len(self.train), self.seed),
            "lissa": self.lissa_scores,
        }
        return builders[name]()

    def lissa_scores(self) -> np.ndarray:
        """LiSSA influence at the final checkpoint; records its options and repeat agreement."""
        result = influence.lissa_influence(
            self.loss,
            self.final,
            self.train_ex,
            self.val_ex,
            options=self.lissa,
            key=jax.random.fold_in(self.key, 2),
            sign=self.sign,
            chunk_size=self.chunk_size,
        )
        self.lissa_info.update(
            dataclasses.asdict(self.lissa), repeat_spearman=result.repeat_spearman
        )
        return result.scores

    def description(self) -> dict[str, Any]:
        """The JSON-ready record of what was computed, from what, how, and how long it took."""
        return {
            "preset": self.preset.name,
            "config": to_dict(self.preset),
            "data": {
                "train": self.train.source,
                "n_train": len(self.train),
                "val": self.val.source,
                "n_val": len(self.val),
            },
            "reference": str(self.store.root),
            "checkpoints": {
                "which": self.checkpoints,
                "weighting": self.weighting,
                "used": self.used,
                "final_epoch": self.final_epoch,
            },
            "mode": self.mode,
            "sign": self.sign,
            "scoring_dropout": self.scoring_dropout,
            "metadata_composite": self.metadata_composite,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "lissa": {**self.lissa_info, "epoch": self.final_epoch} if self.lissa_info else None,
            "seconds": self.seconds,
            "backend": jax.default_backend(),
            "devices": jax.device_count(),
        }


def compute_scores(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    reference: str | os.PathLike,
    *,
    which: Sequence[str] = DEFAULT_SCORES,
    mode: str = "jvp",
    checkpoints: str = "all",
    weighting: str = "lr",
    sign: float = 1.0,
    scoring_dropout: bool = False,
    metadata_composite: str = "weighted",
    chunk_size: int = DEFAULT_CHUNK,
    seed: int = 0,
    lissa: LissaOptions | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every requested score of `train` ([N] float64 each) and a JSON-ready description.

    `hybrid` needs `tracin` and `metadata` (computed if not requested, but not returned); `loss`
    and `lissa` use the final epoch's checkpoint; `tracin` and `self_influence` the checkpoints
    chosen by `checkpoints` and `weighting` (see `load_checkpoints`). `lissa` sets the LiSSA
    inverse-HVP (default: `LissaOptions()`).
    """
    unknown = sorted(set(which) - set(SCORES))
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; choose from {SCORES}")
    run = _Scoring(
        preset,
        train,
        val,
        reference,
        checkpoint_store(reference),
        mode=mode,
        checkpoints=checkpoints,
        weighting=weighting,
        sign=sign,
        scoring_dropout=scoring_dropout,
        metadata_composite=metadata_composite,
        chunk_size=chunk_size,
        seed=seed,
        lissa=lissa if lissa is not None else LissaOptions(),
    )
    for name in which:
        run.get(name)
    return {name: run.named[name] for name in which}, run.description()


def auto_lissa_options(
    preset: Preset,
    train: ScenarioSet,
    reference: str | os.PathLike,
    *,
    depth: int = 100,
    repeats: int = 3,
    batch_size: int = 32,
    damping: float | None = None,
    scale: float | None = None,
) -> tuple[LissaOptions, float]:
    """LiSSA options with the scale set from the top Hessian eigenvalue of the final checkpoint
    on one mini-batch: damping 0.01 lambda_max, scale 1.5 (lambda_max + damping), so that the
    recursion's spectrum stays inside (-1, 1). Returns (options, lambda_max estimate)."""
    store = checkpoint_store(reference)
    params = store.params(store.latest())
    batch = {key: x[:batch_size] for key, x in examples(train, preset.model).items()}
    lam = abs(hvp.top_eigenvalue(loss_fn(preset.model), params, batch, iters=15))
    damping = 0.01 * lam if damping is None else damping
    scale = 1.5 * (lam + damping) if scale is None else scale
    return LissaOptions(damping, scale, depth, repeats, batch_size), lam


def auto_lissa_scores(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    reference: str | os.PathLike,
    *,
    options: lissa.LissaBudget,
    attempts: int = 4,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`compute_scores(which=("lissa",))` with `auto_lissa_options` for the depth, repeats and
    mini-batch size of `options` (any `lissa.LissaBudget`); on divergence, retries with 10x the
    damping (and the matching scale) up to `attempts` times, then re-raises."""
    opts, lam = auto_lissa_options(
        preset,
        train,
        reference,
        depth=options.depth,
        repeats=options.repeats,
        batch_size=options.batch_size,
    )
    for attempt in range(attempts):
        try:
            named, desc = compute_scores(
                preset, train, val, reference, which=("lissa",), lissa=opts, chunk_size=chunk_size
            )
            desc["lissa"].update(lambda_max_estimate=lam, attempts=attempt + 1)
            return named, desc
        except lissa.LissaDivergenceError:
            if attempt == attempts - 1:
                raise
            damping = max(opts.damping * 10, 1e-3)
            opts = dataclasses.replace(opts, damping=damping, scale=1.5 * (lam + damping))
    raise AssertionError("unreachable")


def score_path(name: str, out_dir: str | os.PathLike = "runs/scores") -> Path:
    return Path(out_dir) / f"{name}.npz"


def score_dataset(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    reference: str | os.PathLike,
    *,
    name: str,
    out_dir: str | os.PathLike = "runs/scores",
    **options: Any,
) -> Path:
    """Computes the scores (`compute_scores` options) and writes `<out_dir>/<name>.npz`."""
    t0 = time.perf_counter()
    named, description = compute_scores(preset, train, val, reference, **options)
    description["total_seconds"] = time.perf_counter() - t0
    return scores.save_scores(
        score_path(name, out_dir), named, description, tokens=train.meta["token"]
    )
