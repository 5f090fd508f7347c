"""Learning curves: validation plan and prediction ADE against optimizer steps.

    python experiments/learning_curve.py                      # every setting, resumable
    python experiments/learning_curve.py --only 'n2048*'      # a subset
    python experiments/learning_curve.py --collect            # JSON + figure from finished runs

Each setting trains the `cpu` model (uniform sampling, seed 1) on `n_train` scenarios of the
procedural world for a fixed budget of optimizer steps, evaluating on the same 256 validation
scenarios after every epoch. The curves are the evidence for the `cpu` preset's size and schedule:
where the model leaves the loss plateau, where it beats the non-learned baselines, and how long that
takes. Runs live in `WORKDIR/learning_curve/<setting>/` and resume when started again.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys

from experiments import curves
from gf_jax import cli, runtime


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/learning_curve.py", __doc__)
    p.add_argument(
        "--workdir", default="runs", help="runs/ root (curves in WORKDIR/learning_curve)"
    )
    p.add_argument("--only", nargs="+", default=None, help="setting name patterns (glob)")
    p.add_argument("--collect", action="store_true", help="only gather finished runs")
    p.add_argument(
        "--out", default=None, help="JSON + figure folder (default WORKDIR/learning_curve)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = curves.SETTINGS
    if args.only:
        settings = [s for s in settings if any(fnmatch.fnmatch(s.name, q) for q in args.only)]
    if not settings:
        names = ", ".join(s.name for s in curves.SETTINGS)
        raise cli.UsageError(f"--only: matches no setting (the settings: {names})")
    if not args.collect:
        for s in settings:
            curves.train_setting(s, args.workdir, progress=not args.quiet)
    out = curves.collect(settings, args.workdir, args.out)
    print(out)
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
