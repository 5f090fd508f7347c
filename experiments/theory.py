"""The paper's three theoretical claims, measured on the trained models of a workdir.

    python experiments/theory.py [--workdir runs] [--out WORKDIR/report/theory] [--data SRC]
                                 [--n-batches 64] [--batch-size 16] [--seed 0]

(a) Alignment. TracIn-weighted sampling should give mini-batch gradients closer in direction to
    the validation gradient g_val than uniform sampling: batch cosines at chosen reference
    checkpoints under uniform sampling, the focus-phase TracIn curricula and hard top-20 %
    selection, exact (per-example gradients, no projection).
(b) Attenuation. Averaging the ranks of an informative score with an independent one divides its
    correlation with the signal by sqrt(2) (Pearson on ranks; 7/10 for Spearman with the hybrid
    re-ranked): simulated over N, and checked on our scores.
(c) Hard selection vs soft weighting. Per epoch: KL divergence from uniform, effective sample
    size, support, the soft mass hard top-20 % selection drops, the mass on corrupted examples.

The reference run is the one `experiments/run.py` trains for `--data` (override: --reference).
Writes OUT/theory.json (with the resolved config), OUT/THEORY.md and PNG figures, atomically.
The library is `experiments.claims`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import options
from experiments.claims import config, document
from gf_jax import cli, runtime
from gf_jax.data.schema import DataError


def checkpoint_spec(text: str) -> str:
    """`--epochs`: auto, all, or 0-based epochs such as 0,5,11 (checked against the run later)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if text in ("auto", "all") or (parts and all(p.isdigit() for p in parts)):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, all or epochs like 0,5,11, got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/theory.py", __doc__)
    p.add_argument("--workdir", default="runs", help="a workdir with a finished reference run")
    p.add_argument("--out", default=None, help="default: WORKDIR/report/theory")
    p.add_argument("--data", default=None, help="the sweep's --data, if it had one")
    p.add_argument("--reference", default=None, help="reference run folder (default: the data's)")
    p.add_argument(
        "--n-batches", type=options.positive_int, default=64, help="mini-batches per sampling"
    )
    p.add_argument(
        "--batch-size", type=options.positive_int, default=16, help="examples per mini-batch"
    )
    p.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="seeds draws and simulations"
    )
    p.add_argument(
        "--epochs",
        type=checkpoint_spec,
        default="auto",
        help="0-based reference checkpoints for (a): auto (about 4 plus the final), all, or 0,5,11",
    )
    p.add_argument("--select", type=options.fraction, default=0.2, help="hard selection fraction")
    p.add_argument(
        "--chunk", type=options.positive_int, default=32, help="examples per gradient call"
    )
    p.add_argument(
        "--max-examples",
        type=options.positive_int,
        default=None,
        help="measure (a) on a random training subset",
    )
    p.add_argument(
        "--max-gram-gb",
        type=options.positive_float,
        default=None,
        help="memory cap of (a)'s gradients (default: half of the available memory)",
    )
    p.add_argument(
        "--sim-sizes",
        type=options.positive_int_list,
        default="50,200,1000,5000",
        help="N of the (b) simulation",
    )
    p.add_argument(
        "--sim-trials", type=options.positive_int, default=200, help="repeats per N in (b)"
    )
    return p


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = config.from_args(args)  # finds the reference run and its checkpoints
    except ValueError as e:  # e.g. --epochs naming checkpoints the run does not have
        raise DataError(str(e)) from None
    document.run(cfg)
    print(f"wrote {Path(cfg.out) / 'THEORY.md'}")
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
