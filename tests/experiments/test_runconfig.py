"""RunConfig, the sweep's plan and the runs/ layout: pure logic, no training."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from experiments import configurations as plan_lib
from experiments import run as run_script
from experiments import sweep
from experiments.layout import Layout
from experiments.runconfig import ConfigError, LissaOptions, RunConfig


def test_run_names_of_every_configuration():
    configs = plan_lib.configurations(preset="tiny")
    assert set(configs) >= {"uniform", "tracin", "tracin-select0.2-top", "uniform-noise0"}
    assert (
        RunConfig("tracin", quartile_weights=(2, 1, 0.75, 0.25)).run_name == "tracin-q2_1_0.75_0.25"
    )
    assert RunConfig("metadata", name="mine").run_name == "mine"


@pytest.mark.parametrize("name", sorted(plan_lib.configurations(preset="tiny")))
def test_config_round_trips_through_json_and_the_command_line(name, tmp_path):
    cfg = dataclasses.replace(plan_lib.configurations(preset="tiny", epochs=3)[name], seed=4)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    argv = shlex.split(plan_lib.command_line(cfg, tmp_path))
    assert argv[:2] == ["python", "experiments/run.py"]
    args = run_script.parser().parse_args(argv[2:])
    assert run_script.config_from(args) == cfg


def test_lissa_options_travel_with_the_config():
    cfg = RunConfig("lissa", lissa=LissaOptions(depth=7, repeats=1, batch_size=4))
    assert RunConfig.from_dict(cfg.to_dict()).lissa == LissaOptions(7, 1, 4)
    assert "--lissa-depth 7" in plan_lib.command_line(cfg, "runs")


@pytest.mark.parametrize(
    "fields,flag",
    [
        ({"select": 1.5}, "--select"),
        ({"select": 0.0}, "--select"),
        ({"quartile_weights": (2, 1, -0.5, 0.25)}, "--quartile-weights"),
        ({"seed": -1}, "--seed"),
        ({"noise": 2.0}, "--noise"),
        ({"epochs": 0}, "--epochs"),
        ({"preset": "huge"}, "--preset"),
        ({"curriculum": "easy"}, "--curriculum"),
        ({"lissa": {"depth": 0}}, "--lissa-depth"),
    ],
)
def test_bad_options_are_refused_naming_the_flag(fields, flag):
    with pytest.raises(ConfigError, match=flag):
        if "lissa" in fields:
            LissaOptions(**fields["lissa"])
        else:
            RunConfig("tracin", **fields)


def test_bad_options_fail_before_any_work(tmp_path, capsys):
    code = run_script.main(["--method", "tracin", "--select", "1.5", "--workdir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --select")
    assert not any(tmp_path.iterdir())  # nothing built, nothing trained
    assert run_script.main(["--method", "tracin", "--quartile-weights", "1,2", "--preset", "tiny",
                            "--workdir", str(tmp_path)]) == 2  # fmt: skip


def test_random_method_selects_at_random():
    args = run_script.parser().parse_args(
        ["--method", "random", "--select", "0.2", "--preset", "tiny"]
    )
    assert run_script.config_from(args).select_from == "random"


def test_plan_order_and_shards():
    configs = plan_lib.configurations(preset="tiny")
    runs = plan_lib.plan(configs, [1, 2], [1])
    assert [(c.run_name, c.seed) for c in runs[:6]] == [
        ("uniform", 1), ("metadata", 1), ("tracin", 1), ("hybrid", 1), ("loss", 1), ("uniform", 2),
    ]  # fmt: skip
    assert len(runs) == 10 + len(plan_lib.ABLATIONS)
    shards = [plan_lib.shard(runs, i, 3) for i in (1, 2, 3)]
    assert sorted((c.run_name, c.seed) for s in shards for c in s) == sorted(
        (c.run_name, c.seed) for c in runs
    )
    with pytest.raises(ValueError, match="--shard"):
        plan_lib.shard(runs, 4, 3)
    assert [c.run_name for c in plan_lib.plan(configs, [1], [], only=["tracin*"])] == ["tracin"]
    argv = ["--preset", "tiny", "--seeds", "1", "2", "--ablation-seeds", "1"]
    whole = sweep.plan_from(sweep.parser().parse_args(argv))
    assert whole == runs  # the command line's default: shard 1/1
    share = sweep.plan_from(sweep.parser().parse_args([*argv, "--shard", "2/3"]))
    assert share == shards[1]


def test_status_needs_a_matching_config(tmp_path):
    layout = Layout(tmp_path)
    cfg = RunConfig("tracin", preset="tiny")
    assert plan_lib.status(layout, cfg) == "todo"
    (layout.run("tracin", 1) / "checkpoints").mkdir(parents=True)
    assert plan_lib.status(layout, cfg) == "partial"
    result = {"config": {"run": cfg.to_dict()}}
    layout.result("tracin", 1).write_text(json.dumps(result))
    assert plan_lib.status(layout, cfg) == "done"
    assert plan_lib.status(layout, dataclasses.replace(cfg, epochs=3)) == "stale"
    layout.result("tracin", 1).write_text("{trunc")
    assert plan_lib.status(layout, cfg) == "stale"


def test_layout_paths(tmp_path):
    layout = Layout(tmp_path)
    assert layout.reference() == tmp_path / "reference" / "seed0"
    assert layout.reference(noise=0.0) == tmp_path / "reference-noise0" / "seed0"
    assert layout.reference("synthetic") == layout.reference()
    assert layout.reference("npz:/data").parent.name.startswith("reference-")
    f = layout.score_file("x")
    assert layout.relative(f) == "scores/x.npz"
    f.parent.mkdir()
    f.write_bytes(b"")
    assert layout.resolve("scores/x.npz") == f
    assert layout.resolve("/elsewhere/runs/scores/x.npz") == f  # older absolute paths
    layout.result("uniform", 2).parent.mkdir(parents=True)
    layout.result("uniform", 2).write_text("{}")
    (tmp_path / "reference" / "seed0").mkdir(parents=True)
    (tmp_path / "reference" / "seed0" / "result.json").write_text("{}")
    assert [(n, s) for n, s, _ in layout.finished()] == [("uniform", 2)]


def test_tracin_checkpoint_subsets():
    from valuation import checkpoints

    assert RunConfig("tracin", tracin_checkpoints="every3").run_name == "tracin-ckpt-every3"
    assert checkpoints.subset(10, "every3") == [0, 3, 6, 9]
    assert checkpoints.subset(10, "last2") == [8, 9] and checkpoints.subset(2, "last5") == [0, 1]
    with pytest.raises(ConfigError, match="--tracin-checkpoints"):
        RunConfig("tracin", tracin_checkpoints="every0")
