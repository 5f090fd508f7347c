"""Build-once cache of dataset splits, stored as `.npy` arrays and loaded by memory map.

A split is keyed by its source and the config that shapes it (`split_key`). The first request builds
it (procedural world or an npz folder), writes it into a temporary folder and renames that into
place, so a killed build never leaves a cache entry that is later read as valid. Later requests
memory-map the arrays: loading the paper-sized training split costs milliseconds.

Folder layout: `<root>/<split>-<key>/{<array>.npy, meta.json, source.json}`.
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


def split_recipe(config: DataConfig, split: str) -> dict[str, Any]:
    """Everything that determines a split's contents (the cache key is its hash)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    recipe: dict[str, Any] = {"format": FORMAT_VERSION, "split": split, "source": config.source}
    if config.source == "synthetic":
        from gf_jax.data import synthetic  # deferred: only synthetic builds need the world

        recipe.update(
            n=getattr(config, f"n_{split}"),
            seed=split_seed(config.data_seed, split),
            noise_fraction=config.noise_fraction if split == "train" else 0.0,
            city_mix=to_dict(config.city_mix),
            world_version=getattr(synthetic, "WORLD_VERSION", 1),
        )
    else:
        folder = _split_folder(Path(config.source), split)
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


def build_split(config: DataConfig, split: str, *, progress: bool = True) -> ScenarioSet:
    """Builds a split from its source, uncached."""
    recipe = split_recipe(config, split)
    if config.source == "synthetic":
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


def save(scenarios: ScenarioSet, path: str | os.PathLike, recipe: dict[str, Any] | None = None):
    """Writes a ScenarioSet as a cache folder, atomically."""
    with atomic.directory(path) as tmp:
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
        save(build_split(config, split, progress=progress), path, recipe)
    if verbose:
        print(f"data: {split} split {'cache hit' if hit else 'built'} at {path}")
    return load(path)


def load_splits(
    config: DataConfig, *, root: str | os.PathLike = "runs/data", **kwargs: Any
) -> dict[str, ScenarioSet]:
    return {split: load_split(config, split, root=root, **kwargs) for split in SPLITS}
