"""The run pipeline in-process on the tiny preset at 2 epochs (shared by the experiment tests)."""

from __future__ import annotations

from pathlib import Path

from experiments import stages
from experiments.layout import Layout
from experiments.runconfig import RunConfig

TINY = {"preset": "tiny", "epochs": 2}


def tiny_config(method: str, **fields) -> RunConfig:
    """A RunConfig of `method` on the tiny preset at 2 epochs."""
    return RunConfig(method=method, **TINY, **fields)


def run_method(workdir: Path, method: str, **fields) -> dict:
    """`python experiments/run.py --method METHOD --preset tiny --epochs 2` in this process."""
    return stages.run(tiny_config(method, **fields), Layout(workdir), progress=False)
