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
A run that was interrupted resumes from its last checkpoint when started again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from curriculum import sampler, schedule
from experiments import stats
from gf_jax import atomic, train
from gf_jax.config import Preset, to_dict
from gf_jax.data import store
from gf_jax.data.schema import ScenarioSet

METHODS = ("uniform", "metadata", "tracin", "hybrid", "loss", "lissa", "random")
NEEDS_REFERENCE = ("tracin", "hybrid", "loss", "lissa")
REFERENCE_SEED = 0
BASE_SCORES = ("tracin", "metadata", "metadata_mean", "loss", "hybrid", "random")


class RunError(RuntimeError):
    """A run cannot proceed (conflicting workdir contents, bad options)."""


# ----------------------------------------------------------------------------- arguments


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, choices=METHODS, help="which score drives training")
    p.add_argument("--seed", type=int, default=1, help="training seed (init, sampling, dropout)")
    p.add_argument(
        "--preset", default=None, help="paper | cpu | tiny (default: paper with a GPU, else cpu)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="synthetic (default), npz:DIR, nuplan:DB_DIR,MAPS_DIR or real-samples",
    )
    p.add_argument("--workdir", default="runs", help="where data, reference, scores, runs live")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        help="fraction of training scenarios with injected label noise (preset: 0.05)",
    )
    p.add_argument("--name", default=None, help="run folder name (default: method + variants)")
    g = p.add_argument_group("curriculum")
    g.add_argument(
        "--curriculum",
        default="paper",
        choices=schedule.MODES,
        help="paper: 1-3 uniform, 4-8 ramp, 9-20 quartile weights; code: the released sampler",
    )
    g.add_argument(
        "--quartile-weights",
        default="2,1,0.5,0.25",
        help="paper mode weights of quartiles Q4,Q3,Q2,Q1 (top first; Q3/Q2 are our assumption)",
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
        help="which end of the score to keep with --select (random ignores the score)",
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
        choices=("all", "best"),
        help="all epochs weighted by lr, or the best checkpoint only (released code)",
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
    return p


def run_name(args: argparse.Namespace) -> str:
    """The run folder: the method, then every non-default option (e.g. tracin-select0.2-top)."""
    if args.name:
        return args.name
    parts = [args.method]
    if args.select is not None:
        parts.append(f"select{args.select:g}-{args.select_from}")
    if args.curriculum != "paper":
        parts.append(args.curriculum)
    if args.quartile_weights != "2,1,0.5,0.25":
        parts.append("q" + args.quartile_weights.replace(",", "_"))
    if args.method in ("metadata", "hybrid") and args.metadata != "weighted":
        parts.append(f"metadata-{args.metadata}")
    if args.method in ("tracin", "hybrid"):
        if args.tracin_sign == -1:
            parts.append("signflip")
        if args.tracin_checkpoints != "all":
            parts.append(f"ckpt-{args.tracin_checkpoints}")
        if args.scoring_dropout:
            parts.append("dropout")
    if args.noise is not None:
        parts.append(f"noise{args.noise:g}")
    # --epochs and --preset are not in the name: a workdir holds one of each (a run with other
    # values in the same folder is refused with a clear error, never mixed).
    return "-".join(parts)


def quartile_weights(text: str) -> dict[str, float]:
    try:
        q4, q3, q2, q1 = (float(x) for x in text.split(","))
    except ValueError as e:
        raise RunError(
            f"--quartile-weights: expected four numbers Q4,Q3,Q2,Q1, got {text!r}"
        ) from e
    return {"q4_weight": q4, "q3_weight": q3, "q2_weight": q2, "q1_weight": q1}


def resolve(args: argparse.Namespace, *, seed: int) -> Preset:
    preset = train.resolve_preset(args.preset, epochs=args.epochs, seed=seed, data=args.data)
    if args.noise is not None:
        data = dataclasses.replace(preset.data, noise_fraction=args.noise)
        preset = dataclasses.replace(preset, data=data).validate()
    return preset


# ----------------------------------------------------------------------------- stages


def _same_config(path: Path, config: dict) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(config))
    except (OSError, ValueError):
        return False


def train_or_reuse(
    preset: Preset,
    splits: dict[str, ScenarioSet],
    workdir: Path,
    *,
    sampling: Any = None,
    extra: dict,
    keep_all: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    label: str = "run",
) -> dict:
    """Trains into `workdir`, resuming an interrupted run; a finished run with the same config is
    a cache hit, one with another config an error unless `overwrite`."""
    config = {"preset": to_dict(preset), **extra}
    cfg_path = workdir / "config.json"
    if cfg_path.exists() and not overwrite and not _same_config(cfg_path, config):
        raise RunError(
            f"{workdir}: holds a {label} with a different configuration; pass --overwrite "
            "or choose another --workdir/--name"
        )
    finished = (workdir / "result.json").exists() and not overwrite
    resuming = not finished and not overwrite and (workdir / "checkpoints").is_dir()
    if finished:
        print(f"{label}: cache hit at {workdir}")
    elif resuming:
        print(f"{label}: resuming at {workdir}")
    else:
        print(f"{label}: training at {workdir}")
    fit = train.fit(
        preset,
        splits["train"],
        splits["val"],
        splits["test"],
        workdir=workdir,
        sampling=sampling,
        keep_all_checkpoints=keep_all,
        resume=not overwrite,
        overwrite=overwrite,
        progress=progress,
        extra_config=extra,
    )
    return fit.result


def reference_folder(args: argparse.Namespace) -> str:
    """`reference` for the preset's own data and epochs; a suffixed folder for other ones, so a
    variant (e.g. a noiseless world) never reuses a reference trained on different data."""
    parts = ["reference"]
    if args.data not in (None, "synthetic"):
        parts.append(_digest(args.data))
    if args.noise is not None:
        parts.append(f"noise{args.noise:g}")
    return "-".join(parts)


def reference_run(
    args: argparse.Namespace, preset: Preset, splits: dict, root: Path, *, progress: bool
) -> Path:
    """Uniform training with seed 0, every epoch kept: the checkpoints TracIn sums over."""
    ref = dataclasses.replace(
        preset, train=dataclasses.replace(preset.train, seed=REFERENCE_SEED)
    ).validate()
    workdir = root / reference_folder(args) / f"seed{REFERENCE_SEED}"
    train_or_reuse(
        ref,
        splits,
        workdir,
        extra={"method": "reference"},
        keep_all=True,
        progress=progress,
        label="reference",
    )
    return workdir


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def score_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mode": args.tracin_mode,
        "checkpoints": args.tracin_checkpoints,
        "sign": float(args.tracin_sign),
        "scoring_dropout": args.scoring_dropout,
        "chunk_size": args.chunk,
    }


def score_cache(args: argparse.Namespace, preset: Preset, root: Path) -> tuple[Path, tuple]:
    """The score file this method reads (one per preset, data, epochs and scoring options) and
    the scores it holds; nothing is computed here."""
    from valuation import gameformer

    data_key = store.split_key(store.split_recipe(preset.data, "train"))
    base = {"preset": to_dict(preset.model), "train": preset.train.epochs, "data": data_key}
    if args.method == "lissa":
        opts = {"depth": args.lissa_depth, "repeats": args.lissa_repeats, "batch": args.lissa_batch}
        name = f"{preset.name}_lissa_{_digest({**base, **opts, 'chunk': args.chunk})}"
        return gameformer.score_path(name, root / "scores"), ("lissa",)
    name = f"{preset.name}_scores_{_digest({**base, **score_options(args)})}"
    return gameformer.score_path(name, root / "scores"), BASE_SCORES


def scores_for(
    args: argparse.Namespace, preset: Preset, splits: dict, root: Path
) -> tuple[dict[str, np.ndarray], dict[str, Any], Path | None]:
    """All scores the method needs (plus the rest of its file), from cache when possible."""
    from valuation import gameformer, metadata, scores

    trainset = splits["train"]
    if args.method == "uniform" or (args.select is not None and args.select_from == "random"):
        return {}, {}, None
    if args.method in ("metadata", "random"):
        # Cheap and model-free: no reference run needed.
        named = {
            "metadata": metadata.metadata_scores(trainset, args.metadata),
            "random": scores.random_scores(len(trainset), args.seed),
        }
        return named, {"kind": "model-free", "random_seed": args.seed}, None

    ref = reference_run(args, preset, splits, root, progress=not args.quiet)
    path, which = score_cache(args, preset, root)
    if path.exists():
        print(f"scores: cache hit at {path}")
    else:
        print(f"scores: computing {', '.join(which)} -> {path}")
        t0 = time.perf_counter()
        if args.method == "lissa":
            named, desc = gameformer.auto_lissa_scores(
                preset,
                trainset,
                splits["val"],
                ref,
                depth=args.lissa_depth,
                repeats=args.lissa_repeats,
                batch_size=args.lissa_batch,
                chunk_size=args.chunk,
            )
        else:
            named, desc = gameformer.compute_scores(
                preset,
                trainset,
                splits["val"],
                ref,
                which=which,
                metadata_composite="weighted",
                **score_options(args),
            )
        desc["total_seconds"] = time.perf_counter() - t0
        scores.save_scores(path, named, desc, tokens=trainset.meta["token"])
        print(f"scores: done in {desc['total_seconds']:.1f} s")
    named, desc = scores.load_scores(path)
    if args.method in ("metadata", "hybrid") and args.metadata == "mean":
        named["metadata"] = named["metadata_mean"]
        named["hybrid"] = scores.hybrid(named["tracin"], named["metadata_mean"])
    return named, desc, path


def sampling_for(
    args: argparse.Namespace, preset: Preset, named: dict[str, np.ndarray], n: int
) -> tuple[Any, dict[str, Any]]:
    """The `fit` sampling (None, a subset, or a Curriculum) and a description of it."""
    if args.select is not None:
        if args.select_from == "random":
            kept = sampler.select(np.zeros(n), args.select, "random", seed=args.seed)
        else:
            kept = sampler.select(named[args.method], args.select, args.select_from)
        return kept, {"kind": "select", "fraction": args.select, "which": args.select_from}
    if args.method == "uniform":
        return None, {"kind": "uniform"}
    cfg = schedule.ScheduleConfig(
        mode=args.curriculum, epochs=preset.train.epochs, **quartile_weights(args.quartile_weights)
    ).validate()
    return sampler.Curriculum(cfg, named[args.method]), {"kind": "curriculum", **to_dict(cfg)}


def corrupted_mass(sampling: Any, corrupted_N: np.ndarray, epochs: int) -> list[float]:
    """Share of each epoch's draws expected to fall on corrupted scenarios (uniform: their share)."""
    c = np.asarray(corrupted_N, bool)
    n = len(c)
    if sampling is None:
        return [float(c.mean())] * epochs
    if callable(sampling):
        return [float(np.dot(sampling(e), c)) for e in range(epochs)]
    return [float(c[np.asarray(sampling)].mean())] * epochs if n else []


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    """Every stage for one method and seed; returns the result dict also written to disk."""
    if args.select is not None and args.method == "uniform" and args.select_from != "random":
        raise RunError("--select with --method uniform needs --select-from random")
    if args.method == "random" and args.select is not None and args.select_from != "random":
        args.select_from = "random"
    root = Path(args.workdir)
    preset = resolve(args, seed=args.seed)
    name = run_name(args)
    print(
        f"run: {name} seed {args.seed} | preset {preset.name} | data {preset.data.source} | "
        f"{preset.train.epochs} epochs | workdir {root}"
    )
    t0 = time.perf_counter()
    splits = store.load_splits(preset.data, root=root / "data", verbose=True)
    named, score_desc, score_file = scores_for(args, preset, splits, root)
    n = len(splits["train"])
    sampling, sampling_desc = sampling_for(args, preset, named, n)
    extra = {
        "method": args.method,
        "name": name,
        "seed": args.seed,
        "args": {k: v for k, v in vars(args).items() if k not in ("quiet", "overwrite")},
        "sampling": sampling_desc,
        "scores": str(score_file) if score_file else None,
    }
    workdir = root / name / f"seed{args.seed}"
    result = train_or_reuse(
        preset,
        splits,
        workdir,
        sampling=sampling,
        extra=extra,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if "corrupted_mass" not in result:
        result.update(
            method=args.method,
            name=name,
            seed=args.seed,
            corrupted_mass=corrupted_mass(
                sampling, splits["train"].meta["corrupted"], preset.train.epochs
            ),
            wall_seconds=time.perf_counter() - t0,
            score_seconds=score_desc.get("total_seconds"),
        )
        atomic.write_json(workdir / "result.json", result)
    print(summary(result, root, name, args.seed))
    return result


def summary(result: dict, root: Path, name: str, seed: int) -> str:
    """A short table: this run's val and test metrics next to uniform's for the same seed."""
    rows = [_row(name, result)]
    uniform = root / "uniform" / f"seed{seed}" / "result.json"
    if name != "uniform" and uniform.exists():
        rows.append(_row("uniform", json.loads(uniform.read_text())))
    cols = ["run", "best_epoch", "val_plan_ade", "val_plan_fde", "val_plan_ahe"]
    cols += ["test_plan_ade", "test_plan_fde", "val_pred_ade"]
    return "\n" + stats.markdown_table(rows, cols)


def _row(name: str, r: dict) -> dict:
    row = {"run": name, "best_epoch": r["best_epoch"]}
    row.update({f"val_{k}": r[k] for k in ("plan_ade", "plan_fde", "plan_ahe", "pred_ade")})
    row.update(
        {f"test_{k}": r.get("test", {}).get(k, float("nan")) for k in ("plan_ade", "plan_fde")}
    )
    return row


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from gf_jax.data.schema import DataError

    try:
        run(args)
    except (RunError, DataError, train.TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
