"""A split's cache folder on disk: written atomically, loaded with validation, leftovers removed.

Folder layout: `<split>-<key>/{<array>.npy, meta.json, source.json}` (+ the CC BY-NC-SA licence
note for data derived from the real samples). `save` writes into a temporary folder renamed into
place, so a killed write never leaves an entry later read as valid; `load` memory-maps the arrays
and names the file (and field and example) of anything unreadable, misshapen, non-finite or
repeated, so `gf_jax.data.store` can report a damaged entry in one line and rebuild it.
Temporary folders of killed writes are recognised by name and by their writer's pid
(`remove_stale_temps`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax import atomic
from gf_jax.cli import one_line, warn
from gf_jax.data.schema import ARRAY_KEYS, LAYOUT, META_KEYS, DataError, ScenarioSet

# Temporary folders of `atomic.directory` for a cache entry: `.<split>-<key>.<random>.tmp` while
# writing, `.<split>-<key>.old.<pid>` while replacing.
_TEMP_NAME = re.compile(r"\.(?:train|val|test)-[0-9a-f]{16}\.(?:old\.(?P<pid>\d+)|[^.]+\.tmp)")
WRITER_FILE = ".writer"  # "<host> <pid>" of the process writing a temporary folder
STALE_AFTER_S = 3600.0  # a cache write takes seconds; a temporary folder this old is a leftover
_NPY_MAGIC = b"\x93NUMPY"
CHECK_BYTES = 16 << 20  # rows per finiteness check: bounded memory on a memory-mapped split


def check_unique_tokens(s: ScenarioSet, where: str) -> None:
    """Refuses a scenario token that occurs twice (an example counted twice, scored twice)."""
    uniq, counts = np.unique(np.asarray(s.meta["token"]), return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise DataError(
            f"{where}: {dup.size} scenario token(s) occur more than once ({_few(dup)}); "
            "each scenario must appear once"
        )


def _few(tokens: np.ndarray, show: int = 3) -> str:
    more = f", ... {len(tokens) - show} more" if len(tokens) > show else ""
    return ", ".join(map(str, tokens[:show])) + more


def check_disjoint(splits: dict[str, ScenarioSet]) -> None:
    """Refuses tokens shared by train and val or train and test (the validation loss and the
    valuation would measure memorised examples). A val/test overlap only warns: a dataset without
    a test split (GameFormer's has train and valid only) may reuse its validation folder as test."""
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if a not in splits or b not in splits:
            continue
        shared = np.intersect1d(splits[a].meta["token"], splits[b].meta["token"])
        if not shared.size:
            continue
        message = (
            f"{splits[b].source} ({b} split): {shared.size} scenario token(s) are also in the "
            f"{a} split ({_few(shared)})"
        )
        if a == "train":
            raise DataError(f"{message}; splits must not overlap")
        warn(f"{message}; test results then repeat validation results")


def save(scenarios: ScenarioSet, path: str | os.PathLike, recipe: dict[str, Any] | None = None):
    """Writes a ScenarioSet as a cache folder, atomically (with the licence note of real data)."""
    with atomic.directory(path) as tmp:
        (tmp / WRITER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
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
        (tmp / WRITER_FILE).unlink()
    return Path(path)


def load(path: str | os.PathLike, *, mmap: bool = True) -> ScenarioSet:
    """Loads a cache folder; arrays are read-only memory maps unless `mmap=False`.

    Raises DataError naming the file (and field and example) if anything is unreadable, of the
    wrong shape or dtype, non-finite, or if a scenario token repeats.
    """
    path = Path(path)
    arrays = {}
    for k in ARRAY_KEYS:
        f = path / f"{k}.npy"
        try:
            if not _is_npy(f):  # np.load would call any other bytes "pickled data"
                raise DataError(f"{f}: unreadable cached array (not a .npy file)")
            arrays[k] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{f}: unreadable cached array ({one_line(e)})") from e
    raw, source = _read_metadata(path)
    n = arrays["ego_agent_future"].shape[0] if arrays["ego_agent_future"].ndim else -1
    for k, (shape, _) in LAYOUT.items():
        if arrays[k].shape != (n, *shape) or arrays[k].dtype != np.float32:
            raise DataError(
                f"{path / (k + '.npy')}: expected float32 {(n, *shape)}, got "
                f"{arrays[k].dtype} {arrays[k].shape}"
            )
    meta = {}
    for k in META_KEYS:
        meta[k] = np.asarray(raw.get(k, []), dtype=bool if k == "corrupted" else str)
        if meta[k].shape != (n,):
            raise DataError(f"{path / 'meta.json'}: {k}: expected {n} entries, got {meta[k].shape}")
    # Contents were validated before the atomic write; what can change since is damage on disk,
    # so only finiteness is checked (the padding checks would cost a full copy).
    for k in ARRAY_KEYS:
        i = first_non_finite(arrays[k])
        if i is not None:
            raise DataError(
                f"{path / (k + '.npy')}: {k}: non-finite value in example {i} "
                f"(token {meta['token'][i]})"
            )
    s = ScenarioSet(arrays, meta, source)
    check_unique_tokens(s, str(path / "meta.json"))
    return s


def _is_npy(f: Path) -> bool:
    with open(f, "rb") as fh:
        return fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC


def _read_metadata(path: Path) -> tuple[dict[str, Any], str]:
    """(meta.json's columns, source.json's source) of a cache folder, checked."""
    out = []
    for name, key in (("meta.json", None), ("source.json", "source")):
        try:
            data = json.loads((path / name).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{path / name}: unreadable cache metadata ({one_line(e)})") from e
        if not isinstance(data, dict) or (key and not isinstance(data.get(key), str)):
            raise DataError(f"{path / name}: unreadable cache metadata (not the expected object)")
        out.append(data[key] if key else data)
    return out[0], out[1]


def first_non_finite(a_NxD: np.ndarray) -> int | None:
    """Index of the first example holding a NaN/inf, or None; reads a memory map in slices."""
    n = a_NxD.shape[0]
    rows = max(1, CHECK_BYTES // max(1, a_NxD[:1].nbytes))
    for start in range(0, n, rows):
        chunk = a_NxD[start : start + rows]
        ok_N = np.isfinite(chunk).all(axis=tuple(range(1, chunk.ndim)))
        bad = np.flatnonzero(~ok_N)
        if bad.size:
            return start + int(bad[0])
    return None


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Removes the temporary folders of cache writes that were killed; returns them."""
    root = Path(root)
    removed = []
    for p in root.glob(".*") if root.is_dir() else ():
        m = _TEMP_NAME.fullmatch(p.name)
        if m and p.is_dir() and _is_stale(p, m.group("pid")):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            print(f"data: removed {p}, left by an interrupted cache write", file=sys.stderr)
    return removed


def _is_stale(folder: Path, old_pid: str | None) -> bool:
    """A temporary folder is stale if its writer (on this host) is dead, or if it is old."""
    try:
        if time.time() - folder.stat().st_mtime > STALE_AFTER_S:
            return True
        if old_pid is not None:
            return not _alive(int(old_pid))
        host, pid = (folder / WRITER_FILE).read_text().split()
    except (OSError, ValueError):
        return False  # no marker yet (being created) or gone: let its age decide later
    return host == socket.gethostname() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
