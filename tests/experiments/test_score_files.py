"""A score file that no longer fits the training set or the scoring recipe is never used silently:
the scores stage names the file and the problem, then recomputes it (or, with
`refuse_stale_scores`, stops with a RunError); an intact file stays a cache hit."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_config

from experiments import scoring, stages
from experiments.layout import REFERENCE_SEED, Layout
from gf_jax.data import store
from valuation import scores


def _setup(tiny_scored: Path, tmp_path: Path) -> tuple:
    """A private copy of the shared workdir: (cfg, preset, splits, layout, score path)."""
    root = tmp_path / "work"
    shutil.copytree(tiny_scored, root)
    cfg = tiny_config("tracin")
    preset = stages.resolve_preset(cfg)
    layout = Layout(root)
    splits = store.load_splits(preset.data, root=layout.data)
    path, _ = scoring.score_file(cfg, preset, layout)
    assert path.exists()
    return cfg, preset, splits, layout, path


def _rewrite(path: Path, change: Callable[[dict, np.ndarray], np.ndarray]) -> None:
    """Rewrites the score file with `change(scores, tokens)` -> new tokens (scores edited in place)."""
    named, desc = scores.load_scores(path)
    tokens = named.pop("token")
    tokens = change(named, tokens)
    scores.save_scores(path, named, desc, tokens=tokens)


def _permute(named: dict, tokens: np.ndarray) -> np.ndarray:
    return np.roll(tokens, 1)


def _shorten(named: dict, tokens: np.ndarray) -> np.ndarray:
    for k in named:
        named[k] = named[k][:-1]
    return tokens


def _nan(named: dict, tokens: np.ndarray) -> np.ndarray:
    named["tracin"] = named["tracin"].copy()
    named["tracin"][3] = np.nan
    return tokens


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


STALE = {
    "permuted tokens": (
        lambda p: _rewrite(p, _permute),
        r"tokens do not match the training set \(\d+ of \d+ differ\)",
    ),
    "wrong length": (lambda p: _rewrite(p, _shorten), r"score \w+ has shape \(\d+,\)"),
    "non-finite score": (lambda p: _rewrite(p, _nan), "score tracin has 1 non-finite values"),
    "truncated file": (_truncate, "unreadable score file"),
}


@pytest.mark.parametrize("case", sorted(STALE))
def test_a_stale_score_file_is_named_and_recomputed(case, tiny_scored, tmp_path, capsys):
    cfg, preset, splits, layout, path = _setup(tiny_scored, tmp_path)
    damage, problem = STALE[case]
    damage(path)
    named, _, got_path = stages.scores_for(cfg, preset, splits, layout, progress=False)
    out = capsys.readouterr().out
    assert re.search(re.escape(f"scores: {path}: ") + problem + r".*; recomputing\n", out)
    assert got_path == path
    tokens = splits["train"].meta["token"]
    back, _ = scores.load_scores(path)
    np.testing.assert_array_equal(back["token"], np.asarray(tokens, str))
    assert all(len(named[k]) == len(tokens) for k in scoring.BASE_SCORES)
    assert np.isfinite(named["tracin"]).all()


def test_refuse_stale_scores_raises_and_recomputes_nothing(tiny_scored, tmp_path):
    cfg, preset, splits, layout, path = _setup(tiny_scored, tmp_path)
    _rewrite(path, _permute)
    before = path.read_bytes()
    with pytest.raises(stages.RunError, match="tokens do not match") as err:
        stages.scores_for(cfg, preset, splits, layout, progress=False, refuse_stale_scores=True)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before


def test_an_intact_score_file_is_a_cache_hit(tiny_scored, tmp_path, capsys):
    cfg, preset, splits, layout, path = _setup(tiny_scored, tmp_path)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    named, desc, _ = stages.scores_for(
        cfg, preset, splits, layout, progress=False, refuse_stale_scores=True
    )
    assert f"scores: cache hit at {path}" in capsys.readouterr().out
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert desc["recipe"] == scoring.recipe(cfg, preset, stages.resolve_preset(cfg, seed=0))
    assert len(named["tracin"]) == len(splits["train"])


def test_another_recipe_or_none_is_stale():
    tokens = np.array(["a", "b"])
    named = {"token": tokens, **{k: np.zeros(2) for k in scoring.BASE_SCORES}}
    fits = scoring.stale(named, {"recipe": "r1"}, tokens, "r1", scoring.BASE_SCORES)
    assert fits is None
    other = scoring.stale(named, {"recipe": "r0"}, tokens, "r1", scoring.BASE_SCORES)
    assert other == "scoring recipe r0 is not this run's r1"
    legacy = scoring.stale(named, {}, tokens, "r1", scoring.BASE_SCORES)
    assert legacy == "scoring recipe none recorded is not this run's r1"
    missing = scoring.stale({"token": tokens}, {"recipe": "r1"}, tokens, "r1", ("tracin",))
    assert missing == "lacks the scores tracin"


def test_the_recipe_follows_the_reference_training_settings():
    cfg = tiny_config("tracin")
    preset = stages.resolve_preset(cfg)
    reference = stages.resolve_preset(cfg, seed=REFERENCE_SEED)
    other_lr = dataclasses.replace(reference.train, learning_rate=1.0)
    other = dataclasses.replace(reference, train=other_lr)
    assert scoring.recipe(cfg, preset, other) != scoring.recipe(cfg, preset, reference)


def test_unreadable_files_raise_one_line_naming_them(tmp_path):
    path = scores.save_scores(tmp_path / "s.npz", {"a": np.arange(4.0)}, {}, tokens=list("abcd"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(scores.ScoreFileError, match=f"^{path}: unreadable score file"):
        scores.load_scores(path)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(scores.ScoreFileError, match="pickled objects, which are refused"):
        scores.load_scores(pickled)


def test_small_files_without_checkpoints_need_no_reference_until_scores_are_missing(
    tiny_scored, tmp_path, capsys
):
    cfg, preset, splits, layout, path = _setup(tiny_scored, tmp_path)
    reference = layout.reference()
    shutil.rmtree(reference / "checkpoints")  # as committed: result.json and logs only
    stages.scores_for(cfg, preset, splits, layout, progress=False)
    assert "scores: cache hit" in capsys.readouterr().out
    assert not (reference / "checkpoints").exists()  # the valid file needed no reference
    path.unlink()
    named, _, _ = stages.scores_for(cfg, preset, splits, layout, progress=False)
    out = capsys.readouterr().out
    assert f"reference: {reference} holds a finished run without checkpoints; retraining" in out
    assert (reference / "checkpoints" / "epoch_001").is_dir() and path.exists()
    assert len(named["tracin"]) == len(splits["train"])
