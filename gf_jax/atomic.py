"""Atomic file and folder writes: a killed process never leaves a half file that reads as valid.

Everything is written to a temporary sibling first and renamed into place (rename is atomic on
POSIX filesystems), so readers see either the old complete file or the new complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# What a killed writer leaves next to its target: `.<name>.<random>.tmp` (a file or folder being
# written) and `.<name>.old.<pid>` (a folder being replaced).
_TEMPORARY = re.compile(r"\..+\.(?:[^.]+\.tmp|old\.\d+)")


def write_bytes(path: str | os.PathLike, writer: Callable[[IO[bytes]], Any]) -> Path:
    """Calls `writer(f)` on a temporary file next to `path`, then renames it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, lambda f: f.write(text.encode()))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):  # numpy / jax scalars and arrays
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


@contextlib.contextmanager
def directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary folder that becomes `path` when the block exits without error.

    An existing `path` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Removes the temporaries of this module's writes found in `folder` (not below it).

    They are left only by killed writers; the caller must know that no writer is active in
    `folder` now (a training workdir's lock says so). Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if not _TEMPORARY.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
