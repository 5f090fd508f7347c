"""The attribution benchmark end to end on the tiny preset (1 epoch): one full-data reference
run, TracIn pair scores and per-example scores, 3 random half-subsets and a top/bottom removal,
then resuming (nothing retrained), retraining a run whose outcome was lost, growing the plan,
and the report from the workdir.

Most of the time is compiling (the train step ~60 s, the TracIn kernel ~30 s on busy cores); the
retrains after it take 2 s each. TRAK's scorer path runs in the committed sample's making
(tests/experiments/attribution_sample/) and its kernel in tests/valuation/test_trak.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import attribute
from experiments.attribution import analysis, benchmark, document, retrain, scorers
from experiments.attribution.config import AttributionConfig, ConfigError
from experiments.attribution.layout import Layout

CONFIG = AttributionConfig(
    preset="tiny",
    epochs=1,
    subsets=3,
    ceiling_subsets=0,
    reference_runs=1,
    trak_models=(1,),
    scorers=("tracin", "loss", "metadata", "hybrid", "random"),  # TRAK: its compile costs ~70 s
    removal_fractions=(0.1,),
    removal_scorers=("tracin",),
    random_removals=0,
    bootstrap=50,
)
RUNS = ("reference-seed0", "subset-000", "subset-001", "subset-002")
RUNS += ("remove-tracin-top-10", "remove-tracin-bottom-10")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    root = tmp_path_factory.mktemp("attribution")
    layout = Layout(root / "work", root / "scratch")
    counts = benchmark.run(CONFIG, layout, progress=False)
    assert counts == {"trained": len(RUNS), "skipped": 0, "pending": 0}
    return layout


def test_writes_every_output(bench: Layout):
    saved = json.loads(bench.config.read_text())
    assert AttributionConfig.from_dict(saved["attribution"]) == CONFIG
    assert saved["data"]["n_train"] == 64 and saved["data"]["n_val"] == 16
    per_N, pairs_NxJ, info = scorers.load(bench.score_file("tracin"))
    assert pairs_NxJ.shape == (64, 16) and pairs_NxJ.dtype == np.float32
    np.testing.assert_allclose(per_N, pairs_NxJ.mean(axis=1), rtol=1e-4, atol=1e-9)
    assert info["seconds"] > 0
    for name in ("loss", "metadata", "hybrid", "random"):
        assert scorers.load(bench.score_file(name))[1] is None
    for name in RUNS:
        record, per_J = retrain.load(bench, name)
        assert per_J["loss"].shape == (16,) and per_J["plan_ade"].dtype == np.float32
        # The per-scenario outcome is the best-val checkpoint's: its mean is the run's val ADE.
        assert per_J["plan_ade"].mean() == pytest.approx(record["val"]["plan_ade"], rel=1e-4)
        assert record["fit_seconds"] > 0 and "plan_ade" in record["test"]
        kept = bench.train(name) / "checkpoints"
        assert kept.exists() == name.startswith("reference"), name  # retrains' are deleted
    assert retrain.load(bench, "subset-000")[0]["n_train"] == 32
    assert retrain.load(bench, "remove-tracin-top-10")[0]["n_train"] == 58  # 64 - round(6.4)
    # The `steps` budget: a half-subset trains twice the epochs, so a full-data run's steps.
    reference, subset = (retrain.load(bench, n)[0] for n in ("reference-seed0", "subset-000"))
    assert (reference["epochs"], subset["epochs"]) == (1, 2)
    assert subset["steps"] == reference["steps"] == 4  # 64 examples in batches of 16


def test_resume_skips_finished_runs_and_grows_the_plan(bench: Layout, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(retrain.train, "fit", no_training)
    counts = benchmark.run(CONFIG, bench, progress=False)
    assert counts == {"trained": 0, "skipped": len(RUNS), "pending": 0}
    # Two more subsets: the first three are kept, the new ones wait (max_runs=0).
    grown = AttributionConfig.from_dict({**CONFIG.to_dict(), "subsets": 5})
    counts = benchmark.run(grown, bench, progress=False, max_runs=0)
    assert counts == {"trained": 0, "skipped": len(RUNS), "pending": 2}
    benchmark.run(CONFIG, bench, progress=False)  # back to the plan the other tests expect
    # Another identity (seed) is refused before any work.
    with pytest.raises(ConfigError, match="seed"):
        benchmark.run(AttributionConfig.from_dict({**CONFIG.to_dict(), "seed": 1}), bench)


def test_two_shards_share_the_plan_and_wait_for_each_other(bench: Layout, tmp_path: Path):
    cfg = AttributionConfig.from_dict({**CONFIG.to_dict(), "reference_runs": 2})
    layout = Layout(tmp_path / "work", tmp_path / "scratch")
    # Shard 2 first: reference-seed1 and subset-001; its removal waits on shard 1's scores.
    counts = benchmark.run(cfg, layout, progress=False, shard=(2, 2))
    assert counts == {"trained": 2, "skipped": 0, "pending": 1}
    assert not layout.score_file("tracin").exists()
    # Shard 1: reference-seed0, then (both references done) the scores, subsets 0 and 2 and the
    # top removal; then shard 2 finds the scores and trains the bottom removal.
    counts = benchmark.run(cfg, layout, progress=False, shard=(1, 2))
    assert counts == {"trained": 4, "skipped": 0, "pending": 0}
    counts = benchmark.run(cfg, layout, progress=False, shard=(2, 2))
    assert counts == {"trained": 1, "skipped": 2, "pending": 0}
    assert benchmark.run(cfg, layout, progress=False) == {"trained": 0, "skipped": 7, "pending": 0}
    # A subset trains to the same model whichever process trains it.
    sharded, _ = retrain.load(layout, "subset-001")
    assert sharded["digest"] == retrain.load(bench, "subset-001")[0]["digest"]


def test_a_lost_outcome_is_retrained_to_the_same_numbers(bench: Layout):
    # Its `fit` folder says finished but holds no checkpoints: the retrain starts over, and
    # training is deterministic, so the outcome comes back identical.
    record, per_J = retrain.load(bench, "subset-001")
    shutil.rmtree(bench.run("subset-001"))
    counts = benchmark.run(CONFIG, bench, progress=False)
    assert counts == {"trained": 1, "skipped": len(RUNS) - 1, "pending": 0}
    again, again_J = retrain.load(bench, "subset-001")
    assert again["val"] == record["val"] and again["digest"] == record["digest"]
    for key, values in per_J.items():
        np.testing.assert_array_equal(again_J[key], values)


def test_an_outcome_of_another_budget_is_refused_and_its_scratch_restarted(bench: Layout):
    record, per_J = retrain.load(bench, "subset-002")
    outcome = bench.run("subset-002") / "outcome.json"
    outcome.write_text(json.dumps({**record, "epochs": 1}))
    with pytest.raises(retrain.StaleOutcomeError, match="trained for 1 epochs, this run needs 2"):
        benchmark.run(CONFIG, bench, progress=False)
    # Deleted, and its scratch made to look like an interrupted run of 1 epoch (a checkpoint
    # and that config): it is not resumed (a config mismatch) but trained again, to the same
    # numbers.
    shutil.rmtree(bench.run("subset-002"))
    scratch = bench.train("subset-002")
    (scratch / "result.json").unlink()
    shutil.rmtree(scratch / "checkpoints", ignore_errors=True)
    shutil.copytree(bench.train("reference-seed0") / "checkpoints", scratch / "checkpoints")
    saved = json.loads((scratch / "config.json").read_text())
    saved["preset"]["train"]["epochs"] = 1
    (scratch / "config.json").write_text(json.dumps(saved))
    counts = benchmark.run(CONFIG, bench, progress=False)
    assert counts == {"trained": 1, "skipped": len(RUNS) - 1, "pending": 0}
    again, again_J = retrain.load(bench, "subset-002")
    assert again["val"] == record["val"] and again["epochs"] == 2
    np.testing.assert_array_equal(again_J["plan_ade"], per_J["plan_ade"])


def test_report_from_the_workdir(bench: Layout, tmp_path: Path):
    summary = analysis.summarize(analysis.load(bench.root))
    rows = {r["scorer"]: r for r in summary["lds"]}
    assert set(rows) == {"tracin", "loss", "metadata", "hybrid", "random"}
    assert rows["tracin"]["loss"]["subsets"] == 3 and rows["tracin"]["loss"]["targets"] >= 1
    assert rows["loss"]["loss"] is None and rows["loss"]["ade"]["subsets"] == 3
    assert {(r["scorer"], r["side"]) for r in summary["removal"]} == {
        ("tracin", "top"),
        ("tracin", "bottom"),
    }
    assert summary["finished"] == {"reference": 1, "subset": 3, "ceiling": 0, "removal": 2}
    out = tmp_path / "attribution-cpu.md"
    assert attribute.main(["report", "--workdir", str(bench.root), "--out", str(out)]) == 0
    assert out.read_text() == document.render(summary, "attribution-cpu/removal_curves.png")
    assert "| hybrid |" in out.read_text()


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_list_reads_the_workdir_and_writes_nothing(bench: Layout, tmp_path: Path, capsys):
    before = _files(bench.root.parent)
    argv = ["run", "--list", "--workdir", str(bench.root), "--scratch", str(bench.scratch)]
    assert attribute.main(argv) == 0  # its flags come from the workdir's config
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == [f"done    {name}" for name in RUNS]
    assert lines[-1] == f"{len(RUNS)} of {len(RUNS)} runs done"
    assert _files(bench.root.parent) == before

    fresh = tmp_path / "fresh"
    argv = ["run", "--list", "--preset", "tiny", "--workdir", str(fresh),
            "--scratch", str(tmp_path / "scratch")]  # fmt: skip
    assert attribute.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == [f"pending reference-seed{s}" for s in range(5)]  # the default: 5
    assert lines[-1].startswith("0 of 5 runs done (not started")
    assert not fresh.exists() and not (tmp_path / "scratch").exists()
