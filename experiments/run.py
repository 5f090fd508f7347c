"""One method, one seed: data -> reference run -> scores -> curriculum training -> result.json.

    python experiments/run.py --method tracin --seed 1
    python experiments/run.py --method metadata --seed 2 --preset tiny --workdir runs/tiny
    python experiments/run.py --method tracin --seed 1 --select 0.2          # hard top-20 %
    python experiments/run.py --method tracin --seed 1 --curriculum code     # released sampler

Stages (each cached in the workdir; cache hits are reported):
  1. data       `WORKDIR/data/<split>-<hash>`: the preset's splits, built once, memory-mapped.
  2. reference  `WORKDIR/reference/seed0`: uniform training, seed 0, every epoch checkpointed
                with its learning rate (only for methods whose scores need a trained model).
  3. scores     `WORKDIR/scores/<name>.npz`: TracIn, metadata, loss, hybrid, random (one file
                per scoring option set), LiSSA in its own file.
  4. training   `WORKDIR/<run name>/seed<S>`: the curriculum (or hard selection) from those
                scores; `result.json` holds the best-validation-epoch metrics, test metrics at
                that epoch, the per-epoch history and the resolved config.
A run that was interrupted resumes from its last checkpoint when started again. The summary at
the end puts the run beside uniform training and the non-learned baselines.
"""

from __future__ import annotations

import argparse
import sys

from curriculum import sampler, schedule
from experiments import stages, summary
from experiments.layout import Layout
from experiments.runconfig import METHODS, RunConfig
from gf_jax import cli, runtime
from gf_jax import config as gf_config


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/run.py", __doc__)
    p.add_argument("--method", required=True, choices=METHODS, help="which score drives training")
    p.add_argument("--seed", type=int, default=1, help="training seed (init, sampling, dropout)")
    p.add_argument("--preset", default=None, help="paper | cpu | tiny (default: paper on GPU)")
    p.add_argument("--data", default=None, help="synthetic, npz:DIR, nuplan:DB,MAPS, real-samples")
    p.add_argument("--workdir", default="runs", help="where data, reference, scores, runs live")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--noise", type=float, default=None, help="label-noise fraction (preset: 0.05)")
    p.add_argument("--name", default=None, help="run folder name (default: method + variants)")
    g = p.add_argument_group("curriculum")
    g.add_argument(
        "--curriculum",
        default="paper",
        choices=schedule.MODES,
        help="paper: 1-3 uniform, 4-8 ramp, 9-20 quartiles; code: released sampler",
    )
    g.add_argument(
        "--quartile-weights",
        default="2,1,0.5,0.25",
        help="paper-mode weights of Q4,Q3,Q2,Q1 (top first; Q3/Q2 are our assumption)",
    )
    g.add_argument(
        "--select",
        type=float,
        default=None,
        help="hard selection: keep this fraction (e.g. 0.2) and train uniformly on it",
    )
    g.add_argument(
        "--select-from",
        default="top",
        choices=sampler.SELECTIONS,
        help="which end of the score --select keeps (random ignores the score)",
    )
    s = p.add_argument_group("scoring")
    s.add_argument(
        "--metadata", default="weighted", choices=("weighted", "mean"), help="metadata composite"
    )
    s.add_argument(
        "--tracin-sign",
        type=int,
        default=1,
        choices=(1, -1),
        help="+1: positive = helpful (Pruthi); -1: the released code's sign",
    )
    s.add_argument(
        "--tracin-checkpoints",
        default="all",
        help="all | best (released code) | everyJ | lastN: the reference checkpoints TracIn "
        "sums over, weighted by their learning rates",
    )
    s.add_argument(
        "--scoring-dropout", action="store_true", help="dropout on while scoring (released code)"
    )
    s.add_argument("--tracin-mode", default="jvp", choices=("jvp", "vmap", "loop"))
    s.add_argument("--chunk", type=int, default=32, help="examples per jitted scoring call")
    s.add_argument("--lissa-depth", type=int, default=50, help="LiSSA recursion depth")
    s.add_argument("--lissa-repeats", type=int, default=2, help="independent LiSSA repeats")
    s.add_argument("--lissa-batch", type=int, default=16, help="examples per HVP mini-batch")
    o = p.add_argument_group("output")
    o.add_argument("--overwrite", action="store_true", help="replace a finished run of this name")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    o.add_argument(
        "--refuse-stale-scores",
        action="store_true",
        help="stop with an error, instead of recomputing, when the score file is unreadable or "
        "no longer matches the training set or scoring recipe",
    )
    return p  # fmt: skip


def config_from(args: argparse.Namespace) -> RunConfig:
    """The run's configuration; the default preset is chosen by backend (and said)."""
    preset = args.preset or gf_config.default_preset_name(verbose=True)
    return RunConfig.from_args(args, preset=preset)


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    """Exit 0, 1 (data, training or a workdir conflict: one line) or 2 (a bad option, refused
    before any data is built: one line naming the flag)."""
    args = parser().parse_args(argv)
    cfg = config_from(args)  # a ConfigError (exit 2) before any work
    layout = Layout(args.workdir)
    result = stages.run(
        cfg,
        layout,
        overwrite=args.overwrite,
        progress=not args.quiet,
        refuse_stale_scores=args.refuse_stale_scores,
    )
    print(summary.table(result, layout, stages.resolve_preset(cfg)))
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
