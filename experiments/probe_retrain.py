"""Does a benchmark retrain learn? One random subset of the attribution benchmark, trained under
a schedule of your choosing, with its validation plan ADE after every epoch.

    python experiments/probe_retrain.py --subset 1 --seed 1 --epochs 24 --milestones 18,20,22
    python experiments/probe_retrain.py --subset 1 --seed 1 --epochs 24 --milestones 18,20,22 \
        --lr 2e-3 --warmup 128

The probes behind the `attribution` preset's schedule (its comment in `gf_jax/config.py`) were
made with it: subset r is the benchmark's (seed 0, half of the training set), the run is
`gf_jax.train.fit` with the preset's model and data and only the given schedule overridden.
Each run's metrics.jsonl (one line per epoch), config.json and result.json go to --workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from experiments import options
from experiments.attribution import subsets
from experiments.attribution.benchmark import resolve_preset
from experiments.attribution.config import AttributionConfig
from gf_jax import cli, runtime, train
from gf_jax.config import Preset, scale_milestones
from gf_jax.data import store


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/probe_retrain.py", __doc__)
    p.add_argument("--preset", default="attribution", help="gf_jax preset (default attribution)")
    p.add_argument("--subset", type=options.non_negative_int, default=0, help="subset index")
    p.add_argument("--seed", type=options.non_negative_int, default=0, help="training seed")
    p.add_argument("--epochs", type=options.positive_int, default=None, help="default: preset")
    p.add_argument("--milestones", type=str, default=None, help="e.g. 18,20,22 (x0.5 each)")
    p.add_argument("--lr", type=options.positive_float, default=None, help="default: preset")
    p.add_argument("--warmup", type=options.non_negative_int, default=None, help="warm-up steps")
    p.add_argument("--scratch", default="runs/attribution", help="where the data is cached")
    p.add_argument("--workdir", default="runs/probe_retrain", help="one folder per probe")
    return p


def scheduled(preset: Preset, args: argparse.Namespace) -> Preset:
    """`preset` with the flags given replacing its training schedule."""
    changes = {"seed": args.seed}
    for field, value in (("epochs", args.epochs), ("learning_rate", args.lr)):
        if value is not None:
            changes[field] = value
    if args.warmup is not None:
        changes["warmup_steps"] = args.warmup
    if args.milestones is not None:
        changes["lr_milestones"] = tuple(int(m) for m in args.milestones.split(",") if m)
    elif args.epochs is not None:  # as the benchmark does: the milestones move with the epochs
        t = preset.train
        changes["lr_milestones"] = scale_milestones(t.lr_milestones, t.epochs, args.epochs)
    return dataclasses.replace(preset, train=dataclasses.replace(preset.train, **changes))


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = AttributionConfig(preset=args.preset)
    preset = scheduled(resolve_preset(cfg), args).validate()
    splits = store.load_splits(preset.data, root=Path(args.scratch) / "data")
    n = len(splits["train"])
    mask_N = subsets.subset_mask(n, cfg.subset_fraction, cfg.seed, args.subset)
    t = preset.train
    milestones = "_".join(map(str, t.lr_milestones))
    name = f"s{args.subset}-seed{args.seed}-lr{t.learning_rate:g}-w{t.warmup_steps}"
    name += f"-e{t.epochs}-m{milestones}"
    fitted = train.fit(
        preset, splits["train"], splits["val"], splits["test"],
        workdir=Path(args.workdir) / name, sampling=np.flatnonzero(mask_N), overwrite=True,
    )  # fmt: skip
    r = fitted.result
    print(json.dumps({"probe": name, "steps": r["steps"], "val_plan_ade": r["plan_ade"],
                      "test_plan_ade": r.get("test", {}).get("plan_ade")}))  # fmt: skip
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
