"""The attribution benchmark: do the valuation scores predict what retraining does?

    python experiments/attribute.py run                      # hours; resumable; small outputs in
                                                             # docs/results-attribution/
    python experiments/attribute.py run --max-runs 10        # at most 10 retrains this time
    python experiments/attribute.py run --list               # what is done and what is pending
    python experiments/attribute.py run --shard 2/2 --wait   # a second process (or machine)
    python experiments/attribute.py report                   # docs/attribution-cpu.md + figure

`run` trains full-data reference runs, computes every scorer once from them, retrains on random
half-subsets (LDS), repeats a few with a second seed (the noise ceiling) and retrains without
each main scorer's top / bottom / random 5, 10, 20 % (removal curves). Checkpoints and data live
in --scratch; everything the report needs lands in --workdir, from which the same command
resumes (a flag left out takes the value the workdir was run with). `report` rebuilds the
markdown, the removal-curve figure and summary.json from the workdir alone, without training.
The library is `experiments.attribution`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import options
from experiments.attribution import analysis, benchmark, document
from experiments.attribution.config import AttributionConfig
from experiments.attribution.layout import CONFIG, Layout
from gf_jax import cli, runtime

WORKDIR, SCRATCH, REPORT = "docs/results-attribution", "runs/attribution", "docs/attribution-cpu.md"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.05,0.1, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in options.positive_int_list(text).split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


# (flag, config field, type, help); every default is the workdir's saved value, else the config's.
FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--preset", "preset", str, "gf_jax preset (default attribution)"),
    ("--epochs", "epochs", options.positive_int, "override the preset's epochs"),
    ("--retrain-budget", "retrain_budget", str, "steps (a full run's) or epochs per retrain"),
    ("--data", "data", str, "data source (default: the procedural world)"),
    ("--noise", "noise", options.non_negative_float, "corrupted share of training futures"),
    ("--seed", "seed", options.non_negative_int, "every random choice (default 0)"),
    ("--subsets", "subsets", options.at_least(2), "random subsets retrained (default 50)"),
    ("--subset-fraction", "subset_fraction", options.fraction, "subset share (default 0.5)"),
    ("--ceiling-subsets", "ceiling_subsets", options.non_negative_int, "subsets run twice"),
    ("--reference-runs", "reference_runs", options.positive_int, "full-data runs (default 5)"),
    ("--trak-models", "trak_models", _ints, "TRAK ensemble sizes (default 1,5)"),
    ("--scorers", "scorers", _names, "scorers to compute (default: all)"),
    ("--pair-dim", "pair_dim", options.positive_int, "project pair scores (default: exact)"),
    ("--trak-dim", "trak_dim", options.positive_int, "TRAK projection dim (default 512)"),
    ("--removal-fractions", "removal_fractions", _floats, "default 0.05,0.1,0.2"),
    ("--removal-scorers", "removal_scorers", _names, "scorers whose top/bottom are removed"),
    ("--random-removals", "random_removals", options.non_negative_int, "random draws per share"),
    ("--lissa-depth", "lissa_depth", options.positive_int, "LiSSA recursion depth"),
    ("--lissa-repeats", "lissa_repeats", options.positive_int, "LiSSA repeats"),
    ("--lissa-batch", "lissa_batch", options.positive_int, "LiSSA HVP mini-batch"),
    ("--chunk", "chunk_size", options.positive_int, "examples per scoring call"),
    ("--bootstrap", "bootstrap", options.at_least(10), "bootstrap resamples (default 1000)"),
    ("--confidence", "confidence", options.fraction, "interval coverage (default 0.95)"),
    ("--inspect-fraction", "inspect_fraction", options.fraction, "noise inspection share"),
)


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/attribute.py", __doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run", help="train, score and retrain (resumable)")
    run.add_argument("--workdir", default=WORKDIR, help=f"small outputs (default {WORKDIR})")
    run.add_argument("--scratch", default=SCRATCH, help=f"data and checkpoints (default {SCRATCH})")
    for flag, field, kind, text in FLAGS:
        run.add_argument(flag, dest=field, type=kind, default=None, help=text)
    run.add_argument(
        "--keep-checkpoints", action="store_true", default=None, help="keep retrains' checkpoints"
    )
    run.add_argument("--max-runs", type=options.non_negative_int, default=None, help="then stop")
    run.add_argument(
        "--shard", type=options.shard, default=(1, 1), help="I/N: every N-th run from the I-th"
    )
    run.add_argument("--wait", action="store_true", help="wait for other shards' runs it needs")
    run.add_argument("--list", action="store_true", help="show done and pending runs; no work")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    report = sub.add_parser("report", help="the report, from the workdir alone")
    report.add_argument("--workdir", default=WORKDIR, help=f"default {WORKDIR}")
    report.add_argument("--out", default=REPORT, help=f"markdown file (default {REPORT})")
    return p


def config_from(args: argparse.Namespace) -> AttributionConfig:
    """The flags given, else the workdir's saved values, else the defaults."""
    saved_path = Path(args.workdir) / CONFIG
    saved = json.loads(saved_path.read_text())["attribution"] if saved_path.exists() else None
    values = AttributionConfig.from_saved(saved).to_dict() if saved else {}
    for f in dataclasses.fields(AttributionConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return AttributionConfig.from_dict(values)


def list_runs(cfg: AttributionConfig, layout: Layout) -> None:
    """One line per planned run: done or pending (removals once the scores exist). Reads the
    workdir only: nothing is built or written."""
    from experiments.attribution import retrain

    specs = benchmark.reference_specs(cfg)
    if not layout.config.exists():  # not started: its data size is known once prepared
        for spec in specs:
            print(f"pending {spec.name}")
        print(f"0 of {len(specs)} runs done (not started: {layout.root} holds no benchmark; "
              f"then {cfg.subsets} subsets and the removals)")  # fmt: skip
        return
    n = json.loads(layout.config.read_text())["data"]["n_train"]
    if all(layout.score_file(s).exists() for s in cfg.removal_scorers):
        specs += benchmark.retrain_specs(cfg, layout, n)
    done, preset = 0, benchmark.resolve_preset(cfg)
    for spec in specs:
        finished = retrain.finished(layout, spec, n, preset) is not None
        done += finished
        print(f"{'done   ' if finished else 'pending'} {spec.name}")
    print(f"{done} of {len(specs)} runs done")


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.mode == "report":
        summary = analysis.summarize(analysis.load(args.workdir))
        print(f"wrote {document.write(summary, args.out)}")
        return 0
    cfg = config_from(args)  # a ConfigError (exit 2) before any work
    layout = Layout(args.workdir, args.scratch)
    if args.list:
        list_runs(cfg, layout)
        return 0
    counts = benchmark.run(
        cfg,
        layout,
        progress=not args.quiet,
        max_runs=args.max_runs,
        shard=args.shard,
        wait=args.wait,
    )
    print(
        f"retrains: {counts['trained']} trained, {counts['skipped']} already done, "
        f"{counts['pending']} left for the next invocation"
    )
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
