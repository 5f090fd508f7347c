"""The attribution benchmark's stages, in order, each resumable from the workdir's files.

    1. data        the preset's splits (cached in scratch); the workdir's config is written, or
                   checked against this one's identity (`AttributionConfig.identity`), with the
                   training set's corruption flags, the subsets' masks and the baselines.
    2. references  full-data runs with seeds seed .. seed + reference_runs - 1, every epoch kept.
    3. scores      every scorer from the references (`scorers`), once.
    4. retrains    the random subsets (LDS), the noise-ceiling repeats, then the removals by each
                   removal scorer's top and bottom and at random.

Interrupted anywhere, the same command continues: finished retrains are skipped, an
interrupted one resumes from its last checkpoint, and existing score files are kept.

Shards (`shard=(I, N)`, processes or machines sharing one workdir and scratch) each train every
N-th reference and retrain from the I-th. Shard 1 computes the scores once every reference is
finished; every shard's removals need them. What waits on another shard stays pending (the
same command later picks it up) or, with `wait`, is polled for.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from experiments.attribution import retrain, scorers, subsets
from experiments.attribution.config import AttributionConfig, ConfigError
from experiments.attribution.layout import (
    Layout,
    ceiling_name,
    random_removal_name,
    reference_name,
    removal_name,
    subset_name,
)
from experiments.attribution.retrain import RunSpec
from gf_jax import atomic, baselines
from gf_jax import config as gf_config
from gf_jax.checkpoint import CheckpointStore
from gf_jax.config import Preset, to_dict
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet


def resolve_preset(cfg: AttributionConfig) -> Preset:
    """The benchmark's preset with its epoch, data and noise overrides (seed: `cfg.seed`)."""
    return gf_config.resolve_preset(
        cfg.preset, epochs=cfg.epochs, seed=cfg.seed, data=cfg.data, noise=cfg.noise
    )


def tokens_digest(data: ScenarioSet) -> str:
    """A short hash of a split's scenario tokens, in order."""
    text = "\n".join(map(str, data.meta["token"]))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe(cfg: AttributionConfig, preset: Preset, splits: dict[str, ScenarioSet]) -> dict:
    """The workdir's config.json: the config, the preset, and which data it was made on."""
    data = {f"n_{k}": len(v) for k, v in splits.items()}
    data |= {f"{k}_tokens": tokens_digest(v) for k, v in splits.items()}
    return {"attribution": cfg.to_dict(), "preset": to_dict(preset), "data": data}


def check_workdir(layout: Layout, described: dict) -> None:
    """ConfigError naming what differs when the workdir holds outputs of another benchmark."""
    if not layout.config.exists():
        return
    saved = json.loads(layout.config.read_text())
    saved_cfg = AttributionConfig.from_saved(saved["attribution"])
    wanted_cfg = AttributionConfig.from_dict(described["attribution"])
    differ = [k for k, v in wanted_cfg.identity().items() if saved_cfg.identity()[k] != v]
    differ += [k for k in ("preset", "data") if saved.get(k) != described[k]]
    if differ:
        raise ConfigError(
            f"{layout.root}: holds a benchmark with other {', '.join(differ)}; "
            "use another --workdir (or delete it to start over)"
        )


def prepare(
    cfg: AttributionConfig, layout: Layout, *, progress: bool = True
) -> tuple[Preset, dict[str, ScenarioSet]]:
    """Stage 1: the splits, and the workdir's config, flags, masks and baselines."""
    preset = resolve_preset(cfg)
    splits = store.load_splits(preset.data, root=layout.data, verbose=progress)
    described = describe(cfg, preset, splits)
    check_workdir(layout, described)
    atomic.write_json(layout.config, described)  # the plan may have grown: the latest wins
    n = len(splits["train"])
    masks_RxN = subsets.subset_masks(n, cfg.subsets, cfg.subset_fraction, cfg.seed)
    write_npz(layout.subsets, {"packed": np.packbits(masks_RxN, axis=1), "n": np.int64(n)})
    if not layout.split.exists():
        write_npz(layout.split, {"corrupted": np.asarray(splits["train"].meta["corrupted"], bool)})
    if not layout.baselines.exists():
        found = {s: baselines.evaluate(splits[s], preset.model.neighbors) for s in ("val", "test")}
        by_planner = {p: {s: found[s][p] for s in found} for p in found["val"]}
        atomic.write_json(layout.baselines, by_planner)
    return preset, splits


def reference_specs(cfg: AttributionConfig) -> list[RunSpec]:
    return [
        RunSpec(reference_name(s), "reference", s, keep_all=True, labels={"model": m})
        for m, s in enumerate(cfg.reference_seeds)
    ]


def full_epochs(cfg: AttributionConfig) -> int:
    """The epochs of a full-data run, from which every retrain's budget is worked out."""
    return resolve_preset(cfg).train.epochs


def retrain_spec(
    cfg: AttributionConfig,
    epochs_full: int,
    name: str,
    kind: str,
    seed: int,
    idx: np.ndarray,
    n: int,
    **labels,
) -> RunSpec:
    """A retrain on examples `idx` of `n`, for as long as `cfg.retrain_budget` gives it."""
    epochs = cfg.retrain_epochs(epochs_full, n, len(idx))
    return RunSpec(name, kind, seed, idx, epochs=epochs, labels=labels)


def subset_specs(cfg: AttributionConfig, n: int) -> list[RunSpec]:
    """The random subsets (LDS), each followed by its noise-ceiling repeat if it has one."""
    out, e = [], full_epochs(cfg)
    for r in range(cfg.subsets):
        idx = np.flatnonzero(subsets.subset_mask(n, cfg.subset_fraction, cfg.seed, r))
        out.append(retrain_spec(cfg, e, subset_name(r), "subset", cfg.seed, idx, n, subset=r))
        if r < cfg.ceiling_subsets:
            name = ceiling_name(r)
            out.append(retrain_spec(cfg, e, name, "ceiling", cfg.ceiling_seed, idx, n, subset=r))
    return out


def removal_specs(cfg: AttributionConfig, layout: Layout, n: int) -> list[RunSpec]:
    """The removals by each removal scorer's top and bottom and at random (reads the scores)."""
    out, e = [], full_epochs(cfg)
    for fraction in cfg.removal_fractions:
        for scorer in cfg.removal_scorers:
            score_N = scorers.load(layout.score_file(scorer))[0]
            for side in subsets.SCORE_SIDES:
                idx = subsets.removal_kept(score_N, fraction, side)
                name = removal_name(scorer, side, fraction)
                labels = {"scorer": scorer, "side": side, "fraction": fraction}
                out.append(retrain_spec(cfg, e, name, "removal", cfg.seed, idx, n, **labels))
        for d in range(cfg.random_removals):
            idx = subsets.random_kept(n, fraction, seed=cfg.seed, draw=d)
            name = random_removal_name(d, fraction)
            labels = {"scorer": subsets.RANDOM_DRAW, "side": "random", "fraction": fraction}
            out.append(retrain_spec(cfg, e, name, "removal", cfg.seed, idx, n, **labels, draw=d))
    return out


def retrain_specs(cfg: AttributionConfig, layout: Layout, n: int) -> list[RunSpec]:
    """The subsets, the ceiling repeats, then the removals (these read the score files)."""
    return subset_specs(cfg, n) + removal_specs(cfg, layout, n)


def ready(
    done: Callable[[], bool],
    what: str,
    *,
    wait: bool,
    poll_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether `done()`; with `wait`, polls every `poll_seconds` until it is (then True)."""
    if done():
        return True
    if not wait:
        print(f"waiting on {what}: run again (or pass --wait) once it is there")
        return False
    print(f"waiting on {what} (checking every {poll_seconds:g} s)")
    while not done():
        sleep(poll_seconds)
    return True


def missing_scores(cfg: AttributionConfig, layout: Layout) -> list[str]:
    """The scorers whose score file is not in the workdir yet."""
    return [n for n in cfg.scorer_names if not layout.score_file(n).exists()]


def ensure_scores(
    cfg: AttributionConfig,
    preset: Preset,
    splits: dict[str, ScenarioSet],
    layout: Layout,
    *,
    progress: bool,
) -> None:
    """Stage 3; a reference whose checkpoints are gone (scratch wiped) is trained again first."""
    if not missing_scores(cfg, layout):
        return
    specs = reference_specs(cfg)
    for spec in specs:
        folder = layout.train(spec.name)
        if not CheckpointStore(folder / "checkpoints", keep_all=True).epochs():
            print(f"scores: {spec.name} has no checkpoints left in {folder}; training it again")
            retrain.fit(spec, preset, splits, layout, overwrite=True, progress=progress)
    inputs = scorers.Inputs(
        cfg, preset, splits["train"], splits["val"], [layout.train(s.name) for s in specs]
    )
    scorers.ensure(inputs, layout, progress=progress)


def run(
    cfg: AttributionConfig,
    layout: Layout,
    *,
    progress: bool = True,
    max_runs: int | None = None,
    shard: tuple[int, int] = (1, 1),
    wait: bool = False,
    poll_seconds: float = 60.0,
) -> dict[str, int]:
    """Every stage, or shard (I, N)'s share of it; trains at most `max_runs` retrains this time
    (None: all). Returns counts {trained, skipped, pending} of this shard's retrains (references
    included); what waits on another shard counts as pending unless `wait`."""
    preset, splits = prepare(cfg, layout, progress=progress)
    n = len(splits["train"])
    index, count = shard
    counts = {"trained": 0, "skipped": 0, "pending": 0}

    def go(specs: list[RunSpec], desc: str) -> None:
        bar = tqdm(specs[index - 1 :: count], desc=desc, unit="run", disable=not progress)
        for spec in bar:
            if retrain.finished(layout, spec, n, preset) is not None:
                counts["skipped"] += 1
                continue
            if max_runs is not None and counts["trained"] >= max_runs:
                counts["pending"] += 1
                continue
            bar.set_postfix_str(spec.name)
            record = retrain.retrain(
                spec,
                preset,
                splits,
                layout,
                keep_checkpoints=cfg.keep_checkpoints,
                progress=progress,
            )
            counts["trained"] += 1
            if progress:
                tqdm.write(
                    f"{spec.name}: val plan ADE {record['val']['plan_ade']:.3f} "
                    f"({record['n_train']} examples, {record['wall_seconds']:.0f} s)"
                )

    references = reference_specs(cfg)
    go(references, "references")
    if counts["pending"]:
        return counts

    def trained() -> bool:
        return all(retrain.finished(layout, s, n, preset) is not None for s in references)

    def scored() -> bool:
        return not missing_scores(cfg, layout)

    # A capped invocation (max_runs) never blocks: it leaves what waits pending.
    waiting = {"wait": wait and max_runs is None, "poll_seconds": poll_seconds}
    if index == 1 and ready(trained, "the other shards' reference runs", **waiting):
        ensure_scores(cfg, preset, splits, layout, progress=progress)
    go(subset_specs(cfg, n), "retrains")
    if not ready(scored, f"the score files in {layout.scores} (shard 1 makes them)", **waiting):
        counts["pending"] += len(range(index - 1, cfg.removal_count, count))
        return counts
    go(removal_specs(cfg, layout, n), "removals")
    return counts


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz written atomically."""

    def write(f: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        f.write(buf.getvalue())

    atomic.write_bytes(path, write)
