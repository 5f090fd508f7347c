"""report.py rebuilds a report from a committed workdir's small files alone (result.json,
metrics.jsonl, config.json, score files; no checkpoints, no data), as it does for
`docs/results-cpu/`. The sample (tests/experiments/report_sample/) is a tiny-preset sweep: uniform,
metadata and TracIn with seeds 1 and 2 at 2 epochs, and its reference run."""

from __future__ import annotations

import shutil
from pathlib import Path

from experiments import report

SAMPLE = Path(__file__).parent / "report_sample"


def test_report_from_committed_small_files(tmp_path):
    workdir = tmp_path / "results"
    shutil.copytree(SAMPLE, workdir)  # the report rebuilds the data next to the runs
    out = tmp_path / "report"
    assert report.main(["--workdir", str(workdir), "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    assert "6 finished runs in 3 configurations" in text
    for row in ("| uniform | 2 |", "| metadata | 2 |", "| tracin | 2 |", "| (route following) |"):
        assert row in text, row
    for heading in ("Spearman rho", "injected label noise", "by scenario type", "Figures"):
        assert heading in text, heading
    for fig in ("training_race.png", "spearman.png", "tracin_distribution.png"):
        assert (out / "figures" / fig).stat().st_size > 0, fig
    # Only the figure that needs trained parameters is missing, and the report says why.
    assert "checkpoints" in text.split("## Notes")[1]
    assert sorted(p.name for p in (workdir / "uniform" / "seed1").iterdir()) == [
        "config.json", "metrics.jsonl", "result.json",
    ]  # fmt: skip
