"""experiments/report.py tables on hand-made results: the paper's own per-seed ADEs, unequal seed
counts, one-seed ablations, missing test metrics and the noiseless baseline."""

import json

import numpy as np
import pytest
from paper_numbers import PAPER_ADE

from experiments import report

# The paper's five methods under this project's names ("baseline" is uniform).
PAPER = {("uniform" if k == "baseline" else k): v for k, v in PAPER_ADE.items()}


def _result(ade: float, test: bool = True) -> dict:
    out = {"plan_ade": ade, "plan_fde": 2 * ade, "plan_ahe": 0.1, "best_epoch": 18}
    if test:
        out["test"] = {"plan_ade": ade + 1.0, "plan_fde": 2 * ade + 1.0, "plan_ahe": 0.2}
    out["corrupted_mass"] = [0.05, 0.04]
    return out


def _runs() -> dict:
    runs = {m: {s: _result(a) for s, a in enumerate(ades, 1)} for m, ades in PAPER.items()}
    runs["loss"].pop(3)  # a method with fewer finished seeds
    runs["random"] = {1: _result(1.9, test=False)}  # a one-seed ablation without test metrics
    runs["uniform-noise0"] = {1: _result(1.5)}
    runs["tracin-noise0"] = {1: _result(1.4)}
    return runs


def _rows(table: str) -> dict[str, list[str]]:
    lines = [ln for ln in table.strip().splitlines() if ln.startswith("|")][2:]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return {c[0]: c for c in cells}


def test_paper_table_reproduces_the_papers_statistics():
    rows = _rows(report.paper_table(_runs(), "val"))
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
    rows = _rows(report.paper_table(runs, "test"))
    assert rows["tracin"][2] == "2.704 ± 0.029"  # the test metrics, not the validation ones
    only = {"uniform": runs["uniform"]}
    assert set(_rows(report.paper_table(only, "val"))) == {"uniform"}
    assert "no finished runs" in report.paper_table({"random": runs["random"]}, "val")


def test_configurations_table_pairs_with_the_right_baseline():
    rows = _rows(report.configurations_table(_runs()))
    # columns: configuration, seeds, val, test, best epoch, delta vs uniform, corrupted share
    diff = np.mean(np.subtract(PAPER["tracin"], PAPER["uniform"]))
    assert rows["tracin"][5] == f"{diff:+.3f} (n=3)"
    assert rows["random"][5] == f"{1.9 - 1.9166:+.3f} (n=1)"
    assert rows["random"][3] == "nan ± nan"  # no test metrics: shown as missing, not invented
    assert rows["tracin-noise0"][5] == "-0.100 (n=1) vs uniform-noise0"
    assert rows["uniform-noise0"][5] == ""  # its own baseline
    assert rows["uniform"][5] == ""
    assert rows["tracin"][6] == "4.0 %"


@pytest.mark.parametrize(
    "name, base",
    [("tracin", "uniform"), ("tracin-noise0", "uniform-noise0"), ("lissa", "uniform"),
     ("uniform-noise0.1", "uniform-noise0.1")],
)  # fmt: skip
def test_baseline_of(name, base):
    assert report.baseline_of(name) == base


def test_reference_preset_follows_the_sweeps_data(tmp_path):
    from experiments import run as run_lib
    from gf_jax.config import PRESETS, to_dict

    args = run_lib.parser().parse_args(["--method", "uniform", "--data", "npz:/somewhere"])
    ref = tmp_path / run_lib.reference_folder(args) / "seed0"
    ref.mkdir(parents=True)
    (ref / "config.json").write_text(json.dumps({"preset": to_dict(PRESETS["tiny"])}))
    assert report.reference_preset(tmp_path) is None  # not the synthetic world's reference
    assert report.reference_preset(tmp_path, "npz:/somewhere") == PRESETS["tiny"]
