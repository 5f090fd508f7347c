"""Read and write folders of GameFormer-processed `.npz` scenarios (`<map_name>_<token>.npz`).

Each file holds exactly what GameFormer-Planner's `data_process.py` saves with `np.savez`: the 0-d
unicode arrays `map_name` and `token` and the seven float32 layout arrays. Our own metadata (`city`,
`scenario_type`, `corrupted`) lives in a sidecar `gf_jax_meta.json` in the folder, so the files
themselves stay interchangeable with real processed nuPlan folders. Files are read with
`allow_pickle=False`: object arrays are rejected, never unpickled.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gf_jax import atomic
from gf_jax.data.schema import (
    ARRAY_KEYS,
    CITY_MAP_NAMES,
    DTYPE,
    LAYOUT,
    META_STR_KEYS,
    DataError,
    ScenarioSet,
    empty_meta,
    validate_arrays,
)

META_FILE = "gf_jax_meta.json"
# Key order of GameFormer-Planner's saved dicts.
FILE_KEYS = ("map_name", "token", *ARRAY_KEYS)
_CITY_OF_MAP = {v: k for k, v in CITY_MAP_NAMES.items()}


def city_of_map(map_name: str) -> str:
    """nuPlan map name -> our city name ('' if unknown)."""
    return _CITY_OF_MAP.get(map_name, "")


def read_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str, str]:
    """One scenario: (arrays without batch axis, map_name, token). Raises DataError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            missing = [k for k in ARRAY_KEYS if k not in names]
            if missing:
                raise DataError(f"{path}: {missing[0]}: missing key")
            arrays = {k: z[k] for k in ARRAY_KEYS}
            map_name = str(z["map_name"]) if "map_name" in names else ""
            token = str(z["token"]) if "token" in names else ""
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        # ValueError also covers object arrays that would need pickle.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: unreadable npz ({reason})") from e
    if not map_name or not token:
        stem_map, _, stem_token = path.stem.rpartition("_")
        map_name, token = map_name or stem_map, token or stem_token
    for k, a in arrays.items():
        if a.dtype != DTYPE and np.issubdtype(a.dtype, np.floating):
            arrays[k] = a.astype(DTYPE)
    validate_arrays(arrays, str(path), batched=False)
    return arrays, map_name, token


def list_files(folder: str | os.PathLike) -> list[Path]:
    """The scenario files of a folder, sorted by name. Raises DataError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no .npz scenario files")
    return files


def read_folder(
    folder: str | os.PathLike,
    *,
    limit: int | None = None,
    workers: int = 8,
    progress: bool = False,
) -> ScenarioSet:
    """Reads every `*.npz` of `folder` (sorted by name) into one validated ScenarioSet."""
    folder = Path(folder)
    files = list_files(folder)[:limit]
    n = len(files)
    out = {k: np.empty((n, *shape), DTYPE) for k, (shape, _) in LAYOUT.items()}
    names = np.empty((2, n), dtype=object)

    def load(i: int) -> None:
        arrays, names[0, i], names[1, i] = read_file(files[i])
        for k in ARRAY_KEYS:
            out[k][i] = arrays[k]

    with ThreadPoolExecutor(max(1, workers)) as pool:
        jobs: Iterable = pool.map(load, range(n))
        if progress:
            jobs = tqdm(jobs, total=n, desc=f"reading {folder.name}", unit="scn")
        for _ in jobs:
            pass

    map_name, token = names[0].astype(str), names[1].astype(str)
    meta = empty_meta(n, map_name=map_name, token=token)
    meta["city"] = np.array([city_of_map(m) for m in map_name], dtype=str)
    sidecar = read_sidecar(folder)
    if sidecar:
        for i, f in enumerate(files):
            entry = sidecar.get(f.name)
            if entry is None:
                continue
            for k in ("city", "scenario_type"):
                if k in entry:
                    meta[k] = _set_str(meta[k], i, entry[k])
            meta["corrupted"][i] = bool(entry.get("corrupted", False))
    return ScenarioSet(out, meta, str(folder))


def _set_str(a: np.ndarray, i: int, value: str) -> np.ndarray:
    # Fixed-width str arrays truncate on assignment; widen when needed.
    if len(value) > a.dtype.itemsize // 4:
        a = a.astype(f"<U{len(value)}")
    a[i] = value
    return a


def read_sidecar(folder: Path) -> dict[str, dict]:
    """The folder's metadata sidecar (file name -> metadata; {} if there is none)."""
    path = folder / META_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable metadata ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of file name -> metadata")
    return data


def file_name(map_name: str, token: str) -> str:
    return f"{map_name}_{token}.npz"


def write_file(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], map_name: str, token: str
) -> Path:
    """Writes one scenario exactly as GameFormer-Planner does (np.savez, uncompressed), atomically."""
    path = Path(path)
    data = {"map_name": np.str_(map_name), "token": np.str_(token)}
    data.update({k: np.asarray(arrays[k], DTYPE) for k in ARRAY_KEYS})
    atomic.write_bytes(path, lambda f: np.savez(f, **data))
    return path


def write_folder(
    scenarios: ScenarioSet, folder: str | os.PathLike, *, progress: bool = False
) -> list[Path]:
    """Writes each scenario to `folder/<map_name>_<token>.npz` plus the metadata sidecar."""
    scenarios.validate()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m = scenarios.meta
    names = [file_name(a, b) for a, b in zip(m["map_name"], m["token"], strict=True)]
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise DataError(f"{folder}: two scenarios would both be written to {dup}")
    paths = []
    rows = range(len(scenarios))
    for i in tqdm(rows, desc=f"writing {folder.name}", unit="scn", disable=not progress):
        arrays = {k: scenarios.arrays[k][i] for k in ARRAY_KEYS}
        paths.append(write_file(folder / names[i], arrays, m["map_name"][i], m["token"][i]))
    sidecar = read_sidecar(folder)
    for i, name in enumerate(names):
        sidecar[name] = {k: str(m[k][i]) for k in META_STR_KEYS if k not in ("map_name", "token")}
        sidecar[name]["corrupted"] = bool(m["corrupted"][i])
    atomic.write_json(folder / META_FILE, sidecar)
    return paths
