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

from experiments.claims import config, document
from gf_jax import runtime


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/theory.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", default="runs", help="a workdir with a finished reference run")
    p.add_argument("--out", default=None, help="default: WORKDIR/report/theory")
    p.add_argument("--data", default=None, help="the sweep's --data, if it had one")
    p.add_argument("--reference", default=None, help="reference run folder (default: the data's)")
    p.add_argument("--n-batches", type=int, default=64, help="mini-batches per sampling")
    p.add_argument("--batch-size", type=int, default=16, help="examples per mini-batch")
    p.add_argument("--seed", type=int, default=0, help="seeds batch draws and simulations")
    p.add_argument(
        "--epochs",
        default="auto",
        help="0-based reference checkpoints for (a): auto (about 4 plus the final), all, or 0,5,11",
    )
    p.add_argument("--select", type=float, default=0.2, help="hard selection fraction")
    p.add_argument("--chunk", type=int, default=32, help="examples per per-example-gradient call")
    p.add_argument(
        "--max-examples", type=int, default=None, help="measure (a) on a random training subset"
    )
    p.add_argument("--max-gram-gb", type=float, default=4.0, help="memory cap of (a)'s gradients")
    p.add_argument("--sim-sizes", default="50,200,1000,5000", help="N of the (b) simulation")
    p.add_argument("--sim-trials", type=int, default=200, help="repeats per N in (b)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = config.from_args(args)
        document.run(cfg)
    except (FileNotFoundError, ValueError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {Path(cfg.out) / 'THEORY.md'}")
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
