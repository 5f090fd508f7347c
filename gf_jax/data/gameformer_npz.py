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
import threading
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
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
_NPY_MAGIC = b"\x93NUMPY"
# numpy parses every .npy header with `ast.literal_eval`, and CPython 3.11's AST constructor is not
# thread-safe (concurrent calls can raise "SystemError: AST constructor recursion depth mismatch"):
# `load` reads files on a thread pool, so member reads take this lock.
# Members of GameFormer's npz files are small and stored uncompressed, so little is serialised.
_NPY_READ_LOCK = threading.Lock()


def city_of_map(map_name: str) -> str:
    """nuPlan map name -> our city name ('' if unknown)."""
    return _CITY_OF_MAP.get(map_name, "")


def read_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str, str]:
    """One scenario: (arrays without batch axis, map_name, token). Raises DataError naming the file."""
    path = Path(path)
    _check_is_zip(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            missing = [k for k in ARRAY_KEYS if k not in names]
            if missing:
                raise DataError(f"{path}: {missing[0]}: missing key")
            arrays = {k: _member(z, k, path) for k in ARRAY_KEYS}
            map_name = str(_member(z, "map_name", path)) if "map_name" in names else ""
            token = str(_member(z, "token", path)) if "token" in names else ""
    except DataError:
        raise
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: unreadable npz (truncated or corrupt zip archive: {e})") from e
    except (EOFError, OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: unreadable npz ({_reason(e)})") from e
    if not map_name or not token:
        stem_map, _, stem_token = path.stem.rpartition("_")
        map_name, token = map_name or stem_map, token or stem_token
    for k, a in arrays.items():
        if a.dtype != DTYPE and np.issubdtype(a.dtype, np.floating):
            arrays[k] = a.astype(DTYPE)
    validate_arrays(arrays, str(path), batched=False)
    return arrays, map_name, token


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_is_zip(path: Path) -> None:
    """Refuses a file that is not a zip archive by its first bytes, so garbage is called garbage
    (np.load would otherwise take it for a pickle and say "pickled data")."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DataError(f"{path}: unreadable npz ({e.strerror or _reason(e)})") from e
    if head.startswith(_ZIP_MAGIC):
        return
    what = (
        "the file is empty"
        if not head
        else "it is a single .npy array"
        if head.startswith(_NPY_MAGIC)
        else "garbage bytes or another format"
    )
    raise DataError(f"{path}: unreadable npz (not an npz/zip archive: {what})")


def _member(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an open npz; object arrays are refused as pickles, never loaded."""
    try:
        with _NPY_READ_LOCK:
            return z[key]
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise
        raise DataError(
            f"{path}: unreadable npz ({key}: contains pickled objects, never loaded)"
        ) from e


def list_files(folder: str | os.PathLike) -> list[Path]:
    """The scenario files of a folder, sorted by name. Raises DataError if there are none, or if a
    `*.npz` is a symlink to nothing (named, instead of a FileNotFoundError later)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no .npz scenario files")
    dangling = [p for p in files if p.is_symlink() and not p.exists()]
    if dangling:
        more = f"; and {len(dangling) - 1} more in {folder}" if len(dangling) > 1 else ""
        raise DataError(
            f"{dangling[0]}: dangling symlink (its target {os.readlink(dangling[0])} does not "
            f"exist){more}"
        )
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
    errors: list[str | None] = [None] * n  # every bad file is reported, not only the first

    def load(i: int) -> None:
        try:
            arrays, names[0, i], names[1, i] = read_file(files[i])
        except DataError as e:
            errors[i] = str(e)
            return
        for k in ARRAY_KEYS:
            out[k][i] = arrays[k]

    with ThreadPoolExecutor(max(1, workers)) as pool:
        jobs: Iterable = pool.map(load, range(n))
        if progress:
            jobs = tqdm(jobs, total=n, desc=f"reading {folder.name}", unit="scn")
        for _ in jobs:
            pass
    bad = [e for e in errors if e is not None]
    if bad:
        raise DataError(_summary(folder, bad, n))

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


def _summary(folder: Path, errors: list[str], n: int, show: int = 3) -> str:
    """One line for the bad files of a folder: the first `show` messages and a count of the rest."""
    if len(errors) == 1:
        return errors[0]
    prefix = f"{folder}{os.sep}"
    shown = "; ".join(e.removeprefix(prefix) for e in errors[:show])
    more = f"; and {len(errors) - show} more" if len(errors) > show else ""
    return f"{folder}: {len(errors)} of {n} scenario files are bad: {shown}{more}"


def _set_str(a: np.ndarray, i: int, value: str) -> np.ndarray:
    # Fixed-width str arrays truncate on assignment; widen when needed.
    if len(value) > a.dtype.itemsize // 4:
        a = a.astype(f"<U{len(value)}")
    a[i] = value
    return a


def read_sidecar(folder: Path) -> dict[str, dict]:
    """The folder's metadata sidecar (file name -> metadata; {} if there is none), checked."""
    path = folder / META_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable metadata ({_reason(e)})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of file name -> metadata")
    for name, entry in data.items():
        _check_entry(path, name, entry)
    return data


def _check_entry(path: Path, name: str, entry: object) -> None:
    """A sidecar entry is an object whose known fields have the right JSON types."""
    if not isinstance(entry, dict):
        raise DataError(
            f"{path}: entry {name!r} is {_json_type(entry)}, expected an object of metadata"
        )
    for key, kind in (("city", str), ("scenario_type", str), ("corrupted", bool)):
        if key in entry and not isinstance(entry[key], kind):
            raise DataError(
                f"{path}: entry {name!r}: {key} is {_json_type(entry[key])}, expected "
                f"{_json_type(kind())}"
            )


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else "unknown")


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
