"""run.py in-process on the tiny preset at 2 epochs (shared by the experiment tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TINY = ["--preset", "tiny", "--epochs", "2", "--quiet"]


def run_method(workdir: Path, *argv: str) -> dict:
    """`python experiments/run.py ARGV --preset tiny --epochs 2` in this process; the result."""
    from experiments import run as run_lib

    return run_lib.run(run_lib.parser().parse_args([*argv, *TINY, "--workdir", str(workdir)]))
