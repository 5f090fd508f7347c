"""experiments.reporting on hand-made workdirs and results: the paper's own per-seed ADEs, unequal
seed counts, one-seed ablations, missing test metrics, the noiseless baseline, the non-learned
baselines' rows, a corrupt result.json, and score files found through the runs' saved configs."""

import json

import numpy as np
import pytest
import scipy.stats
from paper_numbers import PAPER_ADE

from experiments import scoring, stats
from experiments.configurations import configurations
from experiments.layout import Layout
from experiments.reporting import document, loading, tables
from experiments.runconfig import RunConfig
from gf_jax.config import PRESETS, to_dict
from gf_jax.data.schema import ScenarioSet
from valuation.scores import save_scores

# The paper's five methods under this project's names ("baseline" is uniform).
PAPER = {("uniform" if k == "baseline" else k): v for k, v in PAPER_ADE.items()}
CONFIGS = configurations(preset="cpu")
BASELINES = {
    "constant_velocity": {
        "val": {"plan_ade": 2.5, "plan_fde": 6.0, "plan_ahe": 0.3},
        "test": {"plan_ade": 2.6, "plan_fde": 6.1, "plan_ahe": 0.31},
    },
    "route_following": {
        "val": {"plan_ade": 2.25, "plan_fde": 5.0, "plan_ahe": 0.2, "pred_ade": 1.25}
    },
}


def _result(ade: float, name: str, test: bool = True, scores: str | None = None) -> dict:
    out = {"plan_ade": ade, "plan_fde": 2 * ade, "plan_ahe": 0.1, "best_epoch": 18, "history": []}
    out["pred_ade"] = ade / 2
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


def test_seed_table_marks_runs_no_better_than_route_following():
    bar = {"route_following": {"val": {"plan_ade": 1.8}}}
    rows = _rows(tables.seed_table(_runs(), "val", baselines=bar))
    assert rows["tracin"] == ["tracin", "1.687", "1.680", "1.746", "3/3"]
    assert rows["uniform"] == ["uniform", "1.917*", "1.593", "1.806*", "1/3"]
    assert rows["loss"] == ["loss", "1.728", "1.726", "", "2/2"]  # seed 3 not finished: blank
    assert "random" not in rows  # the paper's methods only
    # Without the baseline on that split: values only, nothing marked, no count.
    plain = _rows(tables.seed_table(_runs(), "test", baselines=bar))
    assert plain["uniform"] == ["uniform", "2.917", "2.593", "2.806"]


def test_nan_runs_are_not_counted_as_beating_and_do_not_break_the_comparison():
    runs = _runs()
    runs["tracin"][1]["plan_ade"] = float("nan")
    bar = {"route_following": {"val": {"plan_ade": 1.8}}}
    rows = _rows(tables.seed_table(runs, "val", baselines=bar))
    assert rows["tracin"][1] == "nan*" and rows["tracin"][-1] == "2/3"
    from experiments.reporting import paper

    rows = _rows(paper.paper_comparison_table(runs))
    assert rows["tracin"][7] == ""  # no spread to judge by: blank, no crash


def test_escape_table_finds_the_first_epoch_below_route_following():
    runs = _runs()
    curves = {1: [3.0, 2.0, 1.7], 2: [3.0, 2.5, 2.1], 3: [1.5, 1.4, 1.3]}
    for s, ades in curves.items():  # uniform's seeds: below 2.25 at epochs 2, 3 and 1
        runs["uniform"][s]["history"] = [
            {"epoch": e, "val_plan_ade": a} for e, a in enumerate(ades, 1)
        ]
        runs["uniform"][s]["plan_ade"] = min(ades)
    runs["tracin"][1]["history"] = [{"epoch": 1, "val_plan_ade": 9.0}]  # never below
    table, rho, n = tables.escape_table(runs, BASELINES)
    rows = _rows(table)
    assert rows["uniform"][1:4] == ["2", "3", "1"]
    assert rows["tracin"][1] == "-"
    assert rows["metadata"][1] == "-"  # no history at all: not in rho
    # uniform's epochs (2, 3, 1) and TracIn seed 1, which never got there in its one epoch and
    # ranks as epoch 2, against their best ADEs.
    epochs, ades = [2, 3, 1, 2], [1.7, 2.1, 1.3, PAPER["tracin"][0]]
    assert n == 4
    assert rho == pytest.approx(scipy.stats.spearmanr(epochs, ades).statistic)
    assert tables.first_epoch_below({"history": []}, 2.0) is None
    table, rho, n = tables.escape_table(runs, {})  # no baseline: nothing to compare with
    assert np.isnan(rho) and n == 0 and "no baseline" in table


def test_paper_comparison_sets_paired_effects_side_by_side():
    from scipy.stats import ttest_rel

    from experiments.reporting import paper

    runs = _runs()  # our runs carry the paper's own numbers: both halves must agree
    rows = _rows(paper.paper_comparison_table(runs))
    u = PAPER["uniform"]
    for m in ("metadata", "tracin", "hybrid"):
        effect = f"{100 * (np.mean(PAPER[m]) - np.mean(u)) / np.mean(u):+.1f} %"
        p = f"{ttest_rel(PAPER[m], u).pvalue:.3g}"
        assert rows[m][2:4] == [effect, p]
        assert rows[m][5:7] == [effect, f"{p} (n=3)"]
    assert rows["tracin"][2] == "-3.8 %"
    assert rows["uniform"][4] == stats.format_mean_sd(u) + " (n=3)"
    assert rows["uniform"][2] == rows["uniform"][5] == ""  # not compared with itself
    # Loss has seeds 1 and 2 only: paired over those.
    loss = PAPER["loss"][:2]
    effect = 100 * (np.mean(loss) - np.mean(u[:2])) / np.mean(u[:2])
    assert rows["loss"][5] == f"{effect:+.1f} %"
    assert rows["loss"][4].endswith("(n=2)")
    # Our runs are the paper's, so the seeds needed are those for the paper's own d_z.
    for m in ("metadata", "tracin", "hybrid"):
        dz = stats.paired_test(PAPER[m], u)["dz"]
        assert rows[m][7] == f"{stats.seeds_needed(dz):,}"
    assert rows["tracin"][7] == "45"  # d_z = -0.0678 / 0.1587 = -0.427 (by hand)


def test_configurations_table_pairs_with_the_right_baseline():
    rows = _rows(tables.configurations_table(_runs(), BASELINES))
    # columns: configuration, seeds, val, test, val pred, best epoch, delta vs uniform, corrupted
    diff = np.mean(np.subtract(PAPER["tracin"], PAPER["uniform"]))
    assert rows["tracin"][6] == f"{diff:+.3f} (n=3)"
    assert rows["tracin"][4] == stats.format_mean_sd(np.divide(PAPER["tracin"], 2))
    assert rows["random"][6] == f"{1.9 - 1.9166:+.3f} (n=1)"
    assert rows["random"][3] == "nan"  # no test metrics: shown as missing, not invented
    assert rows["tracin-noise0"][6] == "-0.100 (n=1) vs uniform-noise0"
    assert rows["uniform-noise0"][6] == ""  # its own baseline
    assert rows["uniform"][6] == ""
    assert rows["tracin"][7] == "4.0 %"
    assert rows["(constant velocity)"][2:5] == ["2.500", "2.600", ""]  # no pred_ade given
    assert rows["(route following)"][2:5] == ["2.250", "", "1.250"]


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


def _timed(train_s: list, eval_s: list | None, fit: float, score: float | None = None) -> dict:
    hist = [{"train_seconds": t} for t in train_s]
    for rec, e in zip(hist, eval_s or [], strict=False):
        rec["eval_seconds"] = e
    return {"history": hist, "fit_seconds": fit, "score_seconds": score}


def test_run_time_splits_a_run_and_knows_a_resumed_one():
    part = tables.run_time(_timed([70.0, 60.0, 62.0, 61.0], [2.0, 1.0, 1.0, 1.0], 265.0, 800.0))
    assert part["train_epoch"] == 61.0 and part["first_extra"] == 9.0
    assert part["eval_epoch"] == 1.0 and part["fit"] == 265.0 and part["score"] == 800.0
    assert part["rest"] == pytest.approx(265.0 - 253.0 - 5.0)
    resumed = tables.run_time(_timed([70.0, 60.0, 62.0, 61.0], None, 80.0))  # its last call
    assert np.isnan(resumed["fit"]) and np.isnan(resumed["rest"]) and np.isnan(resumed["score"])
    assert np.isnan(resumed["eval_epoch"])  # an older record: no eval_seconds
    untimed = tables.run_time({"history": [{"epoch": 1}], "fit_seconds": 10.0})  # hand-made
    assert np.isnan(untimed["train_epoch"]) and np.isnan(untimed["first_extra"])


def test_time_table_takes_medians_and_shows_missing_parts_as_dashes():
    runs = {
        "uniform": {
            s: _timed([70.0, 60.0, 60.0], [1.0] * 3, f) for s, f in ((1, 200.0), (2, 220.0))
        },
        "tracin": {1: _timed([60.0, 60.0, 60.0], None, 100.0, 835.0)},  # resumed, older record
    }
    rows = _rows(tables.time_table(runs))
    # columns: configuration, runs, fit (min), train/epoch, epoch 1 extra, eval/epoch, rest, score
    assert rows["uniform"] == ["uniform", "2", "3.5", "60.0", "10.0", "1.00", "17.0", "-"]
    assert rows["tracin"] == ["tracin", "1", "-", "60.0", "0.0", "-", "-", "835"]
    assert list(rows) == ["tracin", "uniform"]  # the paper's methods by name, as the others


def test_score_sections_relate_the_tracin_variants_but_group_only_the_main_scores():
    rng = np.random.default_rng(0)
    tracin = rng.normal(size=40)
    named = {
        "tracin": tracin,
        "metadata": rng.normal(size=40),
        "random": rng.normal(size=40),
        "tracin_best": -tracin,  # a variant ranking every example the other way round
        "tracin_dropout": tracin + 1.0,
    }
    meta = {
        "scenario_type": np.array(["a", "b"] * 20),
        "city": np.array(["x"] * 40),
        "corrupted": np.arange(40) < 4,
    }
    train = ScenarioSet(arrays={"ego_agent_future": np.zeros((40, 1, 3), np.float32)}, meta=meta)
    md = "\n".join(document.score_sections(named, train, {}))
    spearman = md.split("## Detecting")[0]
    assert "| score | tracin | metadata | tracin_best | tracin_dropout |" in spearman
    assert "| tracin | +1.000 |" in spearman and "| tracin_best | -1.000 |" in spearman
    assert "| tracin_dropout | +1.000 |" in spearman and "random" not in spearman
    by_type = md.split("## Mean score percentile by scenario type")[1]
    assert "tracin_best" not in by_type and "| scenario type | n | tracin | metadata |" in by_type
