"""Influence-function scores of the training set with a LiSSA inverse-HVP (Koh & Liang 2017).

    score_i = sign * <grad l_i, (H + damping I)^-1 gbar_val>

H is the Hessian of the mean training loss (or of `hvp_data`). With the default `sign=+1` the
orientation matches TracIn's (positive = upweighting z_i lowers the validation loss); Koh &
Liang's I_up,loss is the negation (`sign=-1`). The inverse-HVP s_val is computed once per LiSSA
repeat and every training score is then one JVP along it, as for TracIn. Scores per repeat are
kept so their agreement (mean pairwise Spearman) can be reported: the paper calls LiSSA noise at
its scale.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np
from jax.sharding import Mesh

from valuation import grads, lissa, scores
from valuation.grads import DEFAULT_CHUNK, Data, LossFn, Params


@dataclasses.dataclass(frozen=True)
class InfluenceResult:
    scores: np.ndarray  # [N] float64, mean over repeats
    per_repeat: np.ndarray  # [R, N] float64
    repeat_spearman: float  # mean pairwise Spearman rho between repeats (nan for one repeat)


def lissa_influence(
    loss_fn: LossFn,
    params: Params,
    train: Data,
    val: Data,
    *,
    damping: float,
    scale: float,
    depth: int,
    repeats: int = 1,
    batch_size: int | None = None,
    key: jax.Array | None = None,
    hvp_data: Data | None = None,
    sign: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
    mesh: Mesh | None = None,
) -> InfluenceResult:
    """LiSSA influence scores of `train` against the mean validation gradient (eval mode)."""
    g_val = grads.mean_grad(loss_fn, params, val, chunk_size=chunk_size, mesh=mesh)
    runs = lissa.lissa_runs(
        loss_fn,
        params,
        train if hvp_data is None else hvp_data,
        g_val,
        damping=damping,
        scale=scale,
        depth=depth,
        repeats=repeats,
        batch_size=batch_size,
        key=key if key is not None else jax.random.key(0),
    )
    per_repeat = np.stack(
        [
            float(sign)
            * grads.grad_dots(
                loss_fn, params, train, r.estimate, mode="jvp", chunk_size=chunk_size, mesh=mesh
            )
            for r in runs
        ]
    )
    rhos = [
        scores.spearman(per_repeat[a], per_repeat[b])
        for a, b in itertools.combinations(range(len(runs)), 2)
    ]
    return InfluenceResult(
        per_repeat.mean(0), per_repeat, float(np.mean(rhos)) if rhos else float("nan")
    )
