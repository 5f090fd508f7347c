"""experiments/tracin_subsets.py on the tiny workdir: per-checkpoint terms sum to the TracIn file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import tracin_subsets
from experiments.layout import Layout
from experiments.reporting import loading


def test_subset_names_end_at_the_last_checkpoint():
    s = tracin_subsets.subsets(10)
    assert s["all"] == list(range(10))
    assert s["every3"] == [0, 3, 6, 9] and s["every4"] == [1, 5, 9] and s["last2"] == [8, 9]
    assert set(tracin_subsets.subsets(2)) == {"all", "last1"}


def test_terms_sum_to_tracin_and_all_ranks_like_all(tiny_scored, tmp_path):
    out = tmp_path / "subsets"
    assert tracin_subsets.main(["--workdir", str(tiny_scored), "--out", str(out)]) == 0
    record = json.loads((out / "subsets.json").read_text())
    rows = {r["subset"]: r for r in record["rows"]}
    assert rows["all"]["spearman vs all"] == pytest.approx(1.0)
    assert rows["all"]["top-quartile overlap"] == 1.0
    assert -1 <= rows["last1"]["spearman vs all"] <= 1
    assert rows["last1"]["cost / training run"] == pytest.approx(
        rows["all"]["cost / training run"] / 2
    )
    layout = Layout(tiny_scored)
    preset = loading.run_preset(layout.reference())
    named, _ = loading.load_scores(layout, preset)
    terms, _, _ = tracin_subsets.per_checkpoint_terms(layout.reference(), 32)
    scale = np.max(np.abs(named["tracin"]))
    np.testing.assert_allclose(terms.sum(0), named["tracin"], rtol=0, atol=1e-5 * scale)


def test_reference_checkpoint_subsets_load_the_named_epochs(tiny_scored):
    from valuation import gameformer

    reference = Layout(tiny_scored).reference()
    _, every = gameformer.load_checkpoints(reference, "every2")
    _, last = gameformer.load_checkpoints(reference, "last1")
    _, everything = gameformer.load_checkpoints(reference, "all")
    assert [c["epoch"] for c in everything] == [0, 1]
    assert [c["epoch"] for c in every] == [c["epoch"] for c in last] == [1]
