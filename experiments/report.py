"""Tables, statistics, figures and animations from the finished runs of a workdir.

    python experiments/report.py [--workdir runs] [--out runs/report] [--data SRC]

Writes `OUT/REPORT.md` with
  - the paper's table on validation (best epoch) and on test (at the best-validation epoch): plan
    ADE/FDE/AHE mean ± SD (ddof 0), CV of ADE, and TracIn's paired t-test p and Cohen's d_z
    against every other method (paired by seed), with the non-learned baselines as reference rows;
  - every configuration of the sweep (ablations included) against uniform;
  - the Spearman matrix of the five scores, the AUROC of each score for detecting the injected
    corrupted scenarios, and mean score percentiles by scenario type and by city;
and every figure (PNG) and animation (GIF) of the paper next to it. Missing pieces (a method not
yet run, no LiSSA scores, an unreadable result) are skipped with a note, so a partial sweep
already gives a report. The library is `experiments.reporting`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.layout import Layout
from experiments.reporting.document import build_report
from gf_jax import cli
from gf_jax.data.schema import DataError


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/report.py", __doc__)
    p.add_argument("--workdir", default="runs", help="the sweep's workdir")
    p.add_argument("--out", default=None, help="default: WORKDIR/report")
    p.add_argument("--data", default=None, help="the sweep's --data, if it had one")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    """Exit 0 (broken runs are skipped with a warning naming their file), 1 (no such workdir, or
    the report could not be written: nothing is left half written), 2 (a bad option)."""
    args = parser().parse_args(argv)
    layout = Layout(Path(args.workdir))
    if not layout.root.is_dir():
        raise DataError(f"{layout.root}: no such workdir (--workdir)")
    out = Path(args.out) if args.out else layout.report
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: not a folder (--out)")
    path = build_report(layout, out, args.data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
