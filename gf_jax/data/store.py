"""Build-once cache of dataset splits, stored as `.npy` arrays and loaded by memory map.

A split is keyed by its source and the config that shapes it (`split_key`). The first request builds
it, writes it into a temporary folder and renames that into place, so a killed build never leaves a
cache entry that is later read as valid. Later requests memory-map the arrays: loading the
paper-sized training split costs milliseconds.

Sources (`DataConfig.source`, see `parse_source`): `synthetic` (the procedural world), `npz:DIR` or a
plain DIR (GameFormer npz folders with train/val/test subfolders), `nuplan:DB_DIR,MAPS_DIR` (extracted
once into `<root>/nuplan-<key>/`, then split by log), `real-samples[:DIR]` (the AV2 / nuScenes
samples, split by log or scene). Logs are assigned to splits by the rank of a hash of their name
(10% val, 10% test, at least one each), so overlapping scenarios of one log never straddle splits.

Folder layout: `<root>/<split>-<key>/{<array>.npy, meta.json, source.json}` (+ the CC BY-NC-SA
licence note for data derived from the real samples).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax import atomic
from gf_jax.config import DataConfig, to_dict
from gf_jax.data import gameformer_npz
from gf_jax.data.schema import ARRAY_KEYS, LAYOUT, META_KEYS, DataError, ScenarioSet

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
        logs = nuplan.list_logs(db)
        recipe.update(
            db=str(db.resolve()),
            maps=str(Path(maps).resolve()),
            logs=_stat(logs),
            map_files=_stat(list(Path(maps).glob("*/*/map.gpkg"))),
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
        nuplan.extract_to_folder(recipe["db"], recipe["maps"], folder, progress=progress)
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
    return s.validate()


def _take_split(s: ScenarioSet, where: np.ndarray, split: str, source: str) -> ScenarioSet:
    idx = np.nonzero(where == split)[0]
    if not len(idx):
        raise DataError(f"{source}: the {split} split is empty")
    return s.subset(idx)


def save(scenarios: ScenarioSet, path: str | os.PathLike, recipe: dict[str, Any] | None = None):
    """Writes a ScenarioSet as a cache folder, atomically (with the licence note of real data)."""
    with atomic.directory(path) as tmp:
        if recipe and str(recipe.get("source", "")).startswith("real-samples"):
            from gf_jax.data import real_samples

            (tmp / real_samples.LICENCE_FILE).write_text(real_samples.LICENCE_NOTE)
        for k in ARRAY_KEYS:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(scenarios.arrays[k]))
        meta = {k: np.asarray(scenarios.meta[k]).tolist() for k in META_KEYS}
        (tmp / "meta.json").write_text(json.dumps(meta))
        (tmp / "source.json").write_text(
            json.dumps({"source": scenarios.source, "recipe": recipe}, indent=2, sort_keys=True)
        )
    return Path(path)


def load(path: str | os.PathLike, *, mmap: bool = True) -> ScenarioSet:
    """Loads a cache folder; arrays are read-only memory maps unless `mmap=False`."""
    path = Path(path)
    arrays = {}
    for k in ARRAY_KEYS:
        f = path / f"{k}.npy"
        try:
            arrays[k] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{f}: unreadable cached array ({e})") from e
    try:
        raw = json.loads((path / "meta.json").read_text())
        source = json.loads((path / "source.json").read_text())["source"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable cache metadata ({e})") from e
    n = arrays["ego_agent_future"].shape[0]
    meta = {
        k: np.asarray(raw.get(k, []), dtype=bool if k == "corrupted" else str) for k in META_KEYS
    }
    s = ScenarioSet(arrays, meta, source)
    # Shapes and dtypes only: a full scan would defeat the memory map, and contents were
    # validated before the atomic write.
    for k, (shape, _) in LAYOUT.items():
        if arrays[k].shape != (n, *shape) or arrays[k].dtype != np.float32:
            raise DataError(
                f"{path / (k + '.npy')}: expected float32 {(n, *shape)}, got "
                f"{arrays[k].dtype} {arrays[k].shape}"
            )
    for k in META_KEYS:
        if meta[k].shape != (n,):
            raise DataError(f"{path / 'meta.json'}: {k}: expected {n} entries, got {meta[k].shape}")
    return s


def load_split(
    config: DataConfig,
    split: str,
    *,
    root: str | os.PathLike = "runs/data",
    progress: bool = True,
    verbose: bool = False,
) -> ScenarioSet:
    """The split from the cache at `root`, building and storing it first if needed."""
    recipe = split_recipe(config, split)
    path = Path(root) / f"{split}-{split_key(recipe)}"
    hit = path.is_dir()
    if not hit:
        save(build_split(config, split, progress=progress, root=root), path, recipe)
    if verbose:
        print(f"data: {split} split {'cache hit' if hit else 'built'} at {path}")
    return load(path)


def load_splits(
    config: DataConfig, *, root: str | os.PathLike = "runs/data", **kwargs: Any
) -> dict[str, ScenarioSet]:
    return {split: load_split(config, split, root=root, **kwargs) for split in SPLITS}
