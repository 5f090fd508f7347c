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
from valuation.lissa import LissaOptions


@dataclasses.dataclass(frozen=True)
class InfluenceResult:
    """LiSSA influence scores of a training set, per repeat and averaged.

    Attributes:
      scores: [N] float64, the mean over repeats.
      per_repeat: [R, N] float64, one row per LiSSA repeat.
      repeat_spearman: mean pairwise Spearman rho between repeats (nan for one repeat).
    """

    scores: np.ndarray
    per_repeat: np.ndarray
    repeat_spearman: float


def lissa_influence(
    loss_fn: LossFn,
    params: Params,
    train: Data,
    val: Data,
    *,
    options: LissaOptions,
    key: jax.Array | None = None,
    hvp_data: Data | None = None,
    sign: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
    mesh: Mesh | None = None,
) -> InfluenceResult:
    """LiSSA influence scores of `train` against the mean validation gradient (eval mode).

    `options` sets the inverse-HVP (one estimate per repeat); H is taken over `hvp_data`, or
    `train` when it is None.
    """
    g_val = grads.mean_grad(loss_fn, params, val, chunk_size=chunk_size, mesh=mesh)
    runs = lissa.lissa_runs(
        loss_fn,
        params,
        train if hvp_data is None else hvp_data,
        g_val,
        options,
        key=key if key is not None else jax.random.key(0),
    )
    scores_RxN = np.stack(
        [
            float(sign)
            * grads.grad_dots(
                loss_fn, params, train, r.estimate, mode="jvp", chunk_size=chunk_size, mesh=mesh
            )
            for r in runs
        ]
    )
    rhos = [
        scores.spearman(scores_RxN[a], scores_RxN[b])
        for a, b in itertools.combinations(range(len(runs)), 2)
    ]
    return InfluenceResult(
        scores_RxN.mean(0), scores_RxN, float(np.mean(rhos)) if rhos else float("nan")
    )
