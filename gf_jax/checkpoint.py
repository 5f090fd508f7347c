"""Parameter checkpoints on disk; the only module that imports orbax.

A checkpoint is a folder holding `params/` (an orbax PyTree checkpoint of the nested dict of
arrays) and `metadata.json`. It is written into a temporary sibling and renamed into place, so
a killed process never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
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
