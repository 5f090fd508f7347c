"""Build-once cache of dataset splits, stored as `.npy` arrays and loaded by memory map.

A split is keyed by its source and the config that shapes it (`split_key`). The first request builds
it, writes it into a temporary folder and renames that into place, so a killed build never leaves a
cache entry that is later read as valid. Later requests memory-map the arrays: loading the
paper-sized training split costs one finiteness pass over them (a fraction of a second).

Sources (`DataConfig.source`, see `parse_source`): `synthetic` (the procedural world), `npz:DIR` or a
plain DIR (GameFormer npz folders with train/val/test subfolders), `nuplan:DB_DIR,MAPS_DIR` (extracted
once into `<root>/nuplan-<key>/`, then split by log), `real-samples[:DIR]` (the AV2 / nuScenes
samples, split by log or scene). Logs are assigned to splits by the rank of a hash of their name
(10% val, 10% test, at least one each), so overlapping scenarios of one log never straddle splits.

Folder layout: `<root>/<split>-<key>/{<array>.npy, meta.json, source.json}` (+ the CC BY-NC-SA
licence note for data derived from the real samples).

Caches heal: a cached split that no longer loads (truncated or garbage arrays, unreadable
`meta.json`/`source.json`, wrong shapes, non-finite values, duplicate tokens) is reported in one
line naming the file and rebuilt from its source; if the source cannot rebuild it, one DataError
says so. Temporary folders left by killed cache writes are removed on the next load. Loading checks
every array for NaN/inf (one vectorised pass, ~0.1 s per GB once the files are in the page cache),
so a damaged cache is named with its file, field and example, never met later as a non-finite
loss. `load_splits` refuses scenario tokens shared by train and val or train and test.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax.cli import one_line, warn
from gf_jax.config import DataConfig, to_dict
from gf_jax.data import gameformer_npz
from gf_jax.data.cache import check_disjoint, check_unique_tokens, load, remove_stale_temps, save
from gf_jax.data.schema import DataError, ScenarioSet

SPLITS = ("train", "val", "test")
_SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
FORMAT_VERSION = 1
SPLIT_FRACTIONS = {"val": 0.1, "test": 0.1}  # of the logs; the rest trains
_USAGE = "expected synthetic, npz:DIR, nuplan:DB_DIR,MAPS_DIR, real-samples[:DIR] or a folder"


def parse_source(source: str) -> tuple[str, tuple[str, ...]]:
    """`DataConfig.source` -> (kind, args): ('synthetic', ()), ('npz', (DIR,)),
    ('nuplan', (DB_DIR, MAPS_DIR)) or ('real-samples', (DIR,)). Raises DataError if unknown."""
    kind, sep, rest = source.partition(":")
    if source == "synthetic":
        return "synthetic", ()
    if source == "real-samples" or (kind == "real-samples" and sep):
        from gf_jax.data import real_samples  # deferred: only this source needs it

        return "real-samples", (rest or str(real_samples.DEFAULT_DIR),)
    if kind == "npz" and sep:
        if not rest:
            raise DataError(f"{source}: npz source needs a folder (npz:DIR)")
        return "npz", (rest,)
    if kind == "nuplan" and sep:
        db, comma, maps = rest.partition(",")
        if not (db and comma and maps):
            raise DataError(f"{source}: nuplan source needs nuplan:DB_DIR,MAPS_DIR")
        return "nuplan", (db, maps)
    if source and Path(source).is_dir():
        return "npz", (source,)
    raise DataError(
        f"{source or '<empty>'}: data source is neither 'synthetic' nor a folder; {_USAGE}"
    )


def _stat(paths: list[Path]) -> str:
    """A fingerprint of files (name, size, mtime) for cache keys."""
    stat = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(paths)]
    return hashlib.sha256(json.dumps(stat).encode()).hexdigest()


def assign_splits(groups: np.ndarray | list[str], source: str) -> np.ndarray:
    """Split name of each item from its group (log): groups ranked by a hash of their name, the
    first 10% to test, the next 10% to val (at least one each), the rest to train."""
    uniq = sorted(set(map(str, groups)), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    if len(uniq) < 3:
        raise DataError(
            f"{source}: {len(uniq)} log(s) cannot make non-empty train/val/test splits (need 3)"
        )
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(uniq)))
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(uniq)))
    of = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train"
          for i, g in enumerate(uniq)}  # fmt: skip
    return np.array([of[str(g)] for g in groups])


def split_recipe(config: DataConfig, split: str) -> dict[str, Any]:
    """Everything that determines a split's contents (the cache key is its hash)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    recipe: dict[str, Any] = {"format": FORMAT_VERSION, "split": split, "source": config.source}
    kind, args = parse_source(config.source)
    if kind == "nuplan":
        from gf_jax.data import nuplan

        db, maps = (Path(a) for a in args)
        logs, map_files = nuplan.inputs(db, maps)  # a missing input is named here
        recipe.update(
            db=str(db.resolve()),
            maps=str(Path(maps).resolve()),
            logs=_stat(logs),
            map_files=_stat(map_files),
            extract=to_dict(nuplan.ExtractConfig()),
            fractions=SPLIT_FRACTIONS,
        )
    elif kind == "real-samples":
        from gf_jax.data import real_samples

        folder = Path(args[0])
        if not folder.is_dir():
            raise DataError(f"{folder}: real driving samples folder not found")
        recipe.update(
            folder=str(folder.resolve()),
            files=_stat([p for p in folder.rglob("*") if p.is_file()]),
            stride=real_samples.DEFAULT_STRIDE,
            fractions=SPLIT_FRACTIONS,
        )
    elif kind == "synthetic":
        from gf_jax.data import synthetic  # deferred: only synthetic builds need the world

        recipe.update(
            n=getattr(config, f"n_{split}"),
            seed=split_seed(config.data_seed, split),
            noise_fraction=config.noise_fraction if split == "train" else 0.0,
            city_mix=to_dict(config.city_mix),
            world_version=getattr(synthetic, "WORLD_VERSION", 1),
        )
    else:
        folder = _split_folder(Path(args[0]), split)
        files = gameformer_npz.list_files(folder)
        stat = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        recipe.update(
            folder=str(folder.resolve()),
            files=hashlib.sha256(json.dumps(stat).encode()).hexdigest(),
        )
    return recipe


def split_seed(data_seed: int, split: str) -> int:
    """Independent, reproducible seeds per split, derived from the data seed."""
    return int(np.random.SeedSequence([data_seed, SPLITS.index(split)]).generate_state(1)[0])


def split_key(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _split_folder(root: Path, split: str) -> Path:
    if not root.is_dir():
        raise DataError(f"{root}: data source is neither 'synthetic' nor a folder")
    for name in _SPLIT_DIRS[split]:
        if (root / name).is_dir():
            return root / name
    raise DataError(
        f"{root}: no '{_SPLIT_DIRS[split][0]}' subfolder of GameFormer .npz files for the {split} split"
    )


def build_split(
    config: DataConfig,
    split: str,
    *,
    progress: bool = True,
    root: str | os.PathLike = "runs/data",
) -> ScenarioSet:
    """Builds a split from its source, uncached (a nuPlan extraction is kept under `root`)."""
    recipe = split_recipe(config, split)
    kind, _ = parse_source(config.source)
    if kind == "nuplan":
        from gf_jax.data import nuplan

        keep = {k: v for k, v in recipe.items() if k != "split"}
        folder = Path(root) / f"nuplan-{split_key(keep)}"
        nuplan.extract_source(recipe["db"], recipe["maps"], folder, progress=progress)
        everything = gameformer_npz.read_folder(folder, progress=progress)
        logs = gameformer_npz.read_sidecar(folder)
        groups = [logs.get(gameformer_npz.file_name(m, t), {}).get("log", t)
                  for m, t in zip(everything.meta["map_name"], everything.meta["token"], strict=True)]  # fmt: skip
        s = _take_split(everything, assign_splits(groups, config.source), split, config.source)
    elif kind == "real-samples":
        from gf_jax.data import real_samples

        everything = real_samples.load(recipe["folder"], stride=recipe["stride"])
        where = assign_splits(real_samples.groups(everything), config.source)
        s = _take_split(everything, where, split, config.source)
    elif kind == "synthetic":
        from gf_jax.data import synthetic

        s = synthetic.generate(
            recipe["n"],
            seed=recipe["seed"],
            noise_fraction=recipe["noise_fraction"],
            city_mix=config.city_mix,
        )
    else:
        s = gameformer_npz.read_folder(recipe["folder"], progress=progress)
    s.validate()
    check_unique_tokens(s, f"{s.source} ({split} split)")
    return s


def _take_split(s: ScenarioSet, where: np.ndarray, split: str, source: str) -> ScenarioSet:
    idx = np.nonzero(where == split)[0]
    if not len(idx):
        raise DataError(f"{source}: the {split} split is empty")
    return s.subset(idx)


def load_split(
    config: DataConfig,
    split: str,
    *,
    root: str | os.PathLike = "runs/data",
    progress: bool = True,
    verbose: bool = False,
) -> ScenarioSet:
    """The split from the cache at `root`, building and storing it first if needed; a cache entry
    that fails to load is reported in one line and rebuilt."""
    recipe = split_recipe(config, split)
    remove_stale_temps(root)
    path = Path(root) / f"{split}-{split_key(recipe)}"
    if path.is_dir():
        try:
            s = load(path)
        except DataError as e:
            warn(f"{e}; rebuilding the cached {split} split from {config.source}")
            s = _build(config, split, recipe, path, progress, corrupt=e)
            state = "rebuilt"
        else:
            state = "cache hit"
    else:
        s = _build(config, split, recipe, path, progress)
        state = "built"
    if verbose:
        print(f"data: {split} split {state} at {path}")
    return s


def _build(
    config: DataConfig,
    split: str,
    recipe: dict[str, Any],
    path: Path,
    progress: bool,
    corrupt: DataError | None = None,
) -> ScenarioSet:
    """Builds, stores and loads a split; if it replaces a `corrupt` entry and the source cannot
    rebuild it, says so in one line."""
    try:
        save(build_split(config, split, progress=progress, root=path.parent), path, recipe)
    except (DataError, OSError) as e:
        if corrupt is None:
            raise
        raise DataError(
            f"{path}: the cached {split} split is corrupt and cannot be rebuilt from "
            f"{config.source}: {one_line(e)}"
        ) from e
    return load(path)


def load_splits(
    config: DataConfig, *, root: str | os.PathLike = "runs/data", **kwargs: Any
) -> dict[str, ScenarioSet]:
    """All three splits (see `load_split`); refuses train/val and train/test token overlap."""
    splits = {split: load_split(config, split, root=root, **kwargs) for split in SPLITS}
    check_disjoint(splits)
    return splits
