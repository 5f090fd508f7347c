"""Claim (b), attenuation: averaging the ranks of an informative score with an independent one
divides its correlation with the signal by sqrt(2) (Pearson on ranks; 7/10 for Spearman with the
hybrid re-ranked).

Simulated over N and checked against the closed forms; on our scores the observed correlation of
the hybrid with TracIn is set against sqrt((1 + r) / 2), r the Spearman rho of TracIn and
metadata. Shape letters: R independent simulated repeats, N examples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.stats

from experiments import stats
from experiments.claims.config import TheoryConfig

PEARSON_INDEPENDENT = math.sqrt(0.5)
# Spearman rho of (U1 + U2) / 2 with U1, U1 and U2 independent uniforms: 12 E[F_H(H) U1] - 3 with
# F_H the triangular CDF; the integral is 37/120 (1/20 below the diagonal u1 + u2 = 1, 31/120
# above), so rho = 37/10 - 3.
SPEARMAN_INDEPENDENT = 0.7
# research/paper_recipe.md §1.5-1.6: Spearman(TracIn, metadata) and the hybrid's rho with each.
PAPER_RHO = {"tracin_metadata": -0.014, "hybrid_tracin": 0.70, "hybrid_metadata": 0.69}
PAPER_N = 5148  # the paper's training set size


def rank_average_corr(r_xs: float, r_zs: float, r_xz: float) -> float:
    """Pearson correlation of the mean of two rank vectors (X, Z) with a third (S), from their
    pairwise Spearman rhos. Exact for tie-free ranks (all three have the same variance):
    cov = (r_xs + r_zs) / 2, var of the mean = (1 + r_xz) / 2. With S = X: sqrt((1 + r) / 2);
    with Z independent of X and S: r_xs / sqrt(2)."""
    return (r_xs + r_zs) / math.sqrt(2.0 * (1.0 + r_xz))


def expected_hybrid_corr(n: int) -> float:
    """E[Pearson(mean rank of (X, Z), rank of X)] for independent X, Z at n examples:
    E sqrt((1 + r) / 2) with r the null Spearman rho (mean 0, variance 1 / (n - 1), symmetric),
    to second order; the next term is O(n^-2)."""
    return PEARSON_INDEPENDENT * (1.0 - 1.0 / (8.0 * (n - 1)))


def ranks(x_RxN: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    return scipy.stats.rankdata(x_RxN, axis=-1, method="average")


def row_corr(a_RxN: np.ndarray, b_RxN: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `a` with the same row of `b`, [R]."""
    a = a_RxN - a_RxN.mean(-1, keepdims=True)
    b = b_RxN - b_RxN.mean(-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def simulate_attenuation(
    n: int, repeats: int, noise: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per repeat [R]: Gaussian signal S, informative score X = S + noise * eps, independent Z;
    the Spearman rho of X with S, and the hybrid H = mean rank of (X, Z) correlated with S as
    Pearson on ranks (`hybrid_pearson`) and as Spearman (H re-ranked, `hybrid_spearman`)."""
    s_RxN = rng.standard_normal((repeats, n))
    x_RxN = s_RxN + noise * rng.standard_normal((repeats, n))
    z_RxN = rng.standard_normal((repeats, n))
    rs, rx, rz = ranks(s_RxN), ranks(x_RxN), ranks(z_RxN)
    h_RxN = (rx + rz) / 2.0
    return {
        "informative": row_corr(rx, rs),
        "hybrid_pearson": row_corr(h_RxN, rs),
        "hybrid_spearman": row_corr(ranks(h_RxN), rs),
    }


def hybrid_spearman_at(r: float, n: int, repeats: int, rng: np.random.Generator) -> float:
    """Mean Spearman rho of the hybrid (mean rank) with X when Spearman(X, Z) = r: a Gaussian
    copula with Pearson 2 sin(pi r / 6), the bivariate-normal link between the two rhos."""
    rho = 2.0 * math.sin(math.pi * r / 6.0)
    x_RxN = rng.standard_normal((repeats, n))
    z_RxN = rho * x_RxN + math.sqrt(1.0 - rho * rho) * rng.standard_normal((repeats, n))
    rx = ranks(x_RxN)
    return float(row_corr(ranks((rx + ranks(z_RxN)) / 2.0), rx).mean())


# ----------------------------------------------------------------------------- the claim


def simulation_rows(cfg: TheoryConfig) -> list[dict[str, Any]]:
    """One row per (noise, N): the informative rho and the hybrid's ratios to it."""
    rows = []
    for noise in cfg.sim_noise:
        for n in cfg.sim_sizes:
            r = simulate_attenuation(n, cfg.sim_trials, noise, np.random.default_rng([cfg.seed, n]))
            info = r["informative"]
            rows.append(
                {
                    "noise": noise,
                    "n": n,
                    "informative": float(info.mean()),
                    "ratio_pearson": float(r["hybrid_pearson"].mean() / info.mean()),
                    "ratio_pearson_se": float(
                        r["hybrid_pearson"].std(ddof=1) / math.sqrt(len(info)) / info.mean()
                    ),
                    "ratio_spearman": float(r["hybrid_spearman"].mean() / info.mean()),
                    "expected_pearson_exact_signal": expected_hybrid_corr(n)
                    if noise == 0
                    else None,
                }
            )
    return rows


def on_scores(cfg: TheoryConfig, named: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The predictions from r = Spearman(TracIn, metadata) against the observed hybrid."""
    from valuation.scores import percentile_rank

    t, m, h = named["tracin"], named["metadata"], named["hybrid"]
    r_tm = stats.spearman(t, m)
    n = len(t)
    return {
        "n": n,
        "spearman_tracin_metadata": r_tm,
        "predicted_pearson": rank_average_corr(1.0, r_tm, r_tm),
        "pearson_hybrid_tracin_ranks": float(np.corrcoef(h, percentile_rank(t))[0, 1]),
        "pearson_hybrid_metadata_ranks": float(np.corrcoef(h, percentile_rank(m))[0, 1]),
        "predicted_spearman": hybrid_spearman_at(
            r_tm, n, cfg.sim_trials, np.random.default_rng([cfg.seed, 0xB])
        ),
        "spearman_hybrid_tracin": stats.spearman(h, t),
        "spearman_hybrid_metadata": stats.spearman(h, m),
    }


def attenuation(cfg: TheoryConfig, named: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Claim (b): the simulation over N and noise, the check on our scores and the paper's."""
    r_p = PAPER_RHO["tracin_metadata"]
    paper = {
        **PAPER_RHO,
        "predicted_pearson": rank_average_corr(1.0, r_p, r_p),
        "predicted_spearman": hybrid_spearman_at(
            r_p, PAPER_N, 20, np.random.default_rng([cfg.seed, 0xC])
        ),
    }
    return {"simulation": simulation_rows(cfg), "ours": on_scores(cfg, named), "paper": paper}
