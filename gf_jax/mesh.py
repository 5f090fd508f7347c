"""Device mesh and shardings for data parallelism: one `data` axis over every device.

Batches are split along their leading axis, parameters and optimizer state are replicated, and the
same `jax.jit`-compiled step runs on one device or many (no pmap). Multi-host runs call
`initialize_distributed` first; every process then sees all global devices in the mesh.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-host run (`jax.distributed.initialize`); no-op for a single process.

    With all arguments None, JAX auto-detects cluster environments (SLURM, Cloud TPU, ...).
    """
    if coordinator_address is None and num_processes in (None, 1):
        return
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all global devices)."""
    devs = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devs, (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the `data` axis, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a host batch (pytree of arrays with a leading batch axis) across the mesh."""
    n = mesh.devices.size
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % n:
            raise ValueError(f"batch size {leaf.shape[0]} is not divisible by {n} devices")
    return jax.device_put(batch, batch_sharded(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
    """Smallest multiple of the device count that holds `batch_size` examples."""
    n = mesh.devices.size
    return -(-batch_size // n) * n
