"""Claim (a), alignment: TracIn-weighted sampling should give mini-batch gradients closer in
direction to the validation gradient g_val than uniform sampling.

At chosen reference checkpoints we draw mini-batches (with replacement, as training does) under
uniform sampling, the focus-phase TracIn curricula (paper and code mode, last epoch) and hard
top-20 % selection, and report mean ± SD of cos(sum_{i in B} g_i, g_val) and the difference to
uniform. Exact, no projection: per checkpoint every training example's gradient is computed
once, keeping the dot products d_i = <g_i, g_val> and the Gram matrix G_ij = <g_i, g_j>, so that
any batch (a multiset of indices) has <S_B, g_val> = sum_B d_i and ||S_B||^2 = sum_{B x B} G_ij.
The infinite-batch limit cos(sum_i p_i g_i, g_val) of each distribution p comes from the same
numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from curriculum import sampler, schedule
from experiments import stats
from experiments.claims.config import TheoryConfig
from experiments.claims.selection import subset_distribution
from gf_jax.config import Preset

# ----------------------------------------------------------------------------- batch cosines


def draw_batches(
    p_N: np.ndarray, n_batches: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """[R, B] example indices (R = n_batches random draws, B = batch_size) drawn with replacement
    from p, as training draws them."""
    p = np.asarray(p_N, np.float64)
    return rng.choice(len(p), size=(n_batches, batch_size), p=p / p.sum())


def batch_cosines(
    idx_RxB: np.ndarray, dots_N: np.ndarray, gram_NxN: np.ndarray, val_sq_norm: float
) -> np.ndarray:
    """cos(sum_b g_{idx[r, b]}, g_val) of every batch r, float64 [R].

    `dots_N[i] = <g_i, g_val>`, `gram_NxN[i, j] = <g_i, g_j>`, `val_sq_norm = ||g_val||^2`; a
    repeated index counts as often as it was drawn, as the batch gradient does.
    """
    idx = np.asarray(idx_RxB)
    d_N = np.asarray(dots_N, np.float64)
    g_NxN = np.asarray(gram_NxN, np.float64)
    num_R = d_N[idx].sum(axis=1)
    sq_R = g_NxN[idx[:, :, None], idx[:, None, :]].sum(axis=(1, 2))
    return num_R / np.sqrt(np.maximum(sq_R, 0.0) * float(val_sq_norm))


def population_cosine(
    p_N: np.ndarray, dots_N: np.ndarray, gram_NxN: np.ndarray, val_sq_norm: float
) -> float:
    """cos(sum_i p_i g_i, g_val): the direction a batch under p converges to as it grows."""
    p = np.asarray(p_N, np.float64)
    g = np.asarray(gram_NxN, np.float64)
    return float(p @ np.asarray(dots_N) / math.sqrt(max(p @ g @ p, 0.0) * float(val_sq_norm)))


# ----------------------------------------------------------------------------- gradients


@functools.cache
def gram_block() -> Any:
    """A jitted <a_i, b_j> block of two chunks of per-example gradient pytrees [B, B]."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def block(a_B: Any, b_B: Any) -> jax.Array:
        parts = jax.tree.map(
            lambda x, y: x.reshape(x.shape[0], -1) @ y.reshape(y.shape[0], -1).T, a_B, b_B
        )
        return functools.reduce(jnp.add, jax.tree.leaves(parts))

    return block


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Inner products of the per-example training gradients and the validation gradient."""

    dots_N: np.ndarray  # <g_i, g_val>
    gram_NxN: np.ndarray  # <g_i, g_j>
    val_sq_norm: float  # ||g_val||^2


def assemble_gram(host_rows: list[list[np.ndarray]], chunk: int) -> np.ndarray:
    """The full symmetric Gram matrix from its lower-triangle blocks (row a: blocks 0..a)."""
    m = len(host_rows) * chunk
    gram = np.zeros((m, m))
    for a, row in enumerate(host_rows):
        for b, blk in enumerate(row):
            gram[a * chunk : (a + 1) * chunk, b * chunk : (b + 1) * chunk] = blk
            gram[b * chunk : (b + 1) * chunk, a * chunk : (a + 1) * chunk] = np.asarray(blk).T
    return gram


def gradient_geometry(
    loss_fn: Any, params: Any, train: Any, val: Any, *, chunk_size: int = 32
) -> Geometry:
    """Exact `Geometry` at `params`: every per-example gradient once (vmap of grad, chunk by
    chunk, kept on the device: N x F floats), g_val as the exact mean validation gradient."""
    import jax

    from gf_jax import mesh as mesh_lib
    from valuation import grads

    mesh = grads.resolve_mesh(None)
    n = grads.num_examples(train)
    chunk = grads.chunk_size_for(max(n, grads.num_examples(val)), chunk_size, mesh)
    g_val = grads.mean_grad(loss_fn, params, val, chunk_size=chunk, mesh=mesh)
    kern = grads.kernels(loss_fn, False)
    block = gram_block()
    # Without dropout the kernels never read the key.
    params_r, key, v = mesh_lib.replicate((params, jax.random.key(0), g_val), mesh)
    kept, dots, rows = [], [], []
    for c in grads.iter_chunks(train, chunk, mesh):
        g = kern.grads(params_r, c.data, key, c.index_B)
        dots.append(grads.dots_with(g, v))
        rows.append([block(g, h) for h in kept] + [block(g, g)])
        kept.append(g)
    gram = assemble_gram(jax.device_get(rows), chunk)
    dots_N = np.concatenate([np.asarray(d) for d in jax.device_get(dots)])[:n]
    return Geometry(dots_N.astype(np.float64), gram[:n, :n], float(grads.tree_dot(g_val, g_val)))


def n_params(params: Any) -> int:
    import jax

    return sum(int(np.size(x)) for x in jax.tree.leaves(params))


# ----------------------------------------------------------------------------- the claim


def samplings(tracin_N: np.ndarray, epochs: int, fraction: float) -> dict[str, np.ndarray]:
    """The training distributions compared: uniform, the focus phase (last epoch) of both TracIn
    curricula, and hard top-`fraction` selection."""
    n = len(tracin_N)
    out = {"uniform": np.full(n, 1.0 / n)}
    for mode in schedule.MODES:
        cfg = schedule.ScheduleConfig(mode=mode, epochs=epochs).validate()
        out[f"tracin {mode} (focus)"] = schedule.probabilities(cfg, tracin_N, epochs - 1)
    kept = sampler.select(tracin_N, fraction, "top")
    out[f"top {100 * fraction:g} % (hard)"] = subset_distribution(kept, n)
    return out


def measured_subset(cfg: TheoryConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """The training examples measured (all, or `max_examples` at random); raises MemoryError
    when their per-example gradients would exceed `max_gram_gb`."""
    from valuation import gameformer

    subset = np.arange(n)
    if cfg.max_examples is not None and cfg.max_examples < n:
        subset = np.sort(rng.choice(n, cfg.max_examples, replace=False))
    count = n_params(gameformer.checkpoint_store(cfg.reference).params(cfg.epochs[-1]))
    need_gb = len(subset) * count * 4 / 2**30
    if need_gb > cfg.max_gram_gb:
        raise MemoryError(
            f"per-example gradients of {len(subset)} examples x {count} parameters need "
            f"{need_gb:.1f} GB (> --max-gram-gb {cfg.max_gram_gb}); pass --max-examples"
        )
    return subset


def checkpoint_rows(
    epoch: int,
    geo: Geometry,
    batches: Mapping[str, np.ndarray],
    dists: Mapping[str, np.ndarray],
    tracin_N: np.ndarray,
) -> list[dict[str, Any]]:
    """One row per sampling at one checkpoint: cosines, difference to uniform, the limits."""
    cos = {
        k: batch_cosines(b, geo.dots_N, geo.gram_NxN, geo.val_sq_norm) for k, b in batches.items()
    }
    base = cos["uniform"]
    single_N = geo.dots_N / np.sqrt(np.diag(geo.gram_NxN) * geo.val_sq_norm)
    rho = stats.spearman(tracin_N, geo.dots_N)
    rows = []
    for name, c in cos.items():
        p = dists[name] / dists[name].sum()
        rows.append(
            {
                "epoch": epoch,
                "sampling": name,
                "mean": float(c.mean()),
                "sd": float(c.std(ddof=0)),
                "diff_vs_uniform": float(c.mean() - base.mean()),
                "diff_se": math.sqrt(c.var(ddof=1) / len(c) + base.var(ddof=1) / len(base)),
                "population": population_cosine(p, geo.dots_N, geo.gram_NxN, geo.val_sq_norm),
                "single_mean": float(p @ single_N),
                "spearman_tracin_dots": rho,
            }
        )
    return rows


def alignment(cfg: TheoryConfig, preset: Preset, inputs: Mapping[str, Any]) -> list[dict]:
    """Claim (a): per checkpoint and sampling, batch cosines with g_val (see module doc)."""
    from valuation import gameformer

    train, val = (gameformer.examples(inputs["splits"][s], preset.model) for s in ("train", "val"))
    tracin_N = inputs["scores"]["tracin"]
    subset = measured_subset(cfg, len(inputs["corrupted"]), np.random.default_rng([cfg.seed, 0xA1]))
    train = {k: np.asarray(v)[subset] for k, v in train.items()}
    # Distributions restricted to the measured examples (renormalised inside draw_batches).
    dists = {k: p[subset] for k, p in samplings(tracin_N, preset.train.epochs, cfg.select).items()}
    batches = {
        name: draw_batches(p, cfg.n_batches, cfg.batch_size, np.random.default_rng([cfg.seed, j]))
        for j, (name, p) in enumerate(dists.items())
    }
    store = gameformer.checkpoint_store(cfg.reference)
    loss = gameformer.loss_fn(preset.model)
    rows = []
    for epoch in cfg.epochs:
        t0 = time.perf_counter()
        geo = gradient_geometry(loss, store.params(epoch), train, val, chunk_size=cfg.chunk_size)
        rows += checkpoint_rows(epoch, geo, batches, dists, tracin_N[subset])
        print(f"theory: (a) epoch {epoch} in {time.perf_counter() - t0:.1f} s")
    return rows
