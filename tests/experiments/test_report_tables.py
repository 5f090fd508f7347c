"""experiments.reporting on hand-made workdirs and results: the paper's own per-seed ADEs, unequal
seed counts, one-seed ablations, missing test metrics, the noiseless baseline, the non-learned
baselines' rows, a corrupt result.json, and score files found through the runs' saved configs."""

import json

import numpy as np
import pytest
from paper_numbers import PAPER_ADE

from experiments import scoring
from experiments.configurations import configurations
from experiments.layout import Layout
from experiments.reporting import loading, tables
from experiments.runconfig import RunConfig
from gf_jax.config import PRESETS, to_dict
from valuation.scores import save_scores

# The paper's five methods under this project's names ("baseline" is uniform).
PAPER = {("uniform" if k == "baseline" else k): v for k, v in PAPER_ADE.items()}
CONFIGS = configurations(preset="cpu")
BASELINES = {
    "constant_velocity": {
        "val": {"plan_ade": 2.5, "plan_fde": 6.0, "plan_ahe": 0.3},
        "test": {"plan_ade": 2.6, "plan_fde": 6.1, "plan_ahe": 0.31},
    },
    "route_following": {"val": {"plan_ade": 2.25, "plan_fde": 5.0, "plan_ahe": 0.2}},
}


def _result(ade: float, name: str, test: bool = True, scores: str | None = None) -> dict:
    out = {"plan_ade": ade, "plan_fde": 2 * ade, "plan_ahe": 0.1, "best_epoch": 18, "history": []}
    if test:
        out["test"] = {"plan_ade": ade + 1.0, "plan_fde": 2 * ade + 1.0, "plan_ahe": 0.2}
    out["corrupted_mass"] = [0.05, 0.04]
    out["config"] = {"run": CONFIGS[name].to_dict(), "scores": scores}
    return out


def _runs() -> dict:
    runs = {m: {s: _result(a, m) for s, a in enumerate(ades, 1)} for m, ades in PAPER.items()}
    runs["loss"].pop(3)  # a method with fewer finished seeds
    runs["random"] = {1: _result(1.9, "random", test=False)}  # one seed, no test metrics
    runs["uniform-noise0"] = {1: _result(1.5, "uniform-noise0")}
    runs["tracin-noise0"] = {1: _result(1.4, "tracin-noise0")}
    return runs


def _rows(table: str) -> dict[str, list[str]]:
    lines = [ln for ln in table.strip().splitlines() if ln.startswith("|")][2:]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return {c[0]: c for c in cells}


def test_paper_table_reproduces_the_papers_statistics():
    rows = _rows(tables.paper_table(_runs(), "val"))
    tracin, metadata, loss = rows["tracin"], rows["metadata"], rows["loss"]
    # columns: method, seeds, ADE, FDE, AHE, CV, p, d_z
    assert tracin[2] == "1.704 ± 0.029" and tracin[5] == "1.7 %"
    assert metadata[5] == "0.7 %" and rows["uniform"][5] == "7.6 %"
    assert metadata[6] == "0.0214 (n=3)"  # TracIn vs metadata: p = 0.021
    assert metadata[7] == "-3.88 (n=3)"  # d_z = 3.88, signed TracIn - metadata
    assert tracin[6] == "" and tracin[7] == ""
    assert loss[1] == "2" and loss[6].endswith("(n=2)")  # paired over the common seeds only


def test_paper_table_on_test_split_and_missing_methods():
    runs = _runs()
    rows = _rows(tables.paper_table(runs, "test"))
    assert rows["tracin"][2] == "2.704 ± 0.029"  # the test metrics, not the validation ones
    only = {"uniform": runs["uniform"]}
    assert set(_rows(tables.paper_table(only, "val"))) == {"uniform"}
    assert "no finished runs" in tables.paper_table({"random": runs["random"]}, "val")


def test_paper_table_shows_the_baselines_on_each_split():
    val = _rows(tables.paper_table(_runs(), "val", baselines=BASELINES))
    assert val["(constant velocity)"][1:8] == ["", "2.500", "6.000", "0.300", "", "", ""]
    assert val["(route following)"][2:5] == ["2.250", "5.000", "0.200"]
    test = _rows(tables.paper_table(_runs(), "test", baselines=BASELINES))
    assert test["(constant velocity)"][2] == "2.600"
    assert test["(route following)"][2] == ""  # no test metrics given: blank, not invented


def test_configurations_table_pairs_with_the_right_baseline():
    rows = _rows(tables.configurations_table(_runs(), BASELINES))
    # columns: configuration, seeds, val, test, best epoch, delta vs uniform, corrupted share
    diff = np.mean(np.subtract(PAPER["tracin"], PAPER["uniform"]))
    assert rows["tracin"][5] == f"{diff:+.3f} (n=3)"
    assert rows["random"][5] == f"{1.9 - 1.9166:+.3f} (n=1)"
    assert rows["random"][3] == "nan ± nan"  # no test metrics: shown as missing, not invented
    assert rows["tracin-noise0"][5] == "-0.100 (n=1) vs uniform-noise0"
    assert rows["uniform-noise0"][5] == ""  # its own baseline
    assert rows["uniform"][5] == ""
    assert rows["tracin"][6] == "4.0 %"
    assert rows["(constant velocity)"][2:4] == ["2.500", "2.600"]
    assert rows["(route following)"][2:4] == ["2.250", ""]


@pytest.mark.parametrize(
    "cfg, base",
    [
        (RunConfig(method="tracin"), "uniform"),
        (RunConfig(method="tracin", noise=0.0), "uniform-noise0"),
        (RunConfig(method="lissa"), "uniform"),
        (RunConfig(method="uniform", noise=0.1), "uniform-noise0.1"),
        (RunConfig(method="tracin", noise=0.0, name="clean"), "uniform-noise0"),  # not the name
        (None, "uniform"),  # a result of an older layout
    ],
)
def test_baseline_of_reads_the_saved_noise(cfg, base):
    assert tables.baseline_of(cfg) == base


def test_reference_preset_follows_the_sweeps_data(tmp_path):
    layout = Layout(tmp_path)
    ref = layout.reference("npz:/somewhere")
    ref.mkdir(parents=True)
    (ref / "config.json").write_text(json.dumps({"preset": to_dict(PRESETS["tiny"])}))
    assert loading.reference_preset(layout) is None  # not the synthetic world's reference
    assert loading.reference_preset(layout, "npz:/somewhere") == PRESETS["tiny"]


def _write_result(layout: Layout, name: str, seed: int, result: dict | str) -> None:
    path = layout.result(name, seed)
    path.parent.mkdir(parents=True)
    path.write_text(result if isinstance(result, str) else json.dumps(result))


def _write_scores(path, **named) -> None:
    save_scores(path, {k: np.asarray(v, float) for k, v in named.items()}, {}, tokens=list("abc"))


def test_scores_are_found_through_the_runs_saved_configs(tmp_path, capsys):
    layout = Layout(tmp_path)
    preset = PRESETS["tiny"]
    ref = layout.reference()
    ref.mkdir(parents=True)
    (ref / "config.json").write_text(json.dumps({"preset": to_dict(preset)}))
    base, _ = scoring.score_file(RunConfig(method="tracin", preset="tiny"), preset, layout)
    _write_scores(base, tracin=[3, 2, 1], metadata=[1, 2, 3], hybrid=[2, 2, 2])
    named, source = loading.load_scores(layout, preset)  # no runs yet: the default file
    assert list(named) == ["tracin", "metadata", "hybrid"] and source["tracin"] == base.name
    for name, file, values in (
        ("tracin-ckpt-best", "best.npz", {"tracin": [9, 8, 7]}),
        ("lissa", "lissa.npz", {"lissa": [5, 5, 4]}),
        ("tracin-noise0", "noise0.npz", {"tracin": [0, 0, 0]}),  # another world: not shown
    ):
        _write_scores(layout.scores / file, **values)
        _write_result(layout, name, 1, _result(1.7, name, scores=f"scores/{file}"))
    _write_result(layout, "uniform", 2, '{"plan_ade": 1.')  # truncated while being written
    notes: list[str] = []
    runs = loading.load_runs(layout, notes)
    assert sorted(runs) == ["lissa", "tracin-ckpt-best", "tracin-noise0"]
    assert len(notes) == 1 and "uniform/seed2/result.json" in notes[0]
    assert "uniform/seed2/result.json" in capsys.readouterr().err
    named, source = loading.load_scores(layout, preset, runs)
    assert list(named) == ["tracin", "metadata", "hybrid", "lissa", "tracin_best"]
    np.testing.assert_array_equal(named["tracin_best"], [9, 8, 7])
    np.testing.assert_array_equal(named["tracin"], [3, 2, 1])  # not the noiseless world's
    assert source["lissa"] == "lissa.npz"
