"""TRAK (Park et al. 2023), regression form, over an ensemble of reference models.

For each model theta_m (parameters of reference runs trained with different seeds):

    Phi    = [R^T g_1 .. R^T g_N]^T      [N, F] projected per-example training gradients
    phi_j  = R^T g_j                      [F]   projected gradient of validation target j
    tau_m(i, j) = phi_j^T (Phi^T Phi + lambda I)^-1 phi_i

and the score is the mean of tau_m over the M models (the ensemble; TRAK's gain from 1 to 10
models is large). Shape letters: N training examples, J validation targets, F the projected
dimension `dim`.

Choices, where the notes (`research/attribution.md`) leave one open:
- Gradients are of the per-example LOSS `loss_fn` (the loss-based variant), not of a model
  output, and the per-example weight Q_ii is 1: our loss is a smooth regression (imitation) loss
  with no class probability 1 - p_i to weight by. So with lambda = 0 and an invertible R the
  score is the gradient-kernel formula g_j^T (G^T G)^-1 g_i, G the [N, P] gradient matrix.
- Model m is projected with `fold_in(key, m)`: independent sketches per model, so the ensemble
  average also averages out projection error.
- Sign as in TracIn and `valuation.pairs`: positive means training on z_i helps target j.
- The F x F system is solved on the host in float64 by Cholesky (F is small: 256..8192), which
  fails loudly if Phi^T Phi + lambda I is not positive definite.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import scipy.linalg
from jax.sharding import Mesh

from valuation import projection
from valuation.grads import DEFAULT_CHUNK, Data, LossFn, Params
from valuation.trees import num_examples

RELATIVE_DAMPING = 1e-3  # default lambda, as a fraction of the mean eigenvalue of Phi^T Phi


def kernel_scores(
    phi_NxF: np.ndarray, phi_JxF: np.ndarray, damping: float | None = None
) -> np.ndarray:
    """[N, J] float64 `phi_j^T (Phi^T Phi + lambda I)^-1 phi_i` for one model's features.

    `damping` is lambda itself; None takes RELATIVE_DAMPING times trace(Phi^T Phi) / F, which
    follows the features' scale (gradients of different models differ by orders of magnitude).
    """
    phi_NxF = np.asarray(phi_NxF, np.float64)
    phi_JxF = np.asarray(phi_JxF, np.float64)
    if phi_NxF.ndim != 2 or phi_JxF.ndim != 2 or phi_NxF.shape[1] != phi_JxF.shape[1]:
        raise ValueError(f"features disagree: train {phi_NxF.shape}, val {phi_JxF.shape}")
    gram_FxF = phi_NxF.T @ phi_NxF
    f = gram_FxF.shape[0]
    lam = RELATIVE_DAMPING * np.trace(gram_FxF) / f if damping is None else float(damping)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"damping must be finite and >= 0, got {lam}")
    try:
        factor = scipy.linalg.cho_factor(gram_FxF + lam * np.eye(f), lower=True)
    except np.linalg.LinAlgError as err:
        raise np.linalg.LinAlgError(
            f"Phi^T Phi + {lam:g} I is not positive definite (N={len(phi_NxF)}, F={f}): "
            "raise the damping or lower dim"
        ) from err
    solved_FxJ = scipy.linalg.cho_solve(factor, phi_JxF.T)
    return phi_NxF @ solved_FxJ


def trak_scores(
    loss_fn: LossFn,
    models: Sequence[Params],
    train: Data,
    val: Data,
    *,
    dim: int,
    key: jax.Array,
    damping: float | None = None,
    kind: str = "gaussian",
    chunk_size: int = DEFAULT_CHUNK,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """TRAK scores of every training example for every validation target, float64 [N, J].

    Args:
      loss_fn: `loss_fn(params, example) -> scalar` for ONE example (no batch axis).
      models: parameters of the reference models (one per seed); the scores are their mean.
      train, val: pytrees with leading axes N and J.
      dim: projected dimension F (TRAK uses 2048..20480 for millions of parameters).
      key: projection key; model m uses `fold_in(key, m)` for both of its sets.
      damping: lambda (None: RELATIVE_DAMPING times the mean eigenvalue, per model).
      kind: projection kind, `gaussian` or `orthogonal` (dim = parameter count; for tests).
      chunk_size: examples per jitted call (rounded to the device count); bounds memory.
      mesh: devices to split chunks over (default: every device).
    """
    if not models:
        raise ValueError("TRAK needs at least one model")
    total_NxJ = np.zeros((num_examples(train), num_examples(val)), np.float64)
    for m, params in enumerate(models):
        options = {
            "dim": dim,
            "key": jax.random.fold_in(key, m),
            "kind": kind,
            "chunk_size": chunk_size,
            "mesh": mesh,
        }
        phi_NxF = projection.project_gradients(loss_fn, params, train, **options)
        phi_JxF = projection.project_gradients(loss_fn, params, val, **options)
        total_NxJ += kernel_scores(phi_NxF, phi_JxF, damping)
    return total_NxJ / len(models)
