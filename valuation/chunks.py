"""A dataset cut into fixed-size chunks placed over a device mesh, and per-chunk results gathered.

Every pass walks its dataset in chunks of ONE fixed size (`chunk_size_for`); the last chunk is
padded by repeating its last example with weight 0, so each jitted kernel compiles once per
shape. With a mesh of several devices each chunk is split over its `data` axis. Per-chunk
results stay on the device until `collect` fetches them all in one host transfer.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gf_jax import mesh as mesh_lib
from valuation.trees import Data, num_examples


def resolve_mesh(mesh: Mesh | None) -> Mesh:
    """The given mesh, or a `data` mesh over every device."""
    return mesh if mesh is not None else mesh_lib.data_mesh()


def chunk_size_for(n: int, chunk_size: int, mesh: Mesh) -> int:
    """The one chunk size a pass over n examples uses: at most `chunk_size` (no larger than
    needed for n), rounded up to a multiple of the device count."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return mesh_lib.round_up_to_devices(max(1, min(chunk_size, n)), mesh)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A fixed-size slice of a dataset, placed on the devices.

    Attributes:
      data: the examples, a pytree with leading axis B (the chunk size).
      weight_B: 1 for real examples, 0 for padding.
      index_B: int32 global example index (padding repeats the last real one).
      start: global index of the chunk's first example.
      n_valid: number of real (unpadded) examples.
    """

    data: Any
    weight_B: jax.Array
    index_B: jax.Array
    start: int
    n_valid: int


def iter_chunks(data: Data, chunk_size: int, mesh: Mesh) -> Iterator[Chunk]:
    """Chunks of exactly `chunk_size` examples (use `chunk_size_for`) split over `mesh`."""
    n = num_examples(data)
    if chunk_size % mesh.devices.size:
        raise ValueError(f"chunk size {chunk_size} is not divisible by {mesh.devices.size} devices")
    sharding = NamedSharding(mesh, PartitionSpec(mesh_lib.DATA_AXIS))
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        index_B = np.arange(start, start + chunk_size)
        index_B[stop - start :] = stop - 1
        weight_B = (np.arange(start, start + chunk_size) < stop).astype(np.float32)
        host = jax.tree.map(functools.partial(_take, index_B=index_B, start=start, stop=stop), data)
        placed = jax.device_put((host, weight_B, index_B.astype(np.int32)), sharding)
        yield Chunk(placed[0], placed[1], placed[2], start, stop - start)


def _take(x: Any, index_B: np.ndarray, start: int, stop: int) -> Any:
    # A contiguous slice reads a memory map sequentially; fancy indexing only for the padded tail.
    if stop - start == len(index_B):
        return x[start:stop]
    return x[index_B] if isinstance(x, jax.Array) else np.asarray(x)[index_B]


def collect(parts: list[jax.Array], n: int) -> np.ndarray:
    """Concatenates per-chunk device results (one host transfer) and drops the padding: the [N]
    float64 results of the first n examples."""
    host = jax.device_get(parts)
    if not host:
        return np.zeros(0, np.float64)
    return np.concatenate([np.asarray(p) for p in host])[:n].astype(np.float64)


def collect_trees(parts: list[Any], n: int) -> Any:
    """Concatenates per-chunk device pytrees (one host transfer) and drops the padding: a host
    pytree of [N, ...] arrays."""
    host = jax.device_get(parts)
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *host)
