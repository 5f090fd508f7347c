"""run.py, sweep.py and report.py end to end on the tiny preset (2 epochs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import run_method

from experiments import configurations as plan_lib
from experiments import report, sweep
from experiments import run as run_script
from experiments.layout import Layout
from experiments.runconfig import LissaOptions

ROOT = Path(__file__).resolve().parents[2]
DESIGN_KEYS = ("plan_ade", "plan_fde", "plan_ahe", "pred_ade", "pred_fde", "best_epoch", "history")


def _result(workdir: Path, name: str, seed: int = 1) -> dict:
    return json.loads((workdir / name / f"seed{seed}" / "result.json").read_text())


def _check(result: dict, method: str, epochs: int = 2) -> None:
    for k in DESIGN_KEYS:
        assert k in result, k
    assert np.isfinite([result[k] for k in DESIGN_KEYS[:5]]).all()
    assert len(result["history"]) == epochs
    assert result["method"] == method
    assert result["config"]["preset"]["name"] == "tiny"
    assert result["config"]["preset"]["train"]["epochs"] == epochs
    assert set(result["test"]) >= {"plan_ade", "plan_fde"}
    assert len(result["corrupted_mass"]) == epochs


def test_reference_scores_and_runs(tiny_workdir):
    ref = tiny_workdir / "reference" / "seed0"
    assert (ref / "result.json").exists()
    assert sorted(p.name for p in (ref / "checkpoints").glob("epoch_*")) == [
        "epoch_000",
        "epoch_001",
    ]
    _check(_result(tiny_workdir, "uniform"), "uniform")
    tr = _result(tiny_workdir, "tracin")
    _check(tr, "tracin")
    assert tr["config"]["sampling"]["kind"] == "curriculum"
    assert tr["config"]["sampling"]["mode"] == "paper"
    assert (tiny_workdir / "tracin" / "seed1" / "config.json").exists()
    assert tr["config"]["run"]["method"] == "tracin"
    score_file = Layout(tiny_workdir).resolve(tr["config"]["scores"])
    assert tr["config"]["scores"].startswith("scores/")  # relative: a copied workdir still works
    assert score_file.exists() and score_file.parent == tiny_workdir / "scores"
    with np.load(score_file) as z:
        assert {"tracin", "metadata", "loss", "hybrid", "random", "token"} <= set(z.files)
        assert z["tracin"].shape == (64,)


@pytest.mark.parametrize(
    "method,fields,name,kind",
    [
        ("metadata", {}, "metadata", "curriculum"),
        ("hybrid", {}, "hybrid", "curriculum"),
        ("loss", {}, "loss", "curriculum"),
        ("random", {}, "random", "curriculum"),
        # A short LiSSA (the test is about the pipeline; tests/valuation check its numerics).
        ("lissa", {"lissa": LissaOptions(depth=4, batch_size=8)}, "lissa", "curriculum"),
        ("tracin", {"select": 0.25}, "tracin-select0.25-top", "select"),
        ("tracin", {"curriculum": "code"}, "tracin-code", "curriculum"),
    ],
)
def test_every_method_writes_a_result(tiny_workdir, method, fields, name, kind):
    result = run_method(tiny_workdir, method, seed=1, **fields)
    _check(result, method)
    assert result == _result(tiny_workdir, name)
    assert result["config"]["sampling"]["kind"] == kind
    if kind == "select":
        assert result["config"]["sampling"]["fraction"] == 0.25


def test_second_run_is_a_cache_hit(tiny_workdir, capsys):
    path = tiny_workdir / "tracin" / "seed1" / "result.json"
    before = path.read_text()
    capsys.readouterr()
    run_method(tiny_workdir, "tracin", seed=1)
    out = capsys.readouterr().out
    assert "scores: cache hit" in out and "run: cache hit" in out
    assert "reference:" not in out  # a valid score file needs no reference run
    assert path.read_text() == before


def test_conflicting_run_is_refused(tiny_workdir, capsys):
    argv = ["--method", "metadata", "--name", "uniform", "--seed", "1", "--preset", "tiny"]
    code = run_script.main([*argv, "--epochs", "2", "--quiet", "--workdir", str(tiny_workdir)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different configuration" in err[0]


def test_sweep_list_and_resume_then_report(tiny_workdir, capsys, tmp_path):
    common = ["--preset", "tiny", "--epochs", "2", "--workdir", str(tiny_workdir), "--quiet"]
    assert sweep.main([*common, "--only", "uniform", "tracin", "--seeds", "1", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "| uniform | 1 | done |" in listing and "| tracin | 1 | done |" in listing
    assert sweep.main([*common, "--only", "uniform", "tracin", "--seeds", "1"]) == 0
    assert "2 of 2 runs" in capsys.readouterr().out
    assert len(plan_lib.configurations(preset="tiny")) >= 18

    out = tmp_path / "report"
    (out / "theory").mkdir(parents=True)  # where experiments/theory.py writes by default
    (out / "theory" / "THEORY.md").write_text("# Theory checks\n")
    assert report.main(["--workdir", str(tiny_workdir), "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    assert "](theory/THEORY.md)" in text
    assert "(animated)](figures/training_race.gif)" in text
    for heading in ("The paper's table", "test split", "Spearman", "injected label noise"):
        assert heading in text
    assert "| tracin | 1 |" in text
    for fig in ("tracin_distribution.png", "spearman.png", "training_race.gif",
                "predictions.gif", "tier_scenarios.png", "curriculum_weights.png"):  # fmt: skip
        assert (out / "figures" / fig).stat().st_size > 0, fig
    assert "skipped" not in text


def test_cli_help_and_bad_data(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "run.py")]
    h = subprocess.run([*cmd, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert h.returncode == 0 and "--method" in h.stdout and "--curriculum" in h.stdout
    bad = subprocess.run(
        [*cmd, "--method", "uniform", "--preset", "tiny", "--data", str(tmp_path / "missing"),
         "--workdir", str(tmp_path / "w"), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error:") and "missing" in bad.stderr


# `python experiments/run.py --method tracin --seed 1 --preset tiny --epochs 2` at commit 1605f67
# (before the experiments package was restructured), 4 CPU devices as in these tests.
BEFORE_REDESIGN = {
    "best_epoch": 2,
    "plan_ade": 9.546797752380371,
    "plan_fde": 23.69683265686035,
    "plan_ahe": 1.0749976634979248,
    "pred_ade": 14.639944076538086,
    "pred_fde": 24.51181983947754,
    "test_plan_ade": 16.33610725402832,
    "test_pred_ade": 20.02507209777832,
}


def test_same_metrics_as_before_the_redesign(tiny_workdir):
    r = _result(tiny_workdir, "tracin")
    got = {k: r[k] for k in BEFORE_REDESIGN if not k.startswith("test_")}
    got.update(test_plan_ade=r["test"]["plan_ade"], test_pred_ade=r["test"]["pred_ade"])
    assert got == pytest.approx(BEFORE_REDESIGN, rel=1e-6)
