"""The sweep's named configurations, its run plan, and the status of each planned run.

The paper's table (uniform, metadata, tracin, hybrid, loss) runs with several seeds; the
ablations with fewer: the curricula's sampler with equal weights (draws with replacement, no
weighting: it separates the weighting from the sampling, since uniform takes shuffled passes over
every example while the curricula draw N examples with replacement, ~63 % of them distinct per
epoch); hard top-20 % selection by TracIn, metadata, at random and from TracIn's
bottom; the released code's curriculum; TracIn's sign flipped; best-checkpoint TracIn; dropout on
while scoring; the metadata mean composite; LiSSA; random scores through the same curriculum;
TracIn and uniform on a world without label noise. Each configuration's name is the run folder
`RunConfig.run_name` gives it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from experiments.layout import Layout
from experiments.runconfig import ConfigError, RunConfig

MAIN = ("uniform", "metadata", "tracin", "hybrid", "loss")
ABLATIONS: dict[str, dict] = {
    "random-q1_1_1_1": {"method": "random", "quartile_weights": (1.0, 1.0, 1.0, 1.0)},
    "tracin-select0.2-top": {"method": "tracin", "select": 0.2},
    "metadata-select0.2-top": {"method": "metadata", "select": 0.2},
    "uniform-select0.2-random": {"method": "uniform", "select": 0.2, "select_from": "random"},
    "tracin-select0.2-bottom": {"method": "tracin", "select": 0.2, "select_from": "bottom"},
    "tracin-code": {"method": "tracin", "curriculum": "code"},
    "tracin-signflip": {"method": "tracin", "tracin_sign": -1},
    "tracin-ckpt-best": {"method": "tracin", "tracin_checkpoints": "best"},
    "tracin-dropout": {"method": "tracin", "scoring_dropout": True},
    "metadata-metadata-mean": {"method": "metadata", "metadata": "mean"},
    "lissa": {"method": "lissa"},
    "random": {"method": "random"},
    "tracin-noise0": {"method": "tracin", "noise": 0.0},
    "uniform-noise0": {"method": "uniform", "noise": 0.0},
}


def configurations(**common) -> dict[str, RunConfig]:
    """Every named configuration with `common` fields (preset, data, epochs) and seed 1."""
    out = {m: RunConfig(method=m, **common) for m in MAIN}
    out.update({name: RunConfig(**fields, **common) for name, fields in ABLATIONS.items()})
    for name, cfg in out.items():  # the names are the run folders
        assert cfg.run_name == name, (name, cfg.run_name)
    return out


def plan(
    configs: dict[str, RunConfig],
    main_seeds: Sequence[int],
    ablation_seeds: Sequence[int],
    only: Sequence[str] | None = None,
) -> list[RunConfig]:
    """Runs in order: seed-major over the main table, then the ablations, so a partly finished
    sweep already holds complete seeds of the paper's table."""
    pairs = [(m, s) for s in main_seeds for m in MAIN]
    pairs += [(a, s) for s in ablation_seeds for a in ABLATIONS]
    if only:
        pairs = [(n, s) for n, s in pairs if any(fnmatch.fnmatch(n, p) for p in only)]
    return [dataclasses.replace(configs[n], seed=s) for n, s in pairs]


def shard(runs: list[RunConfig], index: int, count: int) -> list[RunConfig]:
    """Shard `index` of `count` (1-based): every count-th run, a deterministic share."""
    if not 1 <= index <= count:
        raise ConfigError(f"--shard: expected I/N with 1 <= I <= N, got {index}/{count}")
    return runs[index - 1 :: count]


def status(layout: Layout, cfg: RunConfig) -> str:
    """`done` (a result whose saved run config matches), `stale` (a result of another config),
    `partial` (checkpoints, no result) or `todo`."""
    folder = layout.run(cfg.run_name, cfg.seed)
    result = folder / "result.json"
    if result.exists():
        return "done" if saved_run_config(result) == cfg.to_dict() else "stale"
    return "partial" if (folder / "checkpoints").is_dir() else "todo"


def saved_run_config(result_path: Path) -> dict | None:
    """The run config a result was trained with (None if unreadable or from an older layout)."""
    try:
        return json.loads(result_path.read_text())["config"]["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def command_line(cfg: RunConfig, workdir: str | Path) -> str:
    """The `run.py` command that trains `cfg` (for schedulers: GNU parallel, SLURM arrays)."""
    argv = ["python", "experiments/run.py", "--workdir", str(workdir)]
    default = RunConfig(method=cfg.method).to_dict()
    for field, value in cfg.to_dict().items():
        flag = "--" + field.replace("_", "-")
        if field == "lissa":
            for key, lissa_flag in LISSA_FLAGS.items():
                if value[key] != default["lissa"][key]:
                    argv += [lissa_flag, str(value[key])]
        elif field not in ("method", "seed", "preset") and value == default[field]:
            continue
        elif isinstance(value, bool):
            argv.append(flag)
        elif field == "quartile_weights":
            argv += [flag, ",".join(f"{w:g}" for w in value)]
        else:
            argv += [flag, str(value)]
    return shlex.join([*argv, "--quiet"])


LISSA_FLAGS = {
    "depth": "--lissa-depth",
    "repeats": "--lissa-repeats",
    "batch_size": "--lissa-batch",
}
