"""End-to-end check of the scores on the synthetic world with injected label noise.

    python experiments/valuation_check.py [--preset tiny] [--n-train 384] [--n-val 96]
        [--noise 0.1] [--epochs 30] [--lr 1e-3] [--seed 0] [--workdir runs/valuation_check]
        [--out runs/valuation_check/result.json]

Trains a reference run (uniform, every epoch checkpointed with its learning rate), scores the
training set with TracIn (all checkpoints and best only, eval and dropout on), self-influence,
metadata (weighted, mean), loss, hybrid, random and LiSSA influence, and reports how well each
score detects the `corrupted` scenarios: AUROC with a LOW score predicting corruption (TracIn's
harmful end), and the opposite orientation for scores where high means suspect (loss,
self-influence). Also the Spearman matrix of the scores and LiSSA's agreement across repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from experiments import benchlib
from gf_jax import atomic, train
from gf_jax.config import get_preset
from gf_jax.data import synthetic
from valuation import gameformer, lissa, scores

HIGH_IS_SUSPECT = ("loss", "self_influence")


def reference_run(args: argparse.Namespace):
    preset = get_preset(args.preset)
    t = preset.train
    if args.epochs is not None:
        ms = tuple(sorted({max(1, round(m * args.epochs / t.epochs)) for m in t.lr_milestones}))
        t = dataclasses.replace(t, epochs=args.epochs, lr_milestones=ms)
    if args.lr is not None:
        t = dataclasses.replace(t, learning_rate=args.lr)
    preset = dataclasses.replace(preset, train=dataclasses.replace(t, seed=args.seed)).validate()
    tr = synthetic.generate(args.n_train, seed=1000 + args.seed, noise_fraction=args.noise)
    va = synthetic.generate(args.n_val, seed=2000 + args.seed)
    workdir = Path(args.workdir) / "reference"
    t0 = time.perf_counter()
    fit = train.fit(
        preset,
        tr,
        va,
        workdir=workdir,
        keep_all_checkpoints=True,
        overwrite=True,
        resume=False,
        progress=not args.quiet,
    )
    return preset, tr, va, workdir, time.perf_counter() - t0, fit.result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--n-train", type=int, default=384)
    p.add_argument("--n-val", type=int, default=96)
    p.add_argument("--noise", type=float, default=0.1, help="fraction of corrupted train futures")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=None, help="default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--lissa-depth", type=int, default=100)
    p.add_argument("--lissa-repeats", type=int, default=3)
    p.add_argument("--lissa-batch", type=int, default=32)
    p.add_argument("--lissa-scale", type=float, default=None, help="default: from lambda_max")
    p.add_argument("--lissa-damping", type=float, default=None, help="default: 0.01 lambda_max")
    p.add_argument("--workdir", default="runs/valuation_check")
    p.add_argument("--out", default=None, help="default: WORKDIR/result.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    preset, tr, va, workdir, train_s, fit_result = reference_run(args)
    corrupted = np.asarray(tr.meta["corrupted"], bool)
    common = dict(chunk_size=args.chunk, mode="jvp")
    named, desc = gameformer.compute_scores(
        preset,
        tr,
        va,
        workdir,
        which=("tracin", "self_influence", "metadata", "metadata_mean", "loss", "hybrid", "random"),
        **common,
    )
    seconds = dict(desc["seconds"])
    variants = {
        "tracin_best": dict(checkpoints="best"),
        "tracin_dropout": dict(scoring_dropout=True),
    }
    for name, opts in variants.items():
        extra, d = gameformer.compute_scores(
            preset, tr, va, workdir, which=("tracin",), **common, **opts
        )
        named[name], seconds[name] = extra["tracin"], d["seconds"]["tracin"]

    try:
        extra, d = gameformer.auto_lissa_scores(
            preset,
            tr,
            va,
            workdir,
            depth=args.lissa_depth,
            repeats=args.lissa_repeats,
            batch_size=args.lissa_batch,
            damping=args.lissa_damping,
            scale=args.lissa_scale,
            chunk_size=args.chunk,
        )
        named["lissa"], seconds["lissa"] = extra["lissa"], d["seconds"]["lissa"]
        lissa_info = d["lissa"]
    except lissa.LissaDivergenceError as e:
        print(f"LiSSA diverged: {e}")
        lissa_info = {"diverged": True}

    rows = []
    for name, s in named.items():
        low = scores.auroc(s, corrupted, low_is_positive=True)
        rows.append(
            {
                "score": name,
                "auroc_low_is_corrupted": low,
                "auroc_suspect_end": 1.0 - low if name in HIGH_IS_SUSPECT else low,
                "mean_corrupted": float(s[corrupted].mean()),
                "mean_clean": float(s[~corrupted].mean()),
                "seconds": seconds.get(name, float("nan")),
            }
        )
    names, rho = scores.spearman_matrix(named)
    print(
        benchlib.table(
            rows,
            [
                "score",
                "auroc_low_is_corrupted",
                "auroc_suspect_end",
                "mean_corrupted",
                "mean_clean",
                "seconds",
            ],
        )
    )
    if "lissa" in named:
        print(
            f"LiSSA: Spearman vs TracIn {scores.spearman(named['lissa'], named['tracin']):.3f}, "
            f"mean Spearman between repeats {lissa_info.get('repeat_spearman', float('nan')):.3f}"
        )
    record = {
        "config": vars(args),
        "n_corrupted": int(corrupted.sum()),
        "train_seconds": train_s,
        "reference": {k: fit_result[k] for k in ("best_epoch", "plan_ade", "plan_fde")},
        "rows": rows,
        "spearman": {"names": names, "matrix": rho.tolist()},
        "lissa": lissa_info,
        "machine": benchlib.machine(),
        "backend": jax.default_backend(),
    }
    out = Path(args.out) if args.out else Path(args.workdir) / "result.json"
    atomic.write_json(out, record)
    scores.save_scores(Path(args.workdir) / "scores.npz", named, record, tokens=tr.meta["token"])
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
