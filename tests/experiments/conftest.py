"""Shared fixtures of the experiment tests: one tiny workdir (tiny preset, 2 epochs) per session,
built in-process with the run pipeline (`experiments.stages`) and only as far as the tests ask.

- `tiny_scored`: data, the reference run (every epoch checkpointed) and the default score file.
- `tiny_workdir`: the same folder plus finished `tracin` and `uniform` seed-1 runs.

Both return the workdir's Path; run.py caches every stage, so a test that needs more (another
method) calls `tiny_runs.run_method(workdir, ...)` on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_runs import run_method, tiny_config

from experiments import stages
from experiments.layout import Layout
from valuation import grads

# Unoptimised XLA backend for the valuation kernels: ~2.5x faster compiles, same numerics.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@contextlib.contextmanager
def fast_compile() -> Iterator[None]:
    """Valuation kernels compiled inside the block use FAST_COMPILE."""
    grads.set_compiler_options(FAST_COMPILE)
    try:
        yield
    finally:
        grads.set_compiler_options(None)


@pytest.fixture(scope="session")
def tiny_scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny workdir with its reference run and score file (no curriculum runs)."""
    from gf_jax.data import store

    root = tmp_path_factory.mktemp("tiny_workdir")
    cfg = tiny_config("tracin")
    preset = stages.resolve_preset(cfg)
    layout = Layout(root)
    splits = store.load_splits(preset.data, root=layout.data)
    with fast_compile():
        stages.scores_for(cfg, preset, splits, layout, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_workdir(tiny_scored: Path) -> Path:
    """`tiny_scored` plus finished tracin and uniform runs with seed 1."""
    for method in ("tracin", "uniform"):
        run_method(tiny_scored, method, seed=1)
    return tiny_scored


@pytest.fixture
def fast_valuation_compile() -> Iterator[None]:
    """Use with `pytest.mark.usefixtures`: the test's valuation kernels compile with
    FAST_COMPILE."""
    with fast_compile():
        yield
