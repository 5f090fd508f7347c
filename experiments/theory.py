"""The paper's three theoretical claims, measured on the trained models of a workdir.

    python experiments/theory.py [--workdir runs] [--out WORKDIR/report/theory]
                                 [--n-batches 64] [--batch-size 16] [--seed 0]

(a) Alignment. TracIn-weighted sampling should give mini-batch gradients closer in direction to
    the validation gradient g_val than uniform sampling. At chosen reference checkpoints we draw
    mini-batches (with replacement, as training does) under uniform sampling, the focus-phase
    TracIn curricula (paper and code mode, last epoch) and hard top-20 % selection, and report
    mean ± SD of cos(sum_{i in B} g_i, g_val) and the difference to uniform. Exact, no projection:
    per checkpoint we compute every training example's gradient once, keep the dot products
    d_i = <g_i, g_val> and the Gram matrix G_ij = <g_i, g_j>, so that any batch (a multiset of
    indices) has <S_B, g_val> = sum_B d_i and ||S_B||^2 = sum_{B x B} G_ij. The infinite-batch
    limit cos(sum_i p_i g_i, g_val) of each distribution p comes from the same numbers.
(b) Attenuation. Averaging the ranks of an informative score with an independent one divides its
    correlation with the signal by sqrt(2) (Pearson on ranks; 7/10 for Spearman with the hybrid
    re-ranked). Simulated over N and checked against the closed forms; on our scores the
    observed correlation of the hybrid with TracIn is set against sqrt((1 + r) / 2), r the
    Spearman rho of TracIn and metadata.
(c) Hard selection vs soft weighting. Per epoch: KL divergence from uniform, effective sample
    size 1 / sum p^2, support, the share of the soft curriculum's mass that hard top-20 %
    selection drops (KL(soft || hard) is infinite), and the mass each puts on the injected
    corrupted examples.

Writes OUT/theory.json (with the resolved config), OUT/THEORY.md and PNG figures, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import scipy.stats
from matplotlib.ticker import MaxNLocator

from curriculum import sampler, schedule
from experiments import figures, stats
from experiments import report as report_lib
from gf_jax import atomic
from gf_jax.config import Preset, to_dict

PEARSON_INDEPENDENT = math.sqrt(0.5)
# Spearman rho of (U1 + U2) / 2 with U1, U1 and U2 independent uniforms: 12 E[F_H(H) U1] - 3 with
# F_H the triangular CDF; the integral is 37/120 (1/20 below the diagonal u1 + u2 = 1, 31/120
# above), so rho = 37/10 - 3.
SPEARMAN_INDEPENDENT = 0.7
# research/paper_recipe.md §1.5-1.6: Spearman(TracIn, metadata) and the hybrid's rho with each.
PAPER_RHO = {"tracin_metadata": -0.014, "hybrid_tracin": 0.70, "hybrid_metadata": 0.69}


@dataclasses.dataclass(frozen=True)
class TheoryConfig:
    """Everything a measurement depends on (saved in theory.json)."""

    workdir: str
    out: str
    reference: str
    epochs: tuple[int, ...]  # 0-based reference checkpoints measured in (a)
    n_batches: int = 64
    batch_size: int = 16
    seed: int = 0
    select: float = 0.2
    chunk_size: int = 32
    max_examples: int | None = None
    max_gram_gb: float = 4.0
    sim_sizes: tuple[int, ...] = (50, 200, 1000, 5000)
    sim_trials: int = 200
    sim_noise: tuple[float, ...] = (0.0, 1.0)


# ----------------------------------------------------------------------------- (a) cosines


def draw_batches(
    p_N: np.ndarray, n_batches: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """[n_batches, batch_size] example indices drawn with replacement from p (as training)."""
    p = np.asarray(p_N, np.float64)
    return rng.choice(len(p), size=(n_batches, batch_size), p=p / p.sum())


def batch_cosines(
    idx_BxS: np.ndarray, dots_N: np.ndarray, gram_NxN: np.ndarray, val_sq_norm: float
) -> np.ndarray:
    """cos(sum_{s} g_{idx[b, s]}, g_val) of every batch b, float64 [B].

    `dots_N[i] = <g_i, g_val>`, `gram_NxN[i, j] = <g_i, g_j>`, `val_sq_norm = ||g_val||^2`; a
    repeated index counts as often as it was drawn, as the batch gradient does.
    """
    idx = np.asarray(idx_BxS)
    d = np.asarray(dots_N, np.float64)
    g = np.asarray(gram_NxN, np.float64)
    num_B = d[idx].sum(axis=1)
    sq_B = g[idx[:, :, None], idx[:, None, :]].sum(axis=(1, 2))
    return num_B / np.sqrt(np.maximum(sq_B, 0.0) * float(val_sq_norm))


def population_cosine(
    p_N: np.ndarray, dots_N: np.ndarray, gram_NxN: np.ndarray, val_sq_norm: float
) -> float:
    """cos(sum_i p_i g_i, g_val): the direction a batch under p converges to as it grows."""
    p = np.asarray(p_N, np.float64)
    g = np.asarray(gram_NxN, np.float64)
    return float(p @ np.asarray(dots_N) / math.sqrt(max(p @ g @ p, 0.0) * float(val_sq_norm)))


# ----------------------------------------------------------------------------- (b) attenuation


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


def _ranks(x_TxN: np.ndarray) -> np.ndarray:
    return scipy.stats.rankdata(x_TxN, axis=-1, method="average")


def _row_corr(a_TxN: np.ndarray, b_TxN: np.ndarray) -> np.ndarray:
    a = a_TxN - a_TxN.mean(-1, keepdims=True)
    b = b_TxN - b_TxN.mean(-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def simulate_attenuation(
    n: int, trials: int, noise: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per trial [T]: Gaussian signal S, informative score X = S + noise * eps, independent Z;
    the Spearman rho of X with S, and the hybrid H = mean rank of (X, Z) correlated with S as
    Pearson on ranks (`hybrid_pearson`) and as Spearman (H re-ranked, `hybrid_spearman`)."""
    s_TxN = rng.standard_normal((trials, n))
    x_TxN = s_TxN + noise * rng.standard_normal((trials, n))
    z_TxN = rng.standard_normal((trials, n))
    rs, rx, rz = _ranks(s_TxN), _ranks(x_TxN), _ranks(z_TxN)
    h_TxN = (rx + rz) / 2.0
    return {
        "informative": _row_corr(rx, rs),
        "hybrid_pearson": _row_corr(h_TxN, rs),
        "hybrid_spearman": _row_corr(_ranks(h_TxN), rs),
    }


def hybrid_spearman_at(r: float, n: int, trials: int, rng: np.random.Generator) -> float:
    """Mean Spearman rho of the hybrid (mean rank) with X when Spearman(X, Z) = r: a Gaussian
    copula with Pearson 2 sin(pi r / 6), the bivariate-normal link between the two rhos."""
    rho = 2.0 * math.sin(math.pi * r / 6.0)
    x_TxN = rng.standard_normal((trials, n))
    z_TxN = rho * x_TxN + math.sqrt(1.0 - rho * rho) * rng.standard_normal((trials, n))
    rx = _ranks(x_TxN)
    return float(_row_corr(_ranks((rx + _ranks(z_TxN)) / 2.0), rx).mean())


# ----------------------------------------------------------------------------- (c) distributions


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


# ----------------------------------------------------------------------------- gradients


@functools.cache
def _gram_block() -> Any:
    import functools as ft

    import jax
    import jax.numpy as jnp

    @jax.jit
    def block(a_C: Any, b_C: Any) -> jax.Array:
        parts = jax.tree.map(
            lambda x, y: x.reshape(x.shape[0], -1) @ y.reshape(y.shape[0], -1).T, a_C, b_C
        )
        return ft.reduce(jnp.add, jax.tree.leaves(parts))

    return block


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Inner products of the per-example training gradients and the validation gradient."""

    dots_N: np.ndarray  # <g_i, g_val>
    gram_NxN: np.ndarray  # <g_i, g_j>
    val_sq_norm: float  # ||g_val||^2


def gradient_geometry(
    loss_fn: Any, params: Any, train: Any, val: Any, *, chunk_size: int = 32
) -> Geometry:
    """Exact `Geometry` at `params`: every per-example gradient once (vmap of grad, chunk by
    chunk, kept on the device: N x P floats), g_val as the exact mean validation gradient."""
    import jax

    from gf_jax import mesh as mesh_lib
    from valuation import grads

    mesh = grads.resolve_mesh(None)
    n = grads.num_examples(train)
    chunk = grads.chunk_size_for(max(n, grads.num_examples(val)), chunk_size, mesh)
    g_val = grads.mean_grad(loss_fn, params, val, chunk_size=chunk, mesh=mesh)
    kern = grads.kernels(loss_fn, False)
    block = _gram_block()
    # Without dropout the kernels never read the key.
    params_r, key, v = mesh_lib.replicate((params, jax.random.key(0), g_val), mesh)
    kept, dots, rows = [], [], []
    for c in grads.iter_chunks(train, chunk, mesh):
        g = kern.grads(params_r, c.data, key, c.index_C)
        dots.append(grads.dots_with(g, v))
        rows.append([block(g, h) for h in kept] + [block(g, g)])
        kept.append(g)
    host_rows = jax.device_get(rows)
    m = len(host_rows) * chunk
    gram = np.zeros((m, m))
    for a, row in enumerate(host_rows):
        for b, blk in enumerate(row):
            gram[a * chunk : (a + 1) * chunk, b * chunk : (b + 1) * chunk] = blk
            gram[b * chunk : (b + 1) * chunk, a * chunk : (a + 1) * chunk] = np.asarray(blk).T
    dots_N = np.concatenate([np.asarray(d) for d in jax.device_get(dots)])[:n]
    return Geometry(
        dots_N.astype(np.float64),
        gram[:n, :n],
        float(grads.tree_dot(g_val, g_val)),
    )


# ----------------------------------------------------------------------------- workdir


def find_reference(workdir: Path) -> Path:
    """The reference run of a workdir: `reference/seed0`, else the only `reference*/seed0` (a
    variant such as `reference-e2`); raises if there is none or the choice is ambiguous."""
    default = workdir / "reference" / "seed0"
    if (default / "config.json").exists():
        return default
    found = sorted(p.parent for p in workdir.glob("reference*/seed0/config.json"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{workdir}: {'no' if not found else 'several'} reference runs "
            f"({', '.join(str(p) for p in found) or 'train one with experiments/run.py'}); "
            "pass --reference"
        )
    return found[0]


def reference_preset(reference: Path) -> Preset:
    return report_lib.run_preset(reference)


def auto_epochs(available: Sequence[int], count: int = 4) -> tuple[int, ...]:
    """About `count` evenly spaced checkpoints plus the final one."""
    avail = sorted(available)
    step = max(1, math.ceil(len(avail) / count))
    return tuple(sorted(set(avail[::step]) | {avail[-1]}))


def load_inputs(workdir: Path, reference: Path, preset: Preset) -> dict[str, Any]:
    """Splits, TracIn / metadata / hybrid scores (from the workdir's score file, computed here
    when it is missing) and the corrupted flags."""
    from gf_jax.data import store
    from valuation import gameformer

    splits = {s: store.load_split(preset.data, s, root=workdir / "data") for s in ("train", "val")}
    named, source = report_lib.load_scores(workdir, preset)
    note = f"scores from {source.get('tracin')}"
    if not all(k in named for k in ("tracin", "metadata", "hybrid")):
        named, _ = gameformer.compute_scores(
            preset,
            splits["train"],
            splits["val"],
            reference,
            which=("tracin", "metadata", "hybrid"),
        )
        note = "scores computed here (no score file in the workdir)"
    return {
        "splits": splits,
        "scores": {k: np.asarray(named[k], np.float64) for k in ("tracin", "metadata", "hybrid")},
        "corrupted": np.asarray(splits["train"].meta["corrupted"], bool),
        "note": note,
    }


# ----------------------------------------------------------------------------- the claims


def samplings(tracin_N: np.ndarray, epochs: int, fraction: float) -> dict[str, np.ndarray]:
    """The training distributions compared in (a): uniform, the focus phase (last epoch) of both
    TracIn curricula, and hard top-`fraction` selection."""
    n = len(tracin_N)
    out = {"uniform": np.full(n, 1.0 / n)}
    for mode in schedule.MODES:
        cfg = schedule.ScheduleConfig(mode=mode, epochs=epochs).validate()
        out[f"tracin {mode} (focus)"] = schedule.probabilities(cfg, tracin_N, epochs - 1)
    kept = sampler.select(tracin_N, fraction, "top")
    out[f"top {100 * fraction:g} % (hard)"] = subset_distribution(kept, n)
    return out


def alignment(cfg: TheoryConfig, preset: Preset, inputs: Mapping[str, Any]) -> list[dict]:
    """Claim (a): per checkpoint and sampling, batch cosines with g_val (see module doc)."""
    from valuation import gameformer

    train, val = (gameformer.examples(inputs["splits"][s], preset.model) for s in ("train", "val"))
    n = len(inputs["corrupted"])
    rng = np.random.default_rng([cfg.seed, 0xA1])
    subset = np.arange(n)
    if cfg.max_examples is not None and cfg.max_examples < n:
        subset = np.sort(rng.choice(n, cfg.max_examples, replace=False))
    n_params = _n_params(gameformer.checkpoint_store(cfg.reference).params(cfg.epochs[-1]))
    need_gb = len(subset) * n_params * 4 / 2**30
    if need_gb > cfg.max_gram_gb:
        raise MemoryError(
            f"per-example gradients of {len(subset)} examples x {n_params} parameters need "
            f"{need_gb:.1f} GB (> --max-gram-gb {cfg.max_gram_gb}); pass --max-examples"
        )
    train = {k: np.asarray(v)[subset] for k, v in train.items()}
    # Distributions restricted to the measured examples (renormalised inside draw_batches).
    dists = {
        k: p[subset]
        for k, p in samplings(inputs["scores"]["tracin"], preset.train.epochs, cfg.select).items()
    }
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
        cos = {
            k: batch_cosines(b, geo.dots_N, geo.gram_NxN, geo.val_sq_norm)
            for k, b in batches.items()
        }
        base = cos["uniform"]
        for name, c in cos.items():
            diff = float(c.mean() - base.mean())
            se = math.sqrt(c.var(ddof=1) / len(c) + base.var(ddof=1) / len(base))
            p = dists[name] / dists[name].sum()
            rows.append(
                {
                    "epoch": epoch,
                    "sampling": name,
                    "mean": float(c.mean()),
                    "sd": float(c.std(ddof=0)),
                    "diff_vs_uniform": diff,
                    "diff_se": se,
                    "population": population_cosine(p, geo.dots_N, geo.gram_NxN, geo.val_sq_norm),
                    "single_mean": float(
                        p @ (geo.dots_N / np.sqrt(np.diag(geo.gram_NxN) * geo.val_sq_norm))
                    ),
                    "spearman_tracin_dots": stats.spearman(
                        inputs["scores"]["tracin"][subset], geo.dots_N
                    ),
                }
            )
        print(f"theory: (a) epoch {epoch} in {time.perf_counter() - t0:.1f} s")
    return rows


def _n_params(params: Any) -> int:
    import jax

    return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def attenuation(cfg: TheoryConfig, named: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Claim (b): the simulation over N and noise, and the check on our scores."""
    sim = []
    for noise in cfg.sim_noise:
        for n in cfg.sim_sizes:
            r = simulate_attenuation(n, cfg.sim_trials, noise, np.random.default_rng([cfg.seed, n]))
            info = r["informative"]
            sim.append(
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
    from valuation.scores import percentile_rank

    t, m, h = named["tracin"], named["metadata"], named["hybrid"]
    r_tm = stats.spearman(t, m)
    n = len(t)
    ours = {
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
    r_p = PAPER_RHO["tracin_metadata"]
    paper = {
        **PAPER_RHO,
        "predicted_pearson": rank_average_corr(1.0, r_p, r_p),
        "predicted_spearman": hybrid_spearman_at(
            r_p, 5148, 20, np.random.default_rng([cfg.seed, 0xC])
        ),
    }
    return {"simulation": sim, "ours": ours, "paper": paper}


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


# ----------------------------------------------------------------------------- figures


_BARS = {"marker": "o", "ms": 3, "capsize": 2}  # error-bar style of the figures below


@figures.styled
def alignment_figure(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Left: batch-gradient cosine with g_val per checkpoint, mean ± SD band per sampling and the
    infinite-batch limit dashed. Right: each sampling's mean minus uniform's, ± 2 SE."""
    fig = figures.new_figure(10.0, 3.6)
    ax, ax_d = fig.subplots(1, 2)
    names = list(dict.fromkeys(r["sampling"] for r in rows))
    for i, name in enumerate(names):
        sel = [r for r in rows if r["sampling"] == name]
        x = np.array([r["epoch"] + 1 for r in sel], np.float64)
        mean = np.array([r["mean"] for r in sel])
        sd = np.array([r["sd"] for r in sel])
        color = figures.FALLBACK_COLORS[i - 1] if i else figures.METHOD_COLORS["uniform"]
        ax.plot(x, mean, marker="o", ms=3, color=color, label=name)
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.12)
        ax.plot(x, [r["population"] for r in sel], ls="--", lw=0.9, color=color)
        shift = 0.06 * (i - (len(names) - 1) / 2)  # side by side, not on top of each other
        ax_d.errorbar(
            x + shift,
            [r["diff_vs_uniform"] for r in sel],
            yerr=[2 * r["diff_se"] for r in sel],
            color=color,
            ls="none",
            **_BARS,
        )
    ax_d.axhline(0.0, color="black", lw=0.6)
    for a in (ax, ax_d):
        a.set_xlabel("reference epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    ax.set_ylabel("cos(batch gradient, g_val)")
    ax.set_title("Mean ± SD (dashed: batch → ∞)")
    ax_d.set_ylabel("Δ mean cosine vs uniform")
    ax_d.set_title("Difference to uniform (± 2 SE)")
    ax.legend()
    return figures.save(fig, out)


@figures.styled
def attenuation_figure(sim: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """rho(hybrid, signal) / rho(informative, signal) against N, with the two limits."""
    fig = figures.new_figure(6.0, 3.6)
    ax = fig.subplots()
    for i, noise in enumerate(dict.fromkeys(r["noise"] for r in sim)):
        sel = [r for r in sim if r["noise"] == noise]
        n = np.array([r["n"] for r in sel])
        color = figures.FALLBACK_COLORS[i]
        ax.errorbar(
            n,
            [r["ratio_pearson"] for r in sel],
            yerr=[2 * r["ratio_pearson_se"] for r in sel],
            color=color,
            **_BARS,
            label=f"Pearson on ranks, noise {noise:g}",
        )
        ax.plot(
            n,
            [r["ratio_spearman"] for r in sel],
            marker="s",
            ms=3,
            ls=":",
            color=color,
            label=f"Spearman, noise {noise:g}",
        )
    ax.axhline(PEARSON_INDEPENDENT, color="black", lw=0.8, ls="--", label="1/√2")
    ax.axhline(SPEARMAN_INDEPENDENT, color="grey", lw=0.8, ls="-.", label="7/10")
    ax.set_xscale("log")
    ax.set_xlabel("N (examples)")
    ax.set_ylabel("ρ(hybrid, signal) / ρ(informative, signal)")
    ax.set_title("Rank-averaging with an independent score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figures.save(fig, out)


@figures.styled
def distributions_figure(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """KL from uniform, ESS / N and corrupted mass per epoch of the soft curricula, hard
    selection and uniform as horizontal lines."""
    fig = figures.new_figure(10.0, 3.4)
    axes = fig.subplots(1, 3)
    keys = (
        ("kl_uniform", "KL(p ‖ uniform) (nats)"),
        ("ess_frac", "ESS / N"),
        ("corrupted_mass", "mass on corrupted examples"),
    )
    const = [r for r in rows if r["epoch"] < 0]
    for ax, (key, label) in zip(axes, keys, strict=True):
        for i, name in enumerate(dict.fromkeys(r["curriculum"] for r in rows if r["epoch"] >= 0)):
            sel = [r for r in rows if r["curriculum"] == name]
            x = [r["epoch"] + 1 for r in sel]
            ax.plot(
                x,
                [r[key] for r in sel],
                marker="o",
                ms=3,
                label=name,
                color=figures.FALLBACK_COLORS[i],
            )
        for r, ls in zip(const, ("--", "-."), strict=True):
            ax.axhline(r[key], color="black", lw=0.8, ls=ls, label=r["curriculum"])
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return figures.save(fig, out)


# ----------------------------------------------------------------------------- report


def _pm(mean: float, sd: float) -> str:
    return f"{mean:+.4f} ± {sd:.4f}"


def markdown(cfg: TheoryConfig, result: Mapping[str, Any], made: Sequence[Path]) -> str:
    md = ["# Theory checks", ""]
    md.append(
        f"Workdir `{cfg.workdir}`, reference `{cfg.reference}`, preset `{result['preset']}`, "
        f"{result['n_train']} training examples; {result['note']}."
    )
    md += ["", "## (a) Mini-batch alignment with the validation gradient", ""]
    md.append(
        f"{cfg.n_batches} batches of {cfg.batch_size} (with replacement) per sampling, the same "
        "batches at every checkpoint; exact per-example gradients (no projection). Δ: difference "
        "of the mean cosine to uniform, ± its standard error. B → ∞: cos(Σ p_i g_i, g_val). "
        "B = 1: E_p cos(g_i, g_val). ρ: Spearman of the TracIn score with <g_i, g_val> at that "
        "checkpoint."
    )
    rows = [
        {
            "epoch": r["epoch"] + 1,
            "sampling": r["sampling"],
            "cos (mean ± SD)": _pm(r["mean"], r["sd"]),
            "Δ vs uniform": ""
            if r["sampling"] == "uniform"
            else f"{r['diff_vs_uniform']:+.4f} ± {r['diff_se']:.4f}",
            "z": ""
            if r["sampling"] == "uniform"
            else f"{r['diff_vs_uniform'] / max(r['diff_se'], 1e-12):+.1f}",
            "B → ∞": f"{r['population']:+.4f}",
            "B = 1": f"{r['single_mean']:+.4f}",
            "ρ(TracIn, dots)": f"{r['spearman_tracin_dots']:+.3f}",
        }
        for r in result["alignment"]
    ]
    md.append("")
    md.append(stats.markdown_table(rows, list(rows[0]) if rows else ["epoch"]))
    att = result["attenuation"]
    md += ["## (b) Rank-averaging with an independent score", ""]
    md.append(
        "Simulation: signal S ~ N(0, 1), informative X = S + noise·ε, independent Z; hybrid H = "
        "mean rank of X and Z. Ratio = ρ(H, S) / ρ(X, S). Pearson on ranks → 1/√2 = 0.7071 "
        f"(exact for population ranks); Spearman (H re-ranked) → 7/10 with noise 0. "
        f"{cfg.sim_trials} trials per row; expected: E[Pearson(H, rank X)] for X = S at that N, "
        "√½ (1 − 1/(8(N − 1)))."
    )
    rows = [
        {
            "noise": f"{r['noise']:g}",
            "N": r["n"],
            "ρ(X, S)": f"{r['informative']:.4f}",
            "ratio, Pearson on ranks": f"{r['ratio_pearson']:.4f} ± {r['ratio_pearson_se']:.4f}",
            "expected": ""
            if r["expected_pearson_exact_signal"] is None
            else f"{r['expected_pearson_exact_signal']:.4f}",
            "ratio, Spearman": f"{r['ratio_spearman']:.4f}",
        }
        for r in att["simulation"]
    ]
    md += ["", stats.markdown_table(rows, list(rows[0])), ""]
    o, p = att["ours"], att["paper"]
    md.append(
        "On the scores: r = Spearman(TracIn, metadata); for tie-free ranks Pearson(H, rank "
        "TracIn) = √((1 + r)/2) exactly, and the Spearman prediction is simulated at r "
        "(Gaussian copula)."
    )
    rows = [
        {
            "": "r = Spearman(TracIn, metadata)",
            "ours": f"{o['spearman_tracin_metadata']:+.4f}",
            "paper": f"{p['tracin_metadata']:+.3f}",
        },
        {
            "": "predicted Pearson(H, rank TracIn) = √((1+r)/2)",
            "ours": f"{o['predicted_pearson']:.4f}",
            "paper": f"{p['predicted_pearson']:.4f}",
        },
        {
            "": "observed Pearson(H, rank TracIn)",
            "ours": f"{o['pearson_hybrid_tracin_ranks']:.4f}",
            "paper": "",
        },
        {
            "": "predicted Spearman(H, TracIn)",
            "ours": f"{o['predicted_spearman']:.4f}",
            "paper": f"{p['predicted_spearman']:.4f}",
        },
        {
            "": "observed Spearman(H, TracIn)",
            "ours": f"{o['spearman_hybrid_tracin']:.4f}",
            "paper": f"{p['hybrid_tracin']:.2f}",
        },
        {
            "": "observed Spearman(H, metadata)",
            "ours": f"{o['spearman_hybrid_metadata']:.4f}",
            "paper": f"{p['hybrid_metadata']:.2f}",
        },
    ]
    md += ["", stats.markdown_table(rows, ["", "ours", "paper"]), ""]
    md += ["## (c) Hard selection vs soft weighting", ""]
    md.append(
        f"Top-{100 * cfg.select:g} % hard selection is uniform on its support, so KL(p_soft ‖ "
        "p_hard) = ∞ for every soft curriculum (it samples examples the selection never shows); "
        "the columns give the soft mass hard selection drops and the finite KL(p_hard ‖ p)."
    )
    rows = [
        {
            "curriculum": r["curriculum"],
            "epoch": r["epoch"] + 1 if r["epoch"] >= 0 else "all",
            "phase": r["phase"],
            "KL(p‖u)": f"{r['kl_uniform']:.4f}",
            "ESS/N": f"{r['ess_frac']:.3f}",
            "support": f"{100 * r['support_frac']:.0f} %",
            "max p·N": f"{r['max_ratio']:.2f}",
            "mass dropped by hard": f"{100 * r['mass_dropped_by_hard']:.1f} %",
            "KL(hard‖p)": f"{r['kl_hard_to_this']:.4f}",
            "corrupted mass": f"{100 * r['corrupted_mass']:.2f} %",
        }
        for r in result["distributions"]
    ]
    md += ["", stats.markdown_table(rows, list(rows[0])), ""]
    if made:
        md += ["## Figures", ""]
        md += [f"![{p.stem}]({p.name})\n" for p in made]
    return "\n".join(md)


# ----------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/theory.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", default="runs", help="a workdir with a finished reference run")
    p.add_argument("--out", default=None, help="default: WORKDIR/report/theory")
    p.add_argument("--reference", default=None, help="reference run folder (default: found)")
    p.add_argument("--n-batches", type=int, default=64, help="mini-batches per sampling")
    p.add_argument("--batch-size", type=int, default=16, help="examples per mini-batch")
    p.add_argument("--seed", type=int, default=0, help="seeds batch draws and simulations")
    p.add_argument(
        "--epochs",
        default="auto",
        help="0-based reference checkpoints for (a): auto (about 4 plus the final), all, or 0,5,11",
    )
    p.add_argument("--select", type=float, default=0.2, help="hard selection fraction")
    p.add_argument("--chunk", type=int, default=32, help="examples per per-example-gradient call")
    p.add_argument(
        "--max-examples", type=int, default=None, help="measure (a) on a random training subset"
    )
    p.add_argument("--max-gram-gb", type=float, default=4.0, help="memory cap of (a)'s gradients")
    p.add_argument("--sim-sizes", default="50,200,1000,5000", help="N of the (b) simulation")
    p.add_argument("--sim-trials", type=int, default=200, help="trials per N in (b)")
    return p


# Options whose TheoryConfig field has the argument's name.
_SAME_NAMES = (
    "n_batches",
    "batch_size",
    "seed",
    "select",
    "max_examples",
    "max_gram_gb",
    "sim_trials",
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def resolve(args: argparse.Namespace) -> TheoryConfig:
    from valuation import gameformer

    workdir = Path(args.workdir)
    reference = Path(args.reference) if args.reference else find_reference(workdir)
    available = gameformer.checkpoint_store(reference).epochs()
    if args.epochs == "auto":
        epochs = auto_epochs(available)
    elif args.epochs == "all":
        epochs = tuple(available)
    else:
        epochs = _ints(args.epochs)
        missing = sorted(set(epochs) - set(available))
        if missing:
            raise ValueError(f"{reference}: no checkpoints for epochs {missing} (have {available})")
    return TheoryConfig(
        workdir=str(workdir),
        out=str(Path(args.out) if args.out else workdir / "report" / "theory"),
        reference=str(reference),
        epochs=epochs,
        chunk_size=args.chunk,
        sim_sizes=_ints(args.sim_sizes),
        **{k: getattr(args, k) for k in _SAME_NAMES},
    )


def run(cfg: TheoryConfig) -> dict[str, Any]:
    """Every claim; writes theory.json, THEORY.md and the figures into cfg.out."""
    t0 = time.perf_counter()
    preset = reference_preset(Path(cfg.reference))
    inputs = load_inputs(Path(cfg.workdir), Path(cfg.reference), preset)
    named = inputs["scores"]
    result: dict[str, Any] = {
        "config": to_dict(cfg),
        "preset": preset.name,
        "n_train": len(named["tracin"]),
        "note": inputs["note"],
        "alignment": alignment(cfg, preset, inputs),
        "attenuation": attenuation(cfg, named),
        "distributions": hard_vs_soft(cfg, preset, named["tracin"], inputs["corrupted"]),
    }
    result["seconds"] = time.perf_counter() - t0
    out = Path(cfg.out)
    made = [
        alignment_figure(result["alignment"], out / "alignment.png"),
        attenuation_figure(result["attenuation"]["simulation"], out / "attenuation.png"),
        distributions_figure(result["distributions"], out / "distributions.png"),
    ]
    atomic.write_json(out / "theory.json", result)
    atomic.write_text(out / "THEORY.md", markdown(cfg, result, made))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = resolve(args)
        run(cfg)
    except (FileNotFoundError, ValueError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {Path(cfg.out) / 'THEORY.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
