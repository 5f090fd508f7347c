"""Claim (c), hard selection vs soft weighting, as properties of the sampling distributions.

Per epoch: KL divergence from uniform, effective sample size 1 / sum p^2, support, the share of
the soft curriculum's mass that hard top-20 % selection drops (KL(soft || hard) is infinite),
and the mass each puts on the injected corrupted examples.
"""

from __future__ import annotations

import math

import numpy as np

from curriculum import sampler, schedule
from experiments.claims.config import TheoryConfig
from gf_jax.config import Preset


def kl_divergence(p_N: np.ndarray, q_N: np.ndarray) -> float:
    """KL(p || q) in nats; infinite when p puts mass where q has none."""
    p = np.asarray(p_N, np.float64)
    q = np.asarray(q_N, np.float64)
    on = p > 0
    if np.any(q[on] <= 0):
        return math.inf
    return float(np.sum(p[on] * np.log(p[on] / q[on])))


def effective_sample_size(p_N: np.ndarray) -> float:
    """1 / sum p^2: N for uniform, the support size for uniform-on-a-subset."""
    p = np.asarray(p_N, np.float64)
    return float(1.0 / np.sum(p * p))


def subset_distribution(kept: np.ndarray, n: int) -> np.ndarray:
    """Uniform over the kept indices, zero elsewhere (hard selection)."""
    p = np.zeros(n)
    p[np.asarray(kept)] = 1.0 / len(kept)
    return p


def distribution_summary(
    p_N: np.ndarray, *, hard_N: np.ndarray | None = None, corrupted_N: np.ndarray | None = None
) -> dict[str, float]:
    """KL from uniform, ESS (absolute and / N), support share, max p x N; against a hard
    selection `hard_N`: the share of p's mass it drops and KL(hard || p); the mass on corrupted."""
    p = np.asarray(p_N, np.float64)
    n = len(p)
    out = {
        "kl_uniform": kl_divergence(p, np.full(n, 1.0 / n)),
        "ess": effective_sample_size(p),
        "ess_frac": effective_sample_size(p) / n,
        "support_frac": float(np.mean(p > 0)),
        "max_ratio": float(p.max() * n),
    }
    if hard_N is not None:
        out["mass_dropped_by_hard"] = float(p[np.asarray(hard_N) <= 0].sum())
        out["kl_hard_to_this"] = kl_divergence(hard_N, p)
    if corrupted_N is not None:
        out["corrupted_mass"] = float(p[np.asarray(corrupted_N, bool)].sum())
    return out


def hard_vs_soft(
    cfg: TheoryConfig, preset: Preset, tracin_N: np.ndarray, corrupted_N: np.ndarray
) -> list[dict]:
    """Claim (c): per epoch and curriculum mode, the distribution summaries; uniform and hard
    selection (the same every epoch) as epoch -1 rows."""
    n = len(tracin_N)
    hard = subset_distribution(sampler.select(tracin_N, cfg.select, "top"), n)
    rows = [
        {
            "epoch": -1,
            "curriculum": name,
            "phase": "all",
            **distribution_summary(p, hard_N=hard, corrupted_N=corrupted_N),
        }
        for name, p in (
            ("uniform", np.full(n, 1.0 / n)),
            (f"top {100 * cfg.select:g} % (hard)", hard),
        )
    ]
    for mode in schedule.MODES:
        sc = schedule.ScheduleConfig(mode=mode, epochs=preset.train.epochs).validate()
        for e in range(sc.epochs):
            p = schedule.probabilities(sc, tracin_N, e)
            rows.append(
                {
                    "epoch": e,
                    "curriculum": f"tracin {mode}",
                    "phase": schedule.phase(sc, e),
                    **distribution_summary(p, hard_N=hard, corrupted_N=corrupted_N),
                }
            )
    return rows
