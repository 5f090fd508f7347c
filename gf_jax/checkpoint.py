"""Parameter checkpoints on disk; the only module that imports orbax.

A checkpoint is a folder holding `params/` (an orbax PyTree checkpoint of the nested dict of
arrays) and `metadata.json`. It is written into a temporary sibling and renamed into place, so
a killed process never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gf_jax import atomic

PARAMS_DIR = "params"
METADATA_FILE = "metadata.json"


def save_params(directory: str | os.PathLike, params: Any, metadata: dict) -> Path:
    """Writes `params` (a pytree of arrays) and JSON-serialisable `metadata`; returns the folder.

    An existing checkpoint at `directory` is replaced only once the new one is complete.
    """
    directory = Path(directory).absolute()
    host_params = jax.tree.map(np.asarray, jax.device_get(params))
    with atomic.directory(directory) as tmp:
        checkpointer = ocp.PyTreeCheckpointer()
        checkpointer.save(tmp / PARAMS_DIR, host_params)
        atomic.write_json(tmp / METADATA_FILE, metadata)
    return directory


def restore_params(directory: str | os.PathLike) -> tuple[Any, dict]:
    """Reads a checkpoint written by `save_params`: (params as jnp arrays, metadata)."""
    directory = Path(directory).absolute()
    params_dir = directory / PARAMS_DIR
    if not params_dir.is_dir():
        raise FileNotFoundError(f"{directory}: not a checkpoint (no {PARAMS_DIR}/ folder)")
    checkpointer = ocp.PyTreeCheckpointer()
    tree_meta = checkpointer.metadata(params_dir)
    tree_meta = getattr(tree_meta, "item_metadata", tree_meta)
    tree_meta = getattr(tree_meta, "tree", tree_meta)
    # Restore to host numpy (no sharding needed), then hand out jnp arrays.
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree_meta)
    restored = checkpointer.restore(params_dir, restore_args=restore_args)
    params = jax.tree.map(jnp.asarray, restored)
    metadata = json.loads((directory / METADATA_FILE).read_text())
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
    TracIn needs each checkpoint with its learning rate); otherwise only the latest. `best/`
    holds the parameters of the best validation epoch. Writes are atomic, so `epochs()` lists
    only complete checkpoints.
    """

    def __init__(self, root: str | os.PathLike, *, keep_all: bool = False):
        self.root = Path(root)
        self.keep_all = keep_all

    def path(self, epoch: int | str) -> Path:
        return self.root / "best" if epoch == "best" else self.root / f"epoch_{int(epoch):03d}"

    def epochs(self) -> list[int]:
        """0-based epochs with a complete checkpoint, ascending."""
        if not self.root.is_dir():
            return []
        return sorted(
            int(p.name[6:])
            for p in self.root.glob("epoch_*")
            if p.name[6:].isdigit() and (p / METADATA_FILE).exists()
        )

    def latest(self) -> int | None:
        found = self.epochs()
        return found[-1] if found else None

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def save(
        self, epoch: int, params: Any, opt_state: Any, metadata: dict, *, is_best: bool
    ) -> Path:
        """Writes the epoch's state, updates `best/`, and prunes older epochs unless keep_all."""
        meta = {**metadata, "epoch": epoch}
        state = {"params": params, "opt_state": _leaves_dict(jax.device_get(opt_state))}
        path = save_params(self.path(epoch), state, meta)
        if is_best:
            save_params(self.path("best"), {"params": params}, meta)
        if not self.keep_all:
            for e in self.epochs():
                if e < epoch:
                    shutil.rmtree(self.path(e), ignore_errors=True)
        return path

    def restore(self, epoch: int, opt_state_like: Any) -> tuple[Any, Any, dict]:
        """(params, optimizer state in the structure of `opt_state_like`, metadata) of an epoch."""
        state, meta = restore_params(self.path(epoch))
        return state["params"], _from_leaves_dict(state["opt_state"], opt_state_like), meta

    def params(self, epoch: int | str) -> Any:
        """The parameters saved at a 0-based epoch, or at "best"."""
        return restore_params(self.path(epoch))[0]["params"]

    def metadata(self, epoch: int | str) -> dict:
        return json.loads((self.path(epoch) / METADATA_FILE).read_text())
