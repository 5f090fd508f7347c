"""The attribution benchmark's arithmetic, without training: subsets and removals, LDS against
hand computations, the bootstrap, noise detection against a brute-force AUROC, the config, and
the report rebuilt from the committed sample workdir (tests/experiments/attribution_sample/).

The sample (~60 KB) was made by the benchmark itself; after a change to the report's text,
rebuild `attribution.md` with the second command (and delete the figure folder it writes):

    python experiments/attribute.py run --workdir tests/experiments/attribution_sample \
        --scratch /tmp/sample_scratch --preset tiny --epochs 2 --subsets 4 --ceiling-subsets 3 \
        --reference-runs 2 --trak-models 1,2 --trak-dim 32 \
        --scorers tracin,trak,loss,metadata,random --removal-fractions 0.1,0.2 \
        --removal-scorers tracin --random-removals 1 --bootstrap 200 --retrain-budget epochs
    python experiments/attribute.py report --workdir tests/experiments/attribution_sample \
        --out tests/experiments/attribution_sample/attribution.md
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import attribute, probe_retrain
from experiments.attribution import (
    analysis,
    benchmark,
    document,
    lds,
    noise,
    retrain,
    subsets,
    tables,
)
from experiments.attribution.config import AttributionConfig, ConfigError
from experiments.attribution.layout import Layout

SAMPLE = Path(__file__).parent / "attribution_sample"


# ----------------------------------------------------------------------------- subsets


def test_subset_masks_are_deterministic_and_extendable():
    masks_RxN = subsets.subset_masks(101, 6, 0.5, seed=3)
    assert masks_RxN.shape == (6, 101) and masks_RxN.dtype == bool
    assert (masks_RxN.sum(axis=1) == 50).all()  # round(0.5 * 101) = 50
    np.testing.assert_array_equal(masks_RxN, subsets.subset_masks(101, 6, 0.5, seed=3))
    # Asking for more subsets keeps the first ones; another seed draws others.
    np.testing.assert_array_equal(subsets.subset_masks(101, 9, 0.5, seed=3)[:6], masks_RxN)
    assert not np.array_equal(subsets.subset_masks(101, 6, 0.5, seed=4), masks_RxN)
    assert len({m.tobytes() for m in masks_RxN}) == 6


def test_removals_by_score_and_at_random():
    score_N = np.array([0.5, 3.0, -1.0, 3.0, 2.0, 0.0, 1.0, -2.0, 4.0, 0.1])
    # 20 % of 10 = 2 examples; of the two 3.0s the later index counts as higher (stable sort).
    np.testing.assert_array_equal(
        subsets.removal_kept(score_N, 0.2, "top"), np.setdiff1d(np.arange(10), [8, 3])
    )
    np.testing.assert_array_equal(
        subsets.removal_kept(score_N, 0.2, "bottom"), np.setdiff1d(np.arange(10), [7, 2])
    )
    a = subsets.random_kept(10, 0.2, seed=1, draw=0)
    np.testing.assert_array_equal(a, subsets.random_kept(10, 0.2, seed=1, draw=0))
    assert len(a) == 8 and np.all(np.diff(a) > 0)
    assert subsets.digest(a) == subsets.digest(a[::-1])
    with pytest.raises(ValueError, match="side"):
        subsets.removal_kept(score_N, 0.2, "middle")


# ----------------------------------------------------------------------------- LDS


def test_lds_matches_a_hand_computation():
    # Four training examples, four subsets, two targets.
    scores_NxJ = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0], [1.0, 3.0]])
    masks_RxN = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
    # Summed scores: target 0 -> 1, 3, 3, 4 (a tie); target 1 -> 0, 1, 0, 3 (a tie).
    np.testing.assert_array_equal(
        lds.predicted_effects(masks_RxN, scores_NxJ), [[1, 0], [3, 1], [3, 0], [4, 3]]
    )
    outcome_RxJ = np.array([[4.0, 9.0], [2.0, 7.0], [3.0, 8.0], [1.0, 6.0]])

    # Target 0: effect ranks 1, 2.5, 2.5, 4 against -outcome ranks 1, 3, 2, 4.
    # Target 1: effect ranks 1.5, 3, 1.5, 4 against -outcome ranks 1, 3, 2, 4.
    def pearson(a, b):
        a, b = np.asarray(a) - np.mean(a), np.asarray(b) - np.mean(b)
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    hand_J = [pearson([1, 2.5, 2.5, 4], [1, 3, 2, 4]), pearson([1.5, 3, 1.5, 4], [1, 3, 2, 4])]
    rho_J = lds.column_spearman(lds.predicted_effects(masks_RxN, scores_NxJ), -outcome_RxJ)
    np.testing.assert_allclose(rho_J, hand_J)
    rng = np.random.default_rng(0)
    got = lds.lds(scores_NxJ, masks_RxN, outcome_RxJ, resamples=50, confidence=0.9, rng=rng)
    assert got["value"] == pytest.approx(np.mean(hand_J))
    assert got["subsets"] == 4 and got["targets"] == 2


def test_lds_no_ties_textbook_formula():
    # Without ties Spearman is 1 - 6 sum d^2 / (n (n^2 - 1)): d = (0, 0, 1, 1) -> 0.8.
    effect_R = np.array([1.0, 2.0, 3.0, 4.0])
    outcome_R = np.array([4.0, 3.0, 1.0, 2.0])  # -outcome ranks 1, 2, 4, 3
    assert lds.mean_agreement(effect_R, -outcome_R) == pytest.approx(1 - 6 * 2 / (4 * 15))


def test_perfect_predictor_scores_one_and_random_scores_zero():
    rng = np.random.default_rng(1)
    n, j = 60, 40
    masks_RxN = subsets.subset_masks(n, 200, 0.5, seed=0)
    truth_NxJ = rng.normal(size=(n, j))
    # Outcome = a decreasing function of the true summed effect: a perfect scorer's LDS is 1.
    outcome_RxJ = np.exp(-0.1 * (masks_RxN @ truth_NxJ))
    common = {"resamples": 20, "confidence": 0.95}
    perfect = lds.lds(truth_NxJ, masks_RxN, outcome_RxJ, rng=rng, **common)
    assert perfect["value"] == pytest.approx(1.0)
    noise_NxJ = rng.normal(size=(n, j))
    random = lds.lds(noise_NxJ, masks_RxN, outcome_RxJ, rng=rng, **common)
    assert abs(random["value"]) < 0.05
    flipped = lds.lds(-truth_NxJ, masks_RxN, outcome_RxJ, rng=rng, **common)
    assert flipped["value"] == pytest.approx(-1.0)


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(2)
    masks_RxN = subsets.subset_masks(30, 25, 0.5, seed=5)
    scores_NxJ = rng.normal(size=(30, 8))
    outcome_RxJ = -(masks_RxN @ scores_NxJ) + rng.normal(scale=3.0, size=(25, 8))
    args = (scores_NxJ, masks_RxN, outcome_RxJ)
    a = lds.lds(*args, resamples=300, confidence=0.95, rng=np.random.default_rng(7))
    b = lds.lds(*args, resamples=300, confidence=0.95, rng=np.random.default_rng(7))
    assert a == b
    assert a["low"] < a["value"] < a["high"]
    assert 0.0 < a["value"] < 1.0


def test_constant_targets_are_left_out():
    effect_RxJ = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    outcome_RxJ = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0]])
    rho_J = lds.column_spearman(effect_RxJ, -outcome_RxJ)
    assert rho_J[0] == pytest.approx(1.0) and np.isnan(rho_J[1])
    assert lds.mean_agreement(effect_RxJ, -outcome_RxJ) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- noise detection


def brute_force_auroc(score_N, positive_N):
    """P(a positive scores below a negative) + half the ties, over every pair."""
    pos, neg = score_N[positive_N], score_N[~positive_N]
    wins = [1.0 if p < q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_auroc_and_found_fraction_against_references():
    rng = np.random.default_rng(3)
    score_N = np.round(rng.normal(size=80), 1)  # rounded: plenty of ties
    corrupted_N = rng.random(80) < 0.2
    d = noise.detection(score_N, corrupted_N, inspect=0.1)
    assert d["auroc_low"] == pytest.approx(brute_force_auroc(score_N, corrupted_N))
    assert d["auroc_high"] == pytest.approx(1 - d["auroc_low"])
    lowest = np.argsort(score_N, kind="stable")[:8]
    assert d["found_lowest"] == pytest.approx(corrupted_N[lowest].sum() / corrupted_N.sum())
    # A score that is exactly the flag finds every corrupted example.
    exact = noise.detection(-corrupted_N.astype(float), corrupted_N, inspect=0.5)
    assert exact["auroc_low"] == 1.0 and exact["found_lowest"] == 1.0


# ----------------------------------------------------------------------------- config


def test_config_round_trip_and_errors_name_the_flag():
    cfg = AttributionConfig(preset="tiny", subsets=3, removal_fractions=(0.1,))
    assert AttributionConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.scorer_names[:6] == (
        "tracin",
        "tracin_best",
        "tracin_dropout",
        "cosine",
        "trak1",
        "trak5",
    )
    assert set(cfg.identity()) >= {"preset", "seed", "subset_fraction"}
    for kwargs, flag in (
        ({"subsets": 1}, "--subsets"),
        ({"subset_fraction": 1.0}, "--subset-fraction"),
        ({"ceiling_subsets": 1}, "--ceiling-subsets"),
        ({"reference_runs": 2}, "--reference-runs"),
        ({"removal_scorers": ("nope",)}, "--removal-scorers"),
        ({"scorers": ("hybrid", "random"), "removal_scorers": ()}, "--scorers"),
        ({"preset": "huge"}, "--preset"),
        ({"retrain_budget": "time"}, "--retrain-budget"),
    ):
        with pytest.raises(ConfigError, match=flag):
            AttributionConfig(**kwargs)


def test_retrain_budget_gives_a_subset_a_full_runs_steps():
    steps = AttributionConfig()
    assert steps.retrain_budget == "steps"
    assert steps.retrain_epochs(12, 2048, 1024) == 24  # a half-subset: twice the passes
    assert steps.retrain_epochs(12, 2048, 1946) == 13  # 5 % removed: 12.6 rounded
    assert steps.retrain_epochs(12, 2048, 2048) == 12
    assert steps.retrain_epochs(12, 2048, 1638) == 15  # 20 % removed: 15.0
    epochs = AttributionConfig(retrain_budget="epochs")
    assert epochs.retrain_epochs(12, 2048, 1024) == 12
    assert steps.removal_count == 3 * (5 * 2 + 3)
    # The milestones move with the epochs: x0.5 at 9, 10, 11 of 12 becomes 18, 20, 22 of 24.
    preset = benchmark.resolve_preset(steps)
    spec = benchmark.subset_specs(steps, 2048)[0]
    scheduled = spec.schedule(preset).train
    assert (scheduled.epochs, scheduled.lr_milestones, scheduled.seed) == (24, (18, 20, 22), 0)
    assert preset.train.lr_milestones == (9, 10, 11)
    removal = dataclasses.replace(spec, epochs=15).schedule(preset).train
    assert removal.lr_milestones == (11, 12, 14)  # 11.25, 12.5, 13.75 rounded half to even
    # The budget is part of a workdir's identity; one saved before it existed ran `epochs`.
    assert "retrain_budget" in steps.identity()
    legacy = {k: v for k, v in steps.to_dict().items() if k != "retrain_budget"}
    assert AttributionConfig.from_saved(legacy).retrain_budget == "epochs"


def test_an_outcome_is_refused_when_trained_for_other_epochs(tmp_path):
    preset = benchmark.resolve_preset(AttributionConfig(preset="tiny"))  # 4 epochs
    layout = Layout(tmp_path / "work", tmp_path / "scratch")
    idx = np.arange(0, 64, 2)
    record = {"digest": subsets.digest(idx), "val": {}}  # recorded before "epochs" was kept
    retrain.write(layout.run("subset-000"), record, {"loss": np.zeros(3)})
    as_recorded = retrain.RunSpec("subset-000", "subset", 0, idx)
    assert retrain.finished(layout, as_recorded, 64, preset) == record  # the preset's 4 epochs
    doubled = dataclasses.replace(as_recorded, epochs=8)
    with pytest.raises(retrain.StaleOutcomeError, match="trained for 4 epochs, this run needs 8"):
        retrain.finished(layout, doubled, 64, preset)
    other = retrain.RunSpec("subset-000", "subset", 0, np.arange(1, 64, 2))
    with pytest.raises(retrain.StaleOutcomeError, match="other examples"):
        retrain.finished(layout, other, 64, preset)


def test_probe_retrain_overrides_only_the_schedule():
    base = benchmark.resolve_preset(AttributionConfig())
    flags = ["--seed", "3", "--epochs", "24", "--milestones", "18,20,22", "--lr", "2e-3"]
    probe = probe_retrain.scheduled(base, probe_retrain.parser().parse_args(flags))
    assert probe.train == dataclasses.replace(
        base.train, seed=3, epochs=24, lr_milestones=(18, 20, 22), learning_rate=2e-3
    )
    assert (probe.model, probe.data) == (base.model, base.data)
    unchanged = probe_retrain.scheduled(base, probe_retrain.parser().parse_args([]))
    assert unchanged.train == dataclasses.replace(base.train, seed=0)
    longer = probe_retrain.scheduled(base, probe_retrain.parser().parse_args(["--epochs", "24"]))
    assert longer.train.lr_milestones == (18, 20, 22)  # moved with the epochs, as in the benchmark
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing
        probe_retrain.main(["--lr", "0"])
    assert exit_info.value.code == 2


def test_command_line_takes_the_workdirs_values_unless_given(tmp_path):
    saved = AttributionConfig(preset="tiny", subsets=7, removal_fractions=(0.1,))
    (tmp_path / "config.json").write_text(json.dumps({"attribution": saved.to_dict()}))
    args = attribute.parser().parse_args(["run", "--workdir", str(tmp_path)])
    assert attribute.config_from(args) == saved
    args = attribute.parser().parse_args(
        ["run", "--workdir", str(tmp_path), "--subsets", "9", "--trak-dim", "64"]
    )
    grown = attribute.config_from(args)
    assert (grown.subsets, grown.trak_dim, grown.preset) == (9, 64, "tiny")
    fresh = attribute.parser().parse_args(["run", "--workdir", str(tmp_path / "new")])
    assert attribute.config_from(fresh) == AttributionConfig()
    assert attribute.main(["run", "--workdir", str(tmp_path), "--removal-scorers", "nope"]) == 2
    for bad in ("3/2", "0/2", "two"):
        with pytest.raises(SystemExit) as exit_info:  # refused while parsing, before any work
            attribute.main(["run", "--workdir", str(tmp_path), "--shard", bad])
        assert exit_info.value.code == 2
    args = attribute.parser().parse_args(["run", "--shard", "2/3", "--wait"])
    assert args.shard == (2, 3) and args.wait


def test_a_shard_waits_on_another_only_when_asked(capsys):
    answers, slept = iter([False, False, True]), []
    done = benchmark.ready(
        lambda: next(answers), "x", wait=True, poll_seconds=5, sleep=slept.append
    )
    assert done and slept == [5]
    assert "waiting on x (checking every 5 s)" in capsys.readouterr().out
    assert not benchmark.ready(lambda: False, "the scores", wait=False, poll_seconds=5)
    assert "waiting on the scores: run again (or pass --wait)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the report


def test_the_report_says_how_many_retrains_learned():
    summary = {"retrained": {"subset": {"val": [3.0, 6.0]}, "removal": {"val": [4.0]}}}
    text = tables.retrains_learned(summary, route_val=5.0)
    assert text == " 2 of 3 retrains beat route following on val (median 0.80x, worst 1.20x)."
    assert tables.retrains_learned({"retrained": {}}, route_val=5.0) == ""


def test_the_claims_set_removals_against_the_random_removals_and_lds_against_zero():
    def lds_row(scorer, low, high):
        return {"scorer": scorer, "ade": None, "loss": {"value": (low + high) / 2,
                                                        "low": low, "high": high}}  # fmt: skip

    def removal(scorer, side, delta):
        return {"scorer": scorer, "side": side, "fraction": 0.1, "delta_val": delta}

    summary = {
        "config": {"attribution": {"removal_fractions": [0.05, 0.1, 0.2]}},
        "lds": [lds_row("tracin", -0.1, 0.05), lds_row("trak5", 0.02, 0.08)],
        "ceiling": {"loss": {"value": 0.3, "low": 0.2, "high": 0.4}},
        "removal": [removal("tracin", "top", 0.3), removal("tracin", "bottom", -0.1),
                    removal(subsets.RANDOM_DRAW, "random", 0.2),
                    removal(subsets.RANDOM_DRAW, "random", -0.05)],
    }  # fmt: skip
    text = document.pair_claim(summary)
    assert (
        "tracin -0.025 [-0.100, 0.050] (includes 0); trak5 0.050 [0.020, 0.080] (above 0)" in text
    )
    assert "two seeds agree at 0.300 [0.200, 0.400], so a scorer" in text
    assert "would reach ≈ 0.55 against one seed" in text
    chance = {**summary, "ceiling": {"loss": {"value": -0.05, "low": -0.2, "high": 0.1}}}
    assert "no better than chance, so no scorer" in document.pair_claim(chance)
    assert tables.cap({"value": -0.1}) == "n/a"
    assert tables.cap({"value": 0.09}) == "≈ 0.30"
    text = document.removal_claim(summary)
    assert "(10 % removed" in text
    assert (
        "tracin top +0.300, bottom -0.100; 2 random removals of the same size: -0.050 to +0.200"
        in text
    )
    # Nothing is claimed before a removal pair and two random draws have finished.
    assert document.removal_claim({**summary, "removal": summary["removal"][:3]}) == ""


def test_report_from_the_committed_sample_equals_the_committed_report(tmp_path):
    workdir = tmp_path / "sample"
    shutil.copytree(SAMPLE, workdir)
    summary = analysis.summarize(analysis.load(workdir))
    out = document.write(summary, tmp_path / "attribution.md")
    assert out.read_text() == (SAMPLE / "attribution.md").read_text()
    assert (tmp_path / "attribution" / "removal_curves.png").stat().st_size > 0
    assert (tmp_path / "attribution" / "summary.json").exists()
    # The sample covers every section: LDS of pair and per-example scorers, the ceiling,
    # removals by score and at random, noise detection, baselines.
    text = out.read_text()
    for needle in ("| tracin |", "| trak2 |", "| loss |", "(noise ceiling", "(route following)",
                   "| random | random |", "AUROC (high = corrupted)"):  # fmt: skip
        assert needle in text, needle
