"""GameFormer adapter: the generic valuation code applied to gf_jax's model, data and checkpoints.

    loss = loss_fn(model_config)                    # loss(params, example, rng=None), ONE example
    data = examples(scenarios, model_config)        # the example pytree, leading axis N
    ckpts = load_checkpoints(reference, "all")      # [(params, lr), ...] of a reference run
    path = score_dataset(preset, train, val, reference, name="cpu_synthetic_seed0")

`score_dataset` computes every requested score (tracin, metadata, metadata_mean, loss, hybrid,
random, lissa, self_influence) and writes `<out>/<name>.npz` with the metadata (preset, data,
checkpoints, mode, seconds) atomically; `valuation.scores.load_scores` reads it back.
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

    which: `all` (every epoch) or `best` (the best-validation epoch, the released code's default).
    weighting: `lr` (the learning rate used in that epoch, Pruthi et al.) or `mean` (1/K, the
    released code's plain mean over checkpoints).
    """
    if which not in ("all", "best"):
        raise ValueError(f"checkpoints must be 'all' or 'best', got {which!r}")
    if weighting not in ("lr", "mean"):
        raise ValueError(f"weighting must be 'lr' or 'mean', got {weighting!r}")
    store = checkpoint_store(reference)
    keys: list[int | str] = list(store.epochs()) if which == "all" else ["best"]
    out, info = [], []
    for key in keys:
        meta = store.metadata(key)
        lr = float(meta["lr"])
        weight = lr if weighting == "lr" else 1.0 / len(keys)
        out.append((store.params(key), weight))
        info.append({"checkpoint": str(key), "epoch": int(meta["epoch"]), "lr": lr})
    return out, info


@dataclasses.dataclass(frozen=True)
class LissaOptions:
    damping: float = 0.01
    scale: float = 100.0
    depth: int = 200
    repeats: int = 3
    batch_size: int | None = 32


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
    chosen by `checkpoints` and `weighting` (see `load_checkpoints`).
    """
    unknown = sorted(set(which) - set(SCORES))
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; choose from {SCORES}")
    cfg = preset.model
    loss = loss_fn(cfg)
    train_ex, val_ex = examples(train, cfg), examples(val, cfg)
    key = jax.random.key(seed)
    common = {
        "chunk_size": chunk_size,
        "dropout_key": jax.random.fold_in(key, 1) if scoring_dropout else None,
    }
    store = checkpoint_store(reference)
    final_epoch = store.latest()
    used: list[dict] = []
    lissa_opts = lissa or LissaOptions()
    lissa_info: dict[str, Any] = {}

    @functools.cache
    def ckpts() -> list[tuple[Params, float]]:
        out, info = load_checkpoints(reference, checkpoints, weighting=weighting)
        used.extend(info)
        return out

    @functools.cache
    def final() -> Params:
        return store.params(final_epoch)

    def run_lissa() -> np.ndarray:
        o = lissa_opts
        r = influence.lissa_influence(
            loss,
            final(),
            train_ex,
            val_ex,
            damping=o.damping,
            scale=o.scale,
            depth=o.depth,
            repeats=o.repeats,
            batch_size=o.batch_size,
            key=jax.random.fold_in(key, 2),
            sign=sign,
            chunk_size=chunk_size,
        )
        lissa_info.update(dataclasses.asdict(o), repeat_spearman=r.repeat_spearman)
        return r.scores

    sq_mode = "vmap" if mode == "jvp" else mode  # <g_i, g_i> needs every g_i
    builders = {
        "tracin": lambda: tracin.tracin_scores(
            loss, ckpts(), train_ex, val_ex, mode=mode, sign=sign, **common
        ),
        "self_influence": lambda: tracin.tracin_scores(
            loss, ckpts(), train_ex, None, mode=sq_mode, self_influence=True, **common
        ),
        "metadata": lambda: metadata.metadata_scores(train, metadata_composite),
        "metadata_mean": lambda: metadata.metadata_scores(train, "mean"),
        "hybrid": lambda: scores.hybrid(get("tracin"), get("metadata")),
        "loss": lambda: scores.loss_scores(loss, final(), train_ex, **common),
        "random": lambda: scores.random_scores(len(train), seed),
        "lissa": run_lissa,
    }
    named: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def get(name: str) -> np.ndarray:
        if name not in named:
            t0 = time.perf_counter()
            named[name] = np.asarray(builders[name](), np.float64)
            seconds[name] = time.perf_counter() - t0
        return named[name]

    for name in which:
        get(name)
    description = {
        "preset": preset.name,
        "config": to_dict(preset),
        "data": {
            "train": train.source,
            "n_train": len(train),
            "val": val.source,
            "n_val": len(val),
        },
        "reference": str(store.root),
        "checkpoints": {
            "which": checkpoints,
            "weighting": weighting,
            "used": used,
            "final_epoch": final_epoch,
        },
        "mode": mode,
        "sign": sign,
        "scoring_dropout": scoring_dropout,
        "metadata_composite": metadata_composite,
        "chunk_size": chunk_size,
        "seed": seed,
        "lissa": {**lissa_info, "epoch": final_epoch} if lissa_info else None,
        "seconds": seconds,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }
    return {k: named[k] for k in which}, description


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
    batch = {k: v[:batch_size] for k, v in examples(train, preset.model).items()}
    lam = abs(hvp.top_eigenvalue(loss_fn(preset.model), params, batch, iters=15))
    damping = 0.01 * lam if damping is None else damping
    scale = 1.5 * (lam + damping) if scale is None else scale
    opts = LissaOptions(damping, scale, depth, repeats, batch_size)
    return opts, lam


def auto_lissa_scores(
    preset: Preset,
    train: ScenarioSet,
    val: ScenarioSet,
    reference: str | os.PathLike,
    *,
    attempts: int = 4,
    chunk_size: int = DEFAULT_CHUNK,
    **options: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`compute_scores(which=("lissa",))` with `auto_lissa_options`; on divergence, retries with
    10x the damping (and the matching scale) up to `attempts` times, then re-raises."""
    opts, lam = auto_lissa_options(preset, train, reference, **options)
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
