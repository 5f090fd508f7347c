"""Parameter checkpoints on disk; the only module that imports orbax.

A checkpoint is a folder holding `params/` (an orbax PyTree checkpoint of the nested dict of
arrays), `files.json` (the size and CRC-32 of every file under `params/`) and `metadata.json`,
written last. It is written into a temporary sibling and renamed into place, so a killed process
never leaves a half-written checkpoint under the final name; `files.json` catches what a kill
cannot explain (a truncated or deleted file, flipped bits) before orbax is asked to read it, so a
damaged checkpoint is reported in one line naming it, never as pages of orbax internals.

One process writes a checkpoint (orbax is told that it is the only participant); in a
multi-process run that is process 0, and the others get its contents by broadcast.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gf_jax import atomic

PARAMS_DIR = "params"
METADATA_FILE = "metadata.json"
FILES_FILE = "files.json"
_CRC_CHUNK = 16 << 20


class CheckpointError(RuntimeError):
    """A checkpoint folder cannot be read back; the message names it and the first problem."""


def _checkpointer() -> ocp.Checkpointer:
    """A PyTree checkpointer in which this process alone reads and writes (no peer barriers)."""
    me = jax.process_index()
    opts = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    handler = ocp.PyTreeCheckpointHandler(multiprocessing_options=opts)
    return ocp.Checkpointer(handler, multiprocessing_options=opts)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences orbax's and absl's warnings: a failure is reported by us, in one line."""
    loggers = [logging.getLogger(name) for name in ("absl", "orbax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CRC_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _file_table(folder: Path) -> dict[str, list[int]]:
    """{relative path: [size, crc32]} of every file below `folder`."""
    return {
        str(p.relative_to(folder)): [p.stat().st_size, _crc32(p)]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def save_params(directory: str | os.PathLike, params: Any, metadata: dict) -> Path:
    """Writes `params` (a pytree of arrays) and JSON-serialisable `metadata`; returns the folder.

    An existing checkpoint at `directory` is replaced only once the new one is complete.
    """
    directory = Path(directory).absolute()
    host_params = jax.tree.map(np.asarray, jax.device_get(params))
    _check_space(directory, sum(x.nbytes for x in jax.tree.leaves(host_params)))
    with atomic.directory(directory) as tmp:
        # The checkpointer is closed even on failure: otherwise orbax's writer threads print
        # pages of "Event loop is closed" tracebacks when the interpreter exits.
        try:
            with _quiet(), _checkpointer() as checkpointer:
                checkpointer.save(tmp / PARAMS_DIR, host_params)
        except Exception as e:  # tensorstore wraps an OS error in pages of its spec
            raise _write_failure(e, directory) from e
        atomic.write_json(tmp / FILES_FILE, _file_table(tmp / PARAMS_DIR))
        atomic.write_json(tmp / METADATA_FILE, metadata)  # last: it marks the folder complete
    return directory


def _check_space(directory: Path, nbytes: int) -> None:
    """Refuses a write that cannot fit, before orbax starts one: a full disk met half-way
    through a write leaves orbax's threads printing tracebacks long after the error."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    usage = shutil.disk_usage(existing)
    # Some FUSE and network file systems report no sizes at all: then orbax finds out itself.
    # `nbytes` is uncompressed, an upper bound of what orbax writes.
    if usage.total and usage.free < nbytes:
        needs = f"at most {nbytes / 1e6:.1f} MB needed, {usage.free / 1e6:.1f} MB free"
        reason = f"cannot write the checkpoint: {os.strerror(errno.ENOSPC)} ({needs})"
        raise OSError(errno.ENOSPC, reason, str(directory))


def _write_failure(error: Exception, directory: Path) -> Exception:
    """One line for a failed write: the OS error (full disk, no permission) naming the
    checkpoint folder when orbax's message carries one, else the first line of the message."""
    code = getattr(error, "errno", None)
    if not code:
        found = re.search(r"os_error_code='(\d+)'", str(error))
        code = int(found.group(1)) if found else None
    if code:
        return OSError(code, f"cannot write the checkpoint: {os.strerror(code)}", str(directory))
    text = re.sub(r"\s*\[tensorstore_spec=.*", "", _reason(error))
    return CheckpointError(f"{directory}: cannot write the checkpoint: {text}")


def read_metadata(directory: str | os.PathLike) -> dict:
    """A checkpoint's metadata; CheckpointError naming the folder if it is missing or garbled."""
    path = Path(directory) / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({_reason(e)})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: unreadable (not a JSON object)")
    return meta


def verify(directory: str | os.PathLike) -> None:
    """CheckpointError naming the first file of `params/` that is missing, cut or changed.

    Checkpoints written before `files.json` existed are not checked here (orbax still is).
    """
    directory = Path(directory)
    table_path = directory / FILES_FILE
    if not table_path.exists():
        return
    try:
        table = json.loads(table_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{table_path}: unreadable ({_reason(e)})") from e
    params_dir = directory / PARAMS_DIR
    for name, (size, crc) in table.items():
        path = params_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if path.stat().st_size != size:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, written as {size}")
        if _crc32(path) != crc:
            raise CheckpointError(f"{path}: contents changed since it was written (CRC-32)")


def _reason(error: BaseException) -> str:
    """The first line of an error (orbax and tensorstore messages run to pages)."""
    lines = (str(error) or type(error).__name__).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def restore_params(directory: str | os.PathLike) -> tuple[Any, dict]:
    """Reads a checkpoint written by `save_params`: (params as jnp arrays, metadata).

    FileNotFoundError if `directory` is no checkpoint at all; CheckpointError naming it (and the
    damaged file, where known) if it is one that cannot be read back.
    """
    directory = Path(directory).absolute()
    params_dir = directory / PARAMS_DIR
    if not params_dir.is_dir():
        raise FileNotFoundError(f"{directory}: not a checkpoint (no {PARAMS_DIR}/ folder)")
    metadata = read_metadata(directory)
    verify(directory)
    try:
        with _quiet(), _checkpointer() as checkpointer:
            tree_meta = checkpointer.metadata(params_dir)
            tree_meta = getattr(tree_meta, "item_metadata", tree_meta)
            tree_meta = getattr(tree_meta, "tree", tree_meta)
            # Restore to host numpy (no sharding needed), then hand out jnp arrays.
            restore_args = jax.tree.map(
                lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree_meta
            )
            restored = checkpointer.restore(params_dir, restore_args=restore_args)
    except Exception as e:  # orbax raises many types; all mean "this folder does not read back"
        raise CheckpointError(f"{directory}: unreadable checkpoint ({_reason(e)})") from e
    params = jax.tree.map(jnp.asarray, restored)
    return params, metadata


# ----------------------------------------------------------------------------- training runs


def _leaves_dict(tree: Any) -> dict[str, np.ndarray]:
    """Optimizer state as {leaf_00000: array, ...}: orbax never has to rebuild optax's tuples."""
    return {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


def _from_leaves_dict(flat: dict[str, Any], like: Any) -> Any:
    treedef = jax.tree.structure(like)
    if len(flat) != treedef.num_leaves:
        raise ValueError(
            f"checkpoint holds {len(flat)} optimizer leaves, expected {treedef.num_leaves} "
            "(saved with another model or optimizer?)"
        )
    return jax.tree.unflatten(treedef, [flat[f"leaf_{i:05d}"] for i in range(len(flat))])


class CheckpointStore:
    """Per-epoch training checkpoints of one run: `epoch_NNN/` folders plus `best/`.

    An epoch's folder holds the params, the optimizer state and metadata (0-based epoch, global
    step, learning rate, metric history). With `keep_all` every epoch is kept (reference runs:
    TracIn needs each checkpoint with its learning rate); otherwise the latest two, so that a
    damaged latest checkpoint still has a complete one to fall back to. `best/` holds the
    parameters of the best validation epoch. Writes are atomic, so `epochs()` lists only
    complete checkpoints.
    """

    KEEP = 2  # epochs kept without keep_all: the latest, and one to fall back to

    def __init__(self, root: str | os.PathLike, *, keep_all: bool = False):
        self.root = Path(root)
        self.keep_all = keep_all

    def path(self, epoch: int | str) -> Path:
        return self.root / "best" if epoch == "best" else self.root / f"epoch_{int(epoch):03d}"

    def _folders(self) -> list[int]:
        """0-based epochs with an `epoch_NNN` folder, complete or not, ascending."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[6:]) for p in self.root.glob("epoch_*") if p.name[6:].isdigit())

    def epochs(self) -> list[int]:
        """0-based epochs with a complete checkpoint, ascending."""
        return [e for e in self._folders() if (self.path(e) / METADATA_FILE).exists()]

    def latest(self) -> int | None:
        found = self.epochs()
        return found[-1] if found else None

    def any(self) -> bool:
        """True if any epoch folder exists (complete or not): there is work to lose."""
        return bool(self._folders())

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def remove_temporaries(self) -> list[Path]:
        """Removes what killed writes left here; call only while no one else writes (the lock)."""
        return atomic.remove_temporaries(self.root)

    def save(
        self, epoch: int, params: Any, opt_state: Any, metadata: dict, *, is_best: bool
    ) -> Path:
        """Writes the epoch's state, updates `best/`, and prunes older epochs unless keep_all."""
        meta = {**metadata, "epoch": epoch}
        state = {"params": params, "opt_state": _leaves_dict(jax.device_get(opt_state))}
        # `best/` first: the epoch folder is what a resume starts from, so if the second write
        # fails (a full disk) or is killed, the epoch is retrained and `best/` rewritten with
        # the same parameters, never left behind an epoch the history calls best.
        if is_best:
            save_params(self.path("best"), {"params": params}, meta)
        path = save_params(self.path(epoch), state, meta)
        if not self.keep_all:
            for e in self._folders():
                if e <= epoch - self.KEEP:
                    shutil.rmtree(self.path(e), ignore_errors=True)
        return path

    def restore(self, epoch: int, opt_state_like: Any) -> tuple[Any, Any, dict]:
        """(params, optimizer state in the structure of `opt_state_like`, metadata) of an epoch."""
        state, meta = restore_params(self.path(epoch))
        return state["params"], _from_leaves_dict(state["opt_state"], opt_state_like), meta

    def restore_latest(
        self, opt_state_like: Any, report: Callable[[str], None] = print
    ) -> tuple[Any, Any, dict] | None:
        """The newest checkpoint that reads back: (params, opt_state, metadata), or None.

        A damaged newer one is reported (one line naming it and what is used instead) and removed:
        its epoch is trained again, bit-identically, from the one restored.
        """
        folders = self._folders()
        for i, epoch in reversed(list(enumerate(folders))):
            try:
                return self.restore(epoch, opt_state_like)
            except (CheckpointError, FileNotFoundError) as e:  # damage; not a wrong model
                instead = f"resuming from epoch_{folders[i - 1]:03d}" if i else "starting over"
                report(
                    f"warning: damaged checkpoint {self.path(epoch)} removed: {_reason(e)}; {instead}"
                )
                shutil.rmtree(self.path(epoch), ignore_errors=True)
        return None

    def params(self, epoch: int | str) -> Any:
        """The parameters saved at a 0-based epoch, or at "best"."""
        return restore_params(self.path(epoch))[0]["params"]

    def metadata(self, epoch: int | str) -> dict:
        return read_metadata(self.path(epoch))
