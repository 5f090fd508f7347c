"""Shared fixtures of the experiment tests: one tiny workdir (tiny preset, 2 epochs) per session,
built in-process with the run pipeline (`experiments.stages`) and only as far as the tests ask.

- `tiny_scored`: data, the reference run (every epoch checkpointed) and the default score file.
- `tiny_workdir`: the same folder plus finished `tracin` and `uniform` seed-1 runs.

Both return the workdir's Path; run.py caches every stage, so a test that needs more (another
method) calls `tiny_runs.run_method(workdir, ...)` on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import run_method, tiny_config

from experiments import stages
from experiments.layout import Layout


@pytest.fixture(scope="session")
def tiny_scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny workdir with its reference run and score file (no curriculum runs)."""
    from gf_jax.data import store

    root = tmp_path_factory.mktemp("tiny_workdir")
    cfg = tiny_config("tracin")
    preset = stages.resolve_preset(cfg)
    layout = Layout(root)
    splits = store.load_splits(preset.data, root=layout.data)
    stages.scores_for(cfg, preset, splits, layout, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_workdir(tiny_scored: Path) -> Path:
    """`tiny_scored` plus finished tracin and uniform runs with seed 1."""
    for method in ("tracin", "uniform"):
        run_method(tiny_scored, method, seed=1)
    return tiny_scored
