"""experiments/breakdown.py on a copy of the tiny workdir: one breakdown.json per finished run
with a checkpoint, groups that partition each split and equal evaluating the group alone, runs
skipped once done, and the report's tables by scenario type and city."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from experiments import breakdown as script
from experiments import report
from experiments.layout import Layout
from experiments.reporting import breakdown, loading
from gf_jax import evaluate, steps
from gf_jax.checkpoint import CheckpointStore
from gf_jax.data import store

pytestmark = pytest.mark.slow  # the tiny workdir's training, and one eval compile


@pytest.fixture(scope="module")
def workdir(tiny_workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("breakdown") / "runs"
    shutil.copytree(tiny_workdir, root)
    return root


def test_writes_one_file_per_run_with_a_checkpoint(workdir, capsys):
    stripped = workdir / "uniform" / "seed1" / "checkpoints"
    shutil.rmtree(stripped)  # as a fresh clone of committed results: nothing to evaluate
    assert script.main(["--workdir", str(workdir), "--quiet"]) == 0
    assert "wrote 2 run(s)" in capsys.readouterr().out  # tracin seed 1 and the reference
    assert not (workdir / "uniform" / "seed1" / breakdown.FILE).exists()
    found = json.loads((workdir / "tracin" / "seed1" / breakdown.FILE).read_text())
    assert (workdir / "reference" / "seed0" / breakdown.FILE).is_file()

    preset = loading.run_preset(workdir / "tracin" / "seed1")
    layout = Layout(workdir)
    val = store.load_split(preset.data, "val", root=layout.data, progress=False)
    assert set(found) == {"val", "test"} and set(found["val"]) == {"scenario_type", "city"}
    for kind in breakdown.KINDS:
        assert sum(g["n"] for g in found["val"][kind].values()) == len(val)
    # One group's numbers are what evaluating only its scenarios gives.
    group, row = next(iter(found["val"]["scenario_type"].items()))
    idx = np.flatnonzero(np.asarray(val.meta["scenario_type"]).astype(str) == group)
    params = CheckpointStore(workdir / "tracin" / "seed1" / "checkpoints").params("best")
    _, eval_fn = steps.compiled_steps(preset.model, preset.train)
    alone = evaluate.evaluate(params, val.subset(idx), preset.model,
                              batch_size=preset.train.eval_batch_size, step_fn=eval_fn)  # fmt: skip
    for key in breakdown.KEYS:
        assert row[key] == pytest.approx(alone[key], rel=1e-5, nan_ok=True), key

    before = (workdir / "tracin" / "seed1" / breakdown.FILE).stat().st_mtime_ns
    assert script.main(["--workdir", str(workdir), "--quiet"]) == 0
    assert "wrote 0 run(s)" in capsys.readouterr().out
    assert (workdir / "tracin" / "seed1" / breakdown.FILE).stat().st_mtime_ns == before
    assert script.main(["--workdir", str(workdir), "--quiet", "--overwrite"]) == 0
    assert "wrote 2 run(s)" in capsys.readouterr().out


def test_report_shows_the_tables(workdir, tmp_path):
    if not (workdir / "tracin" / "seed1" / breakdown.FILE).exists():
        script.main(["--workdir", str(workdir), "--quiet"])
    out = tmp_path / "report"
    assert report.main(["--workdir", str(workdir), "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    section = text.split("## Validation plan ADE by scenario type (mean over seeds)")[1]
    header = section.strip().splitlines()[0]
    assert "(route following)" in header and "tracin (n=1)" in header
    assert "## Validation plan ADE by city (mean over seeds)" in text
    assert "(cv neighbours)" in text
