"""Metrics by scenario type and city for every finished run that still has its best checkpoint.

    python experiments/breakdown.py [--workdir runs] [--overwrite] [--quiet]

Writes `breakdown.json` beside each run's `result.json` (val and test plan/prediction ADE per
scenario type and per city, from the best-validation checkpoint); `report.py` turns them into
tables with the methods side by side. Runs that already have one are skipped unless
`--overwrite`; runs without checkpoints (a fresh clone of committed results) cannot be broken
down and are not listed. The library is `experiments.reporting.breakdown`.
"""

from __future__ import annotations

import argparse
import sys

from tqdm.auto import tqdm

from experiments.layout import Layout
from experiments.reporting import breakdown
from gf_jax import cli, runtime
from gf_jax.config import Preset
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/breakdown.py", __doc__)
    p.add_argument("--workdir", default="runs", help="the runs' root (as run.py's --workdir)")
    p.add_argument("--overwrite", action="store_true", help="redo runs that have one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    layout = Layout(args.workdir)
    folders = list(breakdown.pending(layout, overwrite=args.overwrite))
    cache: dict[str, dict[str, ScenarioSet]] = {}

    def splits_for(preset: Preset) -> dict[str, ScenarioSet]:
        key = repr(preset.data)  # frozen dataclass: the world and its sizes
        if key not in cache:
            cache[key] = {
                s: store.load_split(preset.data, s, root=layout.data, progress=False)
                for s in breakdown.SPLITS
            }
        return cache[key]

    for run_dir in tqdm(folders, desc="breakdown", unit="run", disable=args.quiet):
        breakdown.write(run_dir, splits_for)
    print(f"breakdown: wrote {len(folders)} run(s) under {layout.root}")
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
