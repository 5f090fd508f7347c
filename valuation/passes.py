"""One pass of a loss function over a dataset: the set-up every per-example pass shares.

`prepare` does, once, what each pass in `valuation.grads` needs before its loop: resolve the
mesh, fetch the cached kernels, count the examples, choose the dropout key and place parameters,
tangent and key (replicated over the mesh for chunked passes; on the mesh's first device for
the batch-1 loop, since a single example cannot be split). The `Pass` it returns then maps a
function over the padded, sharded chunks (`map_chunks`, padding dropped) or over batch-1
example gradients (`map_example_grads`). Nothing is fetched to the host until a map has
dispatched every chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from gf_jax import mesh as mesh_lib
from valuation.chunks import Chunk, chunk_size_for, collect, iter_chunks, resolve_mesh
from valuation.kernels import Kernels, LossFn, default_key, kernels
from valuation.trees import Data, Params, example_at, num_examples


@dataclasses.dataclass(frozen=True)
class Pass:
    """A loss, a dataset and their placed inputs, ready to be mapped chunk by chunk.

    Attributes:
      kernels: the jitted per-chunk programs of the loss.
      mesh: the devices the chunks are split over.
      data: the dataset, leading axis N (host or device arrays).
      n: the number of examples N.
      chunk_size: examples per chunk (already `chunk_size_for` N and the mesh; 1 for a pass
        prepared `per_example`, which never chunks).
      params: parameters, replicated over the mesh (or on its first device for a batch-1 loop).
      tangent: the vector v of directional derivatives, placed like `params` (None if unused).
      key: the dropout key (a fixed unused key without dropout), placed like `params`.
    """

    kernels: Kernels
    mesh: Mesh
    data: Data
    n: int
    chunk_size: int
    params: Params
    tangent: Params | None
    key: jax.Array

    def chunks(self) -> Iterator[Chunk]:
        """The padded chunks of the dataset, split over the mesh."""
        return iter_chunks(self.data, self.chunk_size, self.mesh)

    def losses(self, chunk: Chunk) -> jax.Array:
        """[B] per-example losses of one chunk."""
        return self.kernels.losses(self.params, chunk.data, self.key, chunk.index_B)

    def grads(self, chunk: Chunk) -> Params:
        """Per-example gradients of one chunk, a pytree of [B, ...] arrays."""
        return self.kernels.grads(self.params, chunk.data, self.key, chunk.index_B)

    def grad_sum(self, chunk: Chunk) -> Params:
        """The gradient of one chunk's loss sum, padding weighted 0."""
        return self.kernels.grad_sum(
            self.params, chunk.data, chunk.weight_B, self.key, chunk.index_B
        )

    def jvp(self, chunk: Chunk) -> jax.Array:
        """[B] directional derivatives `<grad l_b, tangent>` of one chunk."""
        return self.kernels.jvp(self.params, chunk.data, self.tangent, self.key, chunk.index_B)

    def map_chunks(self, fn: Callable[[Chunk], jax.Array]) -> np.ndarray:
        """`fn` over every chunk; the [N] float64 results, padding dropped."""
        return collect([fn(c) for c in self.chunks()], self.n)

    def example_grads(self) -> Iterator[Params]:
        """The batch-1 gradient of every example in turn, on the mesh's first device."""
        device = self.mesh.devices.flat[0]
        for i in range(self.n):
            example = jax.device_put(example_at(self.data, i), device)
            yield self.kernels.example_grad(self.params, example, self.key, i)

    def map_example_grads(self, reduce: Callable[[Params], jax.Array]) -> np.ndarray:
        """`reduce` (gradient -> scalar) over every example's batch-1 gradient, float64 [N]."""
        return collect([reduce(g)[None] for g in self.example_grads()], self.n)


def prepare(
    loss_fn: LossFn,
    params: Params,
    data: Data,
    *,
    chunk_size: int,
    dropout_key: jax.Array | None,
    mesh: Mesh | None,
    tangent: Params | None = None,
    per_example: bool = False,
) -> Pass:
    """The set-up of one pass of `loss_fn` over `data` (see the module doc).

    `per_example` places everything on the first device for `Pass.example_grads` (a tangent that
    lives on the whole mesh is moved there too); otherwise it is replicated for the chunks.
    """
    mesh = resolve_mesh(mesh)
    kern = kernels(loss_fn, dropout_key is not None)
    n = num_examples(data)
    placed = (params, tangent, default_key(dropout_key))
    if per_example:
        placed = jax.device_put(placed, mesh.devices.flat[0])
    else:
        placed = mesh_lib.replicate(placed, mesh)
    return Pass(
        kernels=kern,
        mesh=mesh,
        data=data,
        n=n,
        # The batch-1 loop ignores chunk_size (and never validated it).
        chunk_size=1 if per_example else chunk_size_for(n, chunk_size, mesh),
        params=placed[0],
        tangent=placed[1],
        key=placed[2],
    )
