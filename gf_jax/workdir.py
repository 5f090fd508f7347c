"""A run's folder: its lock, the verdict on what it holds, its fresh-or-resumed start, the log.

A workdir holds `config.json`, `checkpoints/`, `metrics.jsonl` (one record per finished epoch)
and, once the run is finished, `result.json`. Nothing there is lost without being asked for:
an interrupted run is continued only with `resume` and started over only with `overwrite`, a
finished one is replaced only with `overwrite`, and a saved configuration that differs from the
requested one is never resumed. In a multi-process run only process 0 calls these.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gf_jax import atomic, checkpoint

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
FRESH, RESUME, FINISHED = "fresh", "resume", "finished"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a locked, finished or interrupted workdir)."""


def _open_lock(path: Path) -> int:
    """The lock file's descriptor, the lock held; TrainingError at once if someone holds it."""
    while True:
        # No O_TRUNC: a refused opener must not wipe the holder's pid.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            holder = path.read_text().strip() if path.exists() else ""
            who = f" (pid {holder})" if holder else ""
            raise TrainingError(f"{path.parent}: in use by another running job{who}") from e
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder unlinked while we waited: the lock is ours
            return fd
        os.close(fd)


def check_usable(workdir: Path) -> None:
    """TrainingError (or PermissionError) naming `workdir` if it cannot become a run's folder.

    Checked before any work, so that a typo costs no data loading; `lock` meets the same
    problems later only if the folder changed meanwhile.
    """
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise TrainingError(f"{workdir}: is a file, not a folder (--workdir)")
    ancestor = workdir
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TrainingError(f"{ancestor}: is a file, so {workdir} cannot be created (--workdir)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{ancestor}: not writable, so {workdir} cannot be used (--workdir)")


@contextlib.contextmanager
def lock(workdir: Path) -> Iterator[None]:
    """An exclusive lock on the workdir; a second writer is refused at once, naming the holder.

    The lock file holds the holder's pid and is removed on release (the holder unlinks it while
    still holding it, and a new opener checks that it locked the file still in place).
    """
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise TrainingError(f"{workdir}: is a file, not a folder (--workdir)")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = _open_lock(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def config_diff(saved: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON configs (added and removed keys too)."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(saved) | set(wanted), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in wanted:
                out.append(name)
            else:
                out.extend(config_diff(saved[key], wanted[key], name))
        return out
    return [] if saved == wanted else [prefix or "(the whole config)"]


def _read_json(path: Path, hint: str) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise TrainingError(f"{path}: unreadable ({e}); {hint}") from e


def _check_config(workdir: Path, saved: Any, config: dict) -> None:
    """TrainingError naming the keys in which the saved configuration differs from `config`."""
    diff = config_diff(saved, json.loads(json.dumps(config)))
    if diff:
        shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise TrainingError(
            f"{workdir}: holds a run with another configuration ({shown} differ); "
            "pass --overwrite to replace it, or use another --workdir"
        )


def plan(workdir: Path, config: dict, *, resume: bool, overwrite: bool) -> dict[str, Any]:
    """What to do with `workdir` (call under its lock): {"state": fresh | resume | finished}.

    "finished" carries the saved result. TrainingError, with a hint that is true for
    `python -m gf_jax.train`, when going on would lose or mix work.
    """
    ckpts = checkpoint.CheckpointStore(workdir / CHECKPOINTS_DIR)
    result_path, config_path = workdir / RESULT_FILE, workdir / CONFIG_FILE
    if overwrite:
        return {"state": FRESH}
    if result_path.exists():
        if not resume:
            raise TrainingError(
                f"{workdir}: holds a finished run; pass --overwrite to replace it "
                "(or --resume to return its result)"
            )
        rebuild = "delete it and rerun with --resume to rebuild it from the checkpoints"
        result = _read_json(result_path, rebuild)
        _check_config(workdir, result.get("config"), config)
        return {"state": FINISHED, "result": result}
    if not ckpts.any():
        return {"state": FRESH}  # nothing checkpointed yet: nothing to lose
    if not resume:
        latest = ckpts.latest()
        done = f"epoch {latest + 1} checkpointed" if latest is not None else "no complete epoch"
        raise TrainingError(
            f"{workdir}: holds an interrupted run ({done}); pass --resume to continue it "
            "or --overwrite to start over"
        )
    if config_path.exists():
        hint = "delete it to resume without the check, or pass --overwrite to start over"
        _check_config(workdir, _read_json(config_path, hint), config)
    return {"state": RESUME}


def begin(workdir: Path, config: dict, *, fresh: bool, history: Sequence[dict]) -> None:
    """Writes the run's start once its state is in memory: nothing is touched before that.

    A fresh start clears an old run's checkpoints and result (only `plan` lets one reach here).
    The log is rewritten from the restored history (the checkpoint's own copy): a kill between
    checkpoint and log, or a torn last line, leaves no trace. Then `config.json`.
    """
    if fresh:
        checkpoint.CheckpointStore(workdir / CHECKPOINTS_DIR).clear()
        (workdir / RESULT_FILE).unlink(missing_ok=True)
    rows = "".join(json.dumps(r, sort_keys=True) + "\n" for r in history)
    atomic.write_text(workdir / METRICS_FILE, rows)
    atomic.write_json(workdir / CONFIG_FILE, config)


def remove_temporaries(workdir: Path) -> list[Path]:
    """Removes what killed writes left in the workdir and its checkpoints (under the lock)."""
    found = atomic.remove_temporaries(workdir)
    return found + checkpoint.CheckpointStore(workdir / CHECKPOINTS_DIR).remove_temporaries()


def append_jsonl(path: Path, record: dict) -> None:
    """Appends one record and syncs it: the log survives a kill right after."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
