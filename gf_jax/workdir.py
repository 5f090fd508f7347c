"""A run's folder: its lock, its fresh-or-resumed state on disk, and the metrics log.

A workdir holds `config.json`, `checkpoints/`, `metrics.jsonl` (one record per finished epoch)
and, once the run is finished, `result.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from gf_jax import atomic, checkpoint

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a locked or finished workdir)."""


@contextlib.contextmanager
def lock(workdir: Path) -> Iterator[None]:
    """An exclusive lock on the workdir; a second writer is refused at once."""
    workdir.mkdir(parents=True, exist_ok=True)
    f = open(workdir / ".lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        f.close()
        raise TrainingError(f"{workdir}: in use by another running job (lock held)") from e
    try:
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def prepare(
    workdir: Path, config: dict, *, resume: bool, keep_all: bool
) -> checkpoint.CheckpointStore:
    """Clears a workdir for a fresh run (kept when resuming), writes `config.json`."""
    ckpts = checkpoint.CheckpointStore(workdir / CHECKPOINTS_DIR, keep_all=keep_all)
    if not resume:
        ckpts.clear()
        (workdir / METRICS_FILE).unlink(missing_ok=True)
        (workdir / RESULT_FILE).unlink(missing_ok=True)
    atomic.write_json(workdir / CONFIG_FILE, config)
    return ckpts


def append_jsonl(path: Path, record: dict) -> None:
    """Appends one record and syncs it: the log survives a kill right after."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: Path, epochs: int) -> None:
    """Keeps the first `epochs` records: a kill between checkpoint and log leaves no duplicates."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["epoch"] <= epochs]
    atomic.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
