"""experiments.claims and experiments/theory.py: the closed forms behind the three claims, the
exact batch-cosine fast path against gradients summed one by one, and the script on a tiny
workdir."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from experiments import theory
from experiments.claims import alignment, attenuation, config, selection
from experiments.layout import Layout


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_rank_average_correlation_is_exact_without_ties():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(300)
    x = s + rng.standard_normal(300)
    z = 0.3 * x + rng.standard_normal(300)
    rs, rx, rz = (scipy.stats.rankdata(v) for v in (s, x, z))
    r = {k: _pearson(*v) for k, v in {"xs": (rx, rs), "zs": (rz, rs), "xz": (rx, rz)}.items()}
    got = _pearson((rx + rz) / 2, rs)
    assert got == pytest.approx(attenuation.rank_average_corr(r["xs"], r["zs"], r["xz"]), abs=1e-12)
    # The hybrid against its own informative score: sqrt((1 + r) / 2).
    own = _pearson((rx + rz) / 2, rx)
    assert own == pytest.approx(math.sqrt((1 + r["xz"]) / 2), abs=1e-12)
    assert attenuation.rank_average_corr(1.0, r["xz"], r["xz"]) == pytest.approx(own, abs=1e-12)


def test_attenuation_simulation_matches_the_closed_forms():
    n, repeats = 400, 300
    rng = np.random.default_rng(1)
    exact = attenuation.simulate_attenuation(n, repeats, 0.0, rng)
    np.testing.assert_allclose(exact["informative"], 1.0)
    # sqrt((1 + r) / 2) with Var r = 1 / (n - 1): SD about 1 / sqrt(8 (n - 1)) per trial.
    se = 1.0 / math.sqrt(8.0 * (n - 1) * repeats)
    got = exact["hybrid_pearson"].mean()
    assert abs(got - attenuation.expected_hybrid_corr(n)) < 4 * se + 1.0 / n**2
    # Spearman of the re-ranked hybrid: 7/10 in the limit, within sampling error + O(1/n).
    sp = exact["hybrid_spearman"]
    assert (
        abs(sp.mean() - attenuation.SPEARMAN_INDEPENDENT)
        < 4 * sp.std() / math.sqrt(repeats) + 2 / n
    )
    # A noisy informative score: the Pearson-on-ranks ratio is still 1/sqrt(2).
    noisy = attenuation.simulate_attenuation(n, repeats, 1.0, rng)
    ratio = noisy["hybrid_pearson"] / noisy["informative"]
    tol = 4 * ratio.std() / math.sqrt(repeats) + 2 / n
    assert abs(ratio.mean() - attenuation.PEARSON_INDEPENDENT) < tol
    # The copula prediction at r = 0 is the independent case.
    pred = attenuation.hybrid_spearman_at(0.0, n, repeats, rng)
    assert abs(pred - attenuation.SPEARMAN_INDEPENDENT) < 4 * sp.std() / math.sqrt(repeats) + 2 / n


def test_kl_ess_and_summaries_of_known_distributions():
    assert selection.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    )
    assert selection.kl_divergence([0.5, 0.5, 0.0], [0.2, 0.3, 0.5]) < math.inf
    assert selection.kl_divergence([0.2, 0.3, 0.5], [0.5, 0.5, 0.0]) == math.inf
    assert selection.effective_sample_size([0.5, 0.25, 0.25]) == pytest.approx(1 / 0.375)
    n, kept = 50, np.arange(10)
    hard = selection.subset_distribution(kept, n)
    soft = np.linspace(1, 2, n)
    soft /= soft.sum()
    corrupted = np.zeros(n, bool)
    corrupted[::5] = True
    h = selection.distribution_summary(hard, hard_N=hard, corrupted_N=corrupted)
    assert h["kl_uniform"] == pytest.approx(math.log(n / len(kept)))
    assert h["ess"] == pytest.approx(len(kept)) and h["support_frac"] == 0.2
    assert h["mass_dropped_by_hard"] == 0 and h["kl_hard_to_this"] == pytest.approx(0)
    assert h["corrupted_mass"] == pytest.approx(0.2)
    s = selection.distribution_summary(soft, hard_N=hard, corrupted_N=corrupted)
    assert s["mass_dropped_by_hard"] == pytest.approx(soft[10:].sum())
    assert s["kl_hard_to_this"] == pytest.approx(selection.kl_divergence(hard, soft))
    assert s["corrupted_mass"] == pytest.approx(soft[::5].sum())
    assert s["support_frac"] == 1 and 0 < s["kl_uniform"] < h["kl_uniform"]
    assert config.auto_epochs(range(12)) == (0, 3, 6, 9, 11)
    assert config.auto_epochs([0, 1]) == (0, 1)


def _mlp_loss(params, example):
    h = jnp.tanh(example["x"] @ params["w1"] + params["b1"])
    return (h @ params["w2"] + params["b2"] - example["y"]) ** 2


def test_batch_cosines_equal_explicitly_summed_gradients():
    rng = np.random.default_rng(2)
    params = {
        "w1": jnp.asarray(rng.standard_normal((3, 8)), jnp.float32),
        "b1": jnp.asarray(rng.standard_normal(8), jnp.float32),
        "w2": jnp.asarray(rng.standard_normal(8), jnp.float32),
        "b2": jnp.asarray(0.1, jnp.float32),
    }

    def data(n):
        return {
            "x": rng.standard_normal((n, 3)).astype(np.float32),
            "y": rng.standard_normal(n).astype(np.float32),
        }

    train, val = data(10), data(5)
    # Chunks of 4 over 10 examples: several Gram blocks and a padded last chunk.
    geo = alignment.gradient_geometry(_mlp_loss, params, train, val, chunk_size=4)

    grad = jax.jit(jax.grad(_mlp_loss))

    def flat(i, d):
        g = grad(params, jax.tree.map(lambda x: x[i], d))
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]).astype(np.float64)

    g_NxF = np.stack([flat(i, train) for i in range(10)])
    g_val = np.mean([flat(j, val) for j in range(5)], axis=0)
    np.testing.assert_allclose(geo.gram_NxN, g_NxF @ g_NxF.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(geo.dots_N, g_NxF @ g_val, rtol=1e-5, atol=1e-6)
    idx = np.array([[0, 1, 2], [3, 3, 9], [5, 5, 5], [7, 8, 0]])  # repeats count twice
    want = []
    for batch in idx:
        s = sum(g_NxF[i] for i in batch)
        want.append(s @ g_val / (np.linalg.norm(s) * np.linalg.norm(g_val)))
    got = alignment.batch_cosines(idx, geo.dots_N, geo.gram_NxN, geo.val_sq_norm)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    p = rng.random(10)
    p /= p.sum()
    s = p @ g_NxF
    pop = alignment.population_cosine(p, geo.dots_N, geo.gram_NxN, geo.val_sq_norm)
    assert pop == pytest.approx(s @ g_val / (np.linalg.norm(s) * np.linalg.norm(g_val)), rel=1e-5)
    draws = alignment.draw_batches(p, 200, 3, np.random.default_rng(0))
    assert draws.shape == (200, 3) and draws.min() >= 0 and draws.max() < 10


def test_script_on_the_tiny_workdir(tiny_scored, tmp_path):
    out = tmp_path / "theory"
    argv = ["--workdir", str(tiny_scored), "--out", str(out), "--n-batches", "8"]
    argv += ["--sim-sizes", "50,100", "--sim-trials", "20", "--chunk", "32"]
    assert theory.main(argv) == 0
    result = json.loads((out / "theory.json").read_text())
    cfg = result["config"]
    assert cfg["n_batches"] == 8 and cfg["batch_size"] == 16 and cfg["epochs"] == [0, 1]
    rows = result["alignment"]
    assert len(rows) == 2 * 4
    assert all(-1 <= r["mean"] <= 1 and -1 <= r["population"] <= 1 for r in rows)
    assert {r["sampling"] for r in rows} == {
        "uniform",
        "tracin paper (focus)",
        "tracin code (focus)",
        "top 20 % (hard)",
    }
    ours = result["attenuation"]["ours"]
    assert abs(ours["pearson_hybrid_tracin_ranks"] - ours["predicted_pearson"]) < 0.02
    dist = {(r["curriculum"], r["epoch"]): r for r in result["distributions"]}
    hard = dist[("top 20 % (hard)", -1)]
    # top 20 % of 64 keeps int(12.8) = 12, as the released curation rounds down
    assert hard["kl_uniform"] == pytest.approx(math.log(64 / 12))
    assert hard["ess"] == pytest.approx(12)
    assert dist[("uniform", -1)]["mass_dropped_by_hard"] == pytest.approx(52 / 64)
    assert len(result["distributions"]) == 2 + 2 * 2
    text = (out / "THEORY.md").read_text()
    for heading in ("(a) Mini-batch alignment", "(b) Rank-averaging", "(c) Hard selection"):
        assert heading in text
    for fig in ("alignment.png", "attenuation.png", "distributions.png"):
        assert (out / fig).stat().st_size > 0


def test_the_reference_is_the_layouts_for_the_data(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(FileNotFoundError, match="no reference run there"):
        config.find_reference(layout, "npz:/somewhere", None)
    ref = layout.reference("npz:/somewhere")
    ref.mkdir(parents=True)
    (ref / "config.json").write_text("{}")
    assert config.find_reference(layout, "npz:/somewhere", None) == ref
    with pytest.raises(FileNotFoundError):  # not the synthetic world's reference
        config.find_reference(layout, None, None)
    assert config.find_reference(layout, None, str(ref)) == ref  # --reference overrides


def test_script_without_a_reference_fails_clearly(tmp_path, capsys):
    assert theory.main(["--workdir", str(tmp_path)]) == 1
    assert "no reference run there" in capsys.readouterr().err


def test_gram_cap_defaults_to_half_the_available_memory(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n")
    assert config.available_memory_gb(meminfo) == 20.0  # KiB -> GiB
    assert config.default_gram_gb(meminfo) == 10.0
    meminfo.write_text("MemAvailable:   104858 kB\n")  # 0.1 GiB: the cap never exceeds it
    assert config.default_gram_gb(meminfo) == 0.1
    meminfo.write_text("MemTotal:       24000000 kB\n")  # no MemAvailable line
    assert config.available_memory_gb(meminfo) is None
    assert config.default_gram_gb(tmp_path / "missing") == 4.0
    # The command line's default (None) and a programmatic config both resolve to it, once.
    assert theory.parser().parse_args(["--workdir", str(tmp_path)]).max_gram_gb is None
    monkeypatch.setattr(config, "default_gram_gb", lambda: 7.5)
    cfg = config.TheoryConfig(workdir="w", out="o", reference="r", epochs=(0,))
    assert cfg.max_gram_gb == 7.5
    assert config.TheoryConfig(**{**dataclasses.asdict(cfg), "max_gram_gb": 2.0}).max_gram_gb == 2.0
