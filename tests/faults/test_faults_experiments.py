"""Fault injection: the experiment command lines (`experiments/*.py`, the parity CLIs).

Each fault asserts the exit code (2: a bad option, refused before any work; 1: bad data), one
`error:` line naming the flag or file, that nothing was left half written, and that the command
succeeds once the input is fixed. Training is never run here: where the fixed command would train,
the training stage (`stages.train_or_reuse`) is replaced by a stub that records what it was given,
so the test shows the command got past every check with the fixed input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fault_harness import assert_no_new_files, assert_refused, files_under, run_cli

from experiments import (
    bench_data,
    bench_model,
    bench_pairs,
    bench_tracin,
    bench_train,
    figures,
    gpu_check,
    learning_curve,
    report,
    scoring,
    stages,
    summary,
    sweep,
    theory,
    tracin_subsets,
)
from experiments import run as run_script
from experiments.layout import REFERENCE_SEED, Layout
from experiments.reporting import document
from experiments.runconfig import RunConfig
from gf_jax import parity
from gf_jax.data import store
from gf_jax.model import torch_port
from valuation import scores

TINY = ["--preset", "tiny", "--epochs", "2", "--quiet"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir holding only the tiny preset's cached splits (built once for the module)."""
    root = tmp_path_factory.mktemp("tiny_data")
    preset = stages.resolve_preset(RunConfig("tracin", preset="tiny", epochs=2))
    store.load_splits(preset.data, root=Layout(root).data, progress=False)
    return root


@pytest.fixture
def workdir(tiny_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "work"))


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replaces the training stage: each call is recorded, and a minimal result returned."""
    calls: list[dict] = []

    def fake_train(preset, splits, folder, **kw):
        calls.append({"folder": folder, "n_train": len(splits["train"]), **kw})
        return {"name": kw["extra_config"]["name"], "seed": kw["extra_config"]["seed"]}

    monkeypatch.setattr(stages, "train_or_reuse", fake_train)
    monkeypatch.setattr(summary, "table", lambda *a: "(summary)")
    return calls


def score_path(workdir: Path) -> tuple[Path, dict, str, np.ndarray]:
    """The tiny tracin run's score file, its score names, its recipe and the training tokens."""
    cfg = RunConfig("tracin", preset="tiny", epochs=2)
    preset = stages.resolve_preset(cfg)
    path, which = scoring.score_file(cfg, preset, Layout(workdir))
    recipe = scoring.recipe(cfg, preset, stages.resolve_preset(cfg, seed=REFERENCE_SEED))
    train = store.load_split(preset.data, "train", root=Layout(workdir).data, progress=False)
    return path, which, recipe, np.asarray(train.meta["token"], str)


def write_scores(workdir: Path, change=None) -> Path:
    """A score file that fits the training set (or, with `change(named, tokens)`, does not)."""
    path, which, recipe, tokens = score_path(workdir)
    rng = np.random.default_rng(0)
    named = {k: rng.random(len(tokens)) for k in which}
    if change is not None:
        tokens = change(named, tokens)
    return scores.save_scores(path, named, {"recipe": recipe}, tokens=tokens)


# ----------------------------------------------------------------------------- run.py


@pytest.mark.parametrize(
    ("bad", "flag", "fixed"),
    [
        (["--select", "1.5"], "--select", ["--select", "0.5"]),
        (["--select", "0"], "--select", ["--select", "0.5"]),
        (["--quartile-weights", "2,1,-0.5,0.25"], "--quartile-weights", []),
        (["--quartile-weights", "2,1"], "--quartile-weights", []),
        (["--seed", "-1"], "--seed", ["--seed", "2"]),
        (["--noise", "2"], "--noise", ["--noise", "0.05"]),  # the preset's: same scores
        (["--epochs", "0"], "--epochs", []),
        (["--preset", "huge"], "--preset", []),
        (["--name", "../elsewhere"], "--name", ["--name", "mine"]),
        (["--name", "data"], "--name", ["--name", "mine"]),
        (["--chunk", "0"], "--chunk", []),
        (["--tracin-checkpoints", "every0"], "--tracin-checkpoints", []),
    ],
)
def test_run_refuses_a_bad_option_before_any_work(
    workdir, capsys, no_training, bad, flag, fixed, tiny_data
):
    write_scores(workdir)
    before = files_under(workdir)
    argv = ["--method", "tracin", *TINY, "--workdir", str(workdir)]
    outcome = run_cli(run_script.main, [*argv, *bad], capsys)
    assert_refused(outcome, 2, flag)
    assert_no_new_files(workdir, before)
    assert not no_training  # nothing trained, no data built (the files are as they were)
    fixed_outcome = run_cli(run_script.main, [*argv, *fixed], capsys)
    assert fixed_outcome.code == 0 and not fixed_outcome.errors, fixed_outcome
    assert len(no_training) == 1


def _permute(named, tokens):
    return np.roll(tokens, 1)


def _shorten(named, tokens):
    for k in named:
        named[k] = named[k][:-1]
    return tokens[:-1]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda w: write_scores(w, _permute), "tokens do not match the training set"),
        (lambda w: write_scores(w, _shorten), "tokens, the training set has"),
        (lambda w: _truncate(write_scores(w)), "unreadable score file"),
    ],
    ids=["permuted", "wrong-length", "truncated"],
)
def test_refuse_stale_scores_is_one_line_naming_the_file(
    workdir, capsys, no_training, damage, problem
):
    damage(workdir)
    path = score_path(workdir)[0]
    before, stale = files_under(workdir), path.read_bytes()
    argv = ["--method", "tracin", *TINY, "--workdir", str(workdir), "--refuse-stale-scores"]
    outcome = run_cli(run_script.main, argv, capsys)
    assert_refused(outcome, 1, path, problem, "--refuse-stale-scores")
    assert_no_new_files(workdir, before)  # no reference run, no run folder, no new scores
    assert path.read_bytes() == stale and not no_training
    write_scores(workdir)  # the fix: a file that fits the training set
    fixed = run_cli(run_script.main, argv, capsys)
    assert fixed.code == 0 and not fixed.errors, fixed
    assert "scores: cache hit" in fixed.stdout
    assert no_training[0]["sampling"] is not None  # the curriculum was built from the scores


def test_run_names_a_missing_data_folder(workdir, capsys, no_training):
    gone = workdir / "no-such-npz"
    argv = ["--method", "uniform", *TINY, "--workdir", str(workdir)]
    before = files_under(workdir)
    assert_refused(run_cli(run_script.main, [*argv, "--data", str(gone)], capsys), 1, gone)
    assert_no_new_files(workdir, before)
    fixed = run_cli(run_script.main, argv, capsys)
    assert fixed.code == 0 and len(no_training) == 1


def test_reference_conflict_hint_is_true(workdir, capsys, monkeypatch):
    """A reference folder trained with another config: the hint names the ways out that work
    (--overwrite of a method's run never replaces the shared reference, so it must not say so)."""
    ref = Layout(workdir).reference()
    ref.mkdir(parents=True)
    (ref / "config.json").write_text(json.dumps({"preset": {"name": "other"}}))
    before = files_under(workdir)
    argv = ["--method", "tracin", *TINY, "--workdir", str(workdir)]
    for extra in ([], ["--overwrite"]):
        outcome = run_cli(run_script.main, [*argv, *extra], capsys)
        assert_refused(outcome, 1, ref, "delete that folder")
        assert "--overwrite" not in outcome.errors[0]
        assert_no_new_files(workdir, before)
    shutil.rmtree(ref)  # the fix the hint names
    fitted: list[Path] = []

    def fit(*args, workdir: Path, **kwargs) -> SimpleNamespace:
        fitted.append(workdir)
        return SimpleNamespace(result={"name": "reference"})

    monkeypatch.setattr(stages.train, "fit", fit)
    cfg = RunConfig("tracin", preset="tiny", epochs=2)
    splits = store.load_splits(
        stages.resolve_preset(cfg).data, root=Layout(workdir).data, progress=False
    )
    assert stages.reference_run(cfg, splits, Layout(workdir), progress=False) == ref
    assert fitted == [ref]


# ----------------------------------------------------------------------------- sweep.py


@pytest.mark.parametrize(
    ("bad", "flag"),
    [
        (["--shard", "3/2"], "--shard"),
        (["--shard", "two"], "--shard"),
        (["--only", "no-such-config"], "--only"),
        (["--epochs", "0"], "--epochs"),
        (["--seeds", "-1"], "--seeds"),
        (["--preset", "huge"], "--preset"),
    ],
)
def test_sweep_refuses_a_bad_option(tmp_path, capsys, bad, flag):
    common = ["--preset", "tiny", "--epochs", "2", "--workdir", str(tmp_path), "--only", "uniform"]
    outcome = run_cli(sweep.main, [*common, *bad, "--list"], capsys)
    assert_refused(outcome, 2, flag)
    assert files_under(tmp_path) == set()
    fixed = run_cli(sweep.main, [*common, "--seeds", "1", "--list"], capsys)
    assert fixed.code == 0 and "| uniform | 1 | todo |" in fixed.stdout


def _fake_result(workdir: Path, cfg: RunConfig, ade: float = 3.0) -> Path:
    """A finished run's result.json (the fields the report and the sweep read), no training."""
    folder = Layout(workdir).run(cfg.run_name, cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    result = {
        "plan_ade": ade, "plan_fde": 2 * ade, "plan_ahe": 0.1, "pred_ade": ade, "pred_fde": ade,
        "best_epoch": 2, "corrupted_mass": [0.05, 0.05],
        "history": [{"val_plan_ade": ade + 1.0}, {"val_plan_ade": ade}],
        "test": {"plan_ade": ade, "plan_fde": 2 * ade, "plan_ahe": 0.1},
        "config": {"run": cfg.to_dict()},
    }  # fmt: skip
    (folder / "result.json").write_text(json.dumps(result))
    return folder / "result.json"


@pytest.mark.parametrize("fault", ["other config", "truncated result"])
def test_sweep_counts_a_run_done_only_when_its_config_matches(tmp_path, capsys, fault):
    cfg = RunConfig("uniform", seed=1, preset="tiny", epochs=2)
    if fault == "other config":
        path = _fake_result(tmp_path, RunConfig("uniform", seed=1, preset="tiny", epochs=3))
    else:
        path = _fake_result(tmp_path, cfg)
        path.write_text(path.read_text()[:40])
    argv = ["--preset", "tiny", "--epochs", "2", "--workdir", str(tmp_path)]
    argv += ["--only", "uniform", "--seeds", "1", "--ablation-seeds", "0"]
    listing = run_cli(sweep.main, [*argv, "--list"], capsys)
    assert listing.code == 0 and "| uniform | 1 | stale |" in listing.stdout
    assert "0 done" in listing.stdout
    pending = run_cli(sweep.main, [*argv, "--commands"], capsys).stdout
    assert "--method uniform" in pending  # still to be trained
    _fake_result(tmp_path, cfg)  # the fix: the result of this very config
    listing = run_cli(sweep.main, [*argv, "--list"], capsys)
    assert "| uniform | 1 | done |" in listing.stdout and "1 done" in listing.stdout
    assert run_cli(sweep.main, [*argv, "--commands"], capsys).stdout.strip() == ""


# ----------------------------------------------------------------------------- report.py


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workdir with two finished (fabricated) runs: uniform and tracin, seed 1. The report's
    figures are drawn for real, but without the training-race animation (seconds per GIF)."""
    race = figures.training_race
    monkeypatch.setattr(figures, "training_race", lambda v, png, gif=None, **kw: race(v, png, **kw))
    root = tmp_path / "finished"
    for method, ade in (("uniform", 3.0), ("tracin", 2.5)):
        _fake_result(root, RunConfig(method, seed=1, preset="tiny", epochs=2), ade)
    return root


def test_report_skips_a_truncated_result_with_a_warning_naming_it(finished, capsys):
    broken = finished / "tracin" / "seed1" / "result.json"
    good = broken.read_text()
    broken.write_text(good[: len(good) // 2])
    out = finished / "report"
    capsys.readouterr()
    assert report.main(["--workdir", str(finished), "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error:")] == []
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and f"skipped {broken}" in warnings[0]
    text = (out / "REPORT.md").read_text()
    assert "1 finished runs" in text and f"skipped {broken}" in text
    broken.write_text(good)  # the fix
    fixed = run_cli(report.main, ["--workdir", str(finished), "--out", str(out)], capsys)
    assert fixed.code == 0 and "2 finished runs" in (out / "REPORT.md").read_text()
    assert f"skipped {broken}" not in (out / "REPORT.md").read_text()


def test_a_report_that_fails_half_way_leaves_no_partial_figures(finished, capsys, monkeypatch):
    out = finished / "report"

    def full_disk(*a):
        raise OSError(28, "No space left on device")

    closing = document.closing_sections
    monkeypatch.setattr(document, "closing_sections", full_disk)
    outcome = run_cli(report.main, ["--workdir", str(finished), "--out", str(out)], capsys)
    assert_refused(outcome, 1, "No space left on device")
    assert files_under(out) == set() and not list(out.glob(".*"))  # no figures, no temp folder
    monkeypatch.setattr(document, "closing_sections", closing)
    fixed = run_cli(report.main, ["--workdir", str(finished), "--out", str(out)], capsys)
    assert fixed.code == 0 and (out / "REPORT.md").exists()
    assert (out / "figures" / "training_race.png").stat().st_size > 0


@pytest.mark.parametrize("flag", ["--workdir", "--out"])
def test_report_names_a_missing_workdir_or_a_bad_out(finished, tmp_path, capsys, flag):
    out, workdir = finished / "report", finished
    if flag == "--workdir":
        workdir = tmp_path / "no-such-workdir"
    else:
        out = tmp_path / "a-file"
        out.write_text("not a folder")
    before = files_under(tmp_path)
    outcome = run_cli(report.main, ["--workdir", str(workdir), "--out", str(out)], capsys)
    assert_refused(outcome, 1, flag, workdir if flag == "--workdir" else out)
    assert_no_new_files(tmp_path, before)
    out = finished / "report"
    fixed = run_cli(report.main, ["--workdir", str(finished), "--out", str(out)], capsys)
    assert fixed.code == 0 and (out / "REPORT.md").exists()


# ----------------------------------------------------------------------------- other CLIs


@pytest.mark.parametrize(
    ("main", "argv", "flag"),
    [
        (theory.main, ["--select", "1.5"], "--select"),
        (theory.main, ["--sim-sizes", "0,50"], "--sim-sizes"),
        (theory.main, ["--epochs", "last"], "--epochs"),
        (tracin_subsets.main, ["--chunk", "0"], "--chunk"),
        (learning_curve.main, ["--only", "no-such-setting", "--collect"], "--only"),
        (gpu_check.main, ["--preset", "tiny", "--steps", "0"], "--steps"),
        (gpu_check.main, ["--preset", "tiny", "--budget-s", "-1"], "--budget-s"),
        (bench_data.main, ["--n", "0"], "--n"),
        (bench_data.main, ["--workers", "0"], "--workers"),
        (bench_model.main, ["--batch", "0"], "--batch"),
        (bench_pairs.main, ["--dims", "0"], "--dims"),
        (bench_tracin.main, ["--repeats", "0"], "--repeats"),
        (bench_train.main, ["--steps", "-3"], "--steps"),
        (torch_port.main, ["convert", "missing.npz", "--out", "o", "--neighbors", "99"],
         "--neighbors"),
        (torch_port.main, ["check"], "fixture"),
        (parity.main, ["fixture.npz", "--tolerance", "1"], "--tolerance"),
    ],
)  # fmt: skip
def test_every_cli_refuses_a_bad_option_in_one_line(
    tmp_path, capsys, monkeypatch, main, argv, flag
):
    monkeypatch.chdir(tmp_path)  # default outputs (runs/...) would land here
    outcome = run_cli(main, [*argv, "--workdir", str(tmp_path)] if _has_workdir(main) else argv,
                      capsys)  # fmt: skip
    assert_refused(outcome, 2, flag)
    assert files_under(tmp_path) == set()


def _has_workdir(main) -> bool:
    return main in (theory.main, tracin_subsets.main, learning_curve.main)


def test_parity_names_an_unreadable_fixture(tmp_path, capsys):
    fixture = tmp_path / "fixture.npz"
    fixture.write_bytes(b"PK\x03\x04 truncated")
    for main, argv in ((parity.main, [str(fixture)]), (torch_port.main, ["check", str(fixture)])):
        assert_refused(run_cli(main, argv, capsys), 1, fixture, "unreadable parity fixture")
    state_dict = tmp_path / "missing.npz"
    argv = ["convert", str(state_dict), "--out", str(tmp_path / "out"), "--preset", "tiny"]
    assert_refused(run_cli(torch_port.main, argv, capsys), 1, state_dict, "no such state dict")
    assert files_under(tmp_path) == {"fixture.npz"}
