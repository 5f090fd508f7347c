"""`RunConfig`: everything that defines one curriculum run, built once and never mutated.

`run.py` builds it from the command line (`from_args`), the sweep builds it directly, and the
run folder saves it as `config.json` (`to_dict` / `from_dict` round-trip). The run's folder name
(`run_name`) derives from it: the method, then every option that differs from the default.
Invalid values are refused in `__post_init__` with a message that names the command-line flag,
before any data is built or any model trained.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from curriculum import sampler, schedule
from gf_jax import cli
from gf_jax.config import PRESETS
from valuation import checkpoints

METHODS = ("uniform", "metadata", "tracin", "hybrid", "loss", "lissa", "random")
DEFAULT_QUARTILE_WEIGHTS = (2.0, 1.0, 0.5, 0.25)


class ConfigError(cli.UsageError):
    """An option value that cannot make a run; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class LissaOptions:
    """LiSSA settings of the `lissa` method (damping and scale come from the top eigenvalue).

    Attributes:
      depth: recursion depth per repeat (`--lissa-depth`).
      repeats: independent repeats averaged (`--lissa-repeats`).
      batch_size: examples per Hessian-vector mini-batch (`--lissa-batch`).
    """

    depth: int = 50
    repeats: int = 2
    batch_size: int = 16

    def __post_init__(self) -> None:
        for flag, value in (
            ("--lissa-depth", self.depth),
            ("--lissa-repeats", self.repeats),
            ("--lissa-batch", self.batch_size),
        ):
            if value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One method and seed of the experiment.

    Attributes:
      method: the score that drives training, one of `METHODS`.
      seed: training seed (initialisation, sampling, dropout; the `random` scores).
      preset: `paper`, `cpu` or `tiny`.
      data: data source (`synthetic`, `npz:DIR`, `nuplan:DB,MAPS`, `real-samples`); None: synthetic.
      epochs: override of the preset's epoch count (milestones scale with it); None: the preset's.
      noise: fraction of training scenarios with injected label noise; None: the preset's (5 %).
      name: run folder name; None derives it from the options (`run_name`).
      curriculum: `paper` (phases 1-3/4-8/9-20 with quartile weights) or `code` (released).
      quartile_weights: paper-mode weights of the quartiles, top first (Q4, Q3, Q2, Q1).
      select: hard selection: train uniformly on this fraction of the training set; None: off.
      select_from: which end of the score `select` keeps: `top`, `bottom` or `random`.
      metadata: metadata composite, `weighted` (released) or `mean`.
      tracin_sign: +1 (positive = helpful, Pruthi) or -1 (the released code's sign).
      tracin_checkpoints: the reference checkpoints TracIn sums over (weighted by learning rate):
        `all`, `best` (released code), `everyJ` or `lastN` (`valuation.checkpoints`).
      scoring_dropout: dropout on while scoring (released code).
      tracin_mode: TracIn kernel, `jvp`, `vmap` or `loop` (same numbers, different speed).
      chunk: examples per jitted scoring call.
      lissa: LiSSA settings (the `lissa` method only).
    """

    method: str
    seed: int = 1
    preset: str = "cpu"
    data: str | None = None
    epochs: int | None = None
    noise: float | None = None
    name: str | None = None
    curriculum: str = "paper"
    quartile_weights: tuple[float, float, float, float] = DEFAULT_QUARTILE_WEIGHTS
    select: float | None = None
    select_from: str = "top"
    metadata: str = "weighted"
    tracin_sign: int = 1
    tracin_checkpoints: str = "all"
    scoring_dropout: bool = False
    tracin_mode: str = "jvp"
    chunk: int = 32
    lissa: LissaOptions = LissaOptions()

    def __post_init__(self) -> None:
        _check_choice("--method", self.method, METHODS)
        _check_choice("--preset", self.preset, tuple(PRESETS))
        _check_choice("--curriculum", self.curriculum, schedule.MODES)
        _check_choice("--select-from", self.select_from, sampler.SELECTIONS)
        _check_choice("--metadata", self.metadata, ("weighted", "mean"))
        _check_choice("--tracin-sign", self.tracin_sign, (1, -1))
        try:
            checkpoints.check(self.tracin_checkpoints)
        except ValueError as e:
            raise ConfigError(f"--tracin-checkpoints: {e}") from None
        _check_choice("--tracin-mode", self.tracin_mode, ("jvp", "vmap", "loop"))
        if self.seed < 0:
            raise ConfigError(f"--seed: must be >= 0, got {self.seed}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs: must be >= 1, got {self.epochs}")
        if self.noise is not None and not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"--noise: must be a fraction in [0, 1], got {self.noise:g}")
        if self.select is not None and not 0.0 < self.select <= 1.0:
            raise ConfigError(f"--select: must be a fraction in (0, 1], got {self.select:g}")
        if len(self.quartile_weights) != 4 or min(self.quartile_weights) <= 0:
            raise ConfigError(
                f"--quartile-weights: expected four numbers > 0, got {self.quartile_weights}"
            )
        if self.chunk < 1:
            raise ConfigError(f"--chunk: must be >= 1, got {self.chunk}")
        if self.name is not None:
            _check_name(self.name)
        if self.select is not None and self.method == "uniform" and self.select_from != "random":
            raise ConfigError("--select with --method uniform needs --select-from random")
        if self.method == "random" and self.select is not None and self.select_from != "random":
            raise ConfigError("--select with --method random needs --select-from random")

    # ------------------------------------------------------------------ derived

    @property
    def run_name(self) -> str:
        """The run folder: the method, then every non-default option (e.g. tracin-select0.2-top).

        `epochs` and `preset` are not in the name: a workdir holds one of each (a run with other
        values in the same folder is refused, never mixed).
        """
        if self.name:
            return self.name
        parts = [self.method]
        if self.select is not None:
            parts.append(f"select{self.select:g}-{self.select_from}")
        if self.curriculum != "paper":
            parts.append(self.curriculum)
        if tuple(self.quartile_weights) != DEFAULT_QUARTILE_WEIGHTS:
            parts.append("q" + "_".join(f"{w:g}" for w in self.quartile_weights))
        if self.method in ("metadata", "hybrid") and self.metadata != "weighted":
            parts.append(f"metadata-{self.metadata}")
        if self.method in ("tracin", "hybrid"):
            if self.tracin_sign == -1:
                parts.append("signflip")
            if self.tracin_checkpoints != "all":
                parts.append(f"ckpt-{self.tracin_checkpoints}")
            if self.scoring_dropout:
                parts.append("dropout")
        if self.noise is not None:
            parts.append(f"noise{self.noise:g}")
        return "-".join(parts)

    @property
    def uses_scores(self) -> bool:
        """False when training ignores every score (uniform, or a random hard selection)."""
        return self.method != "uniform" and not (
            self.select is not None and self.select_from == "random"
        )

    @property
    def needs_reference(self) -> bool:
        """True when the scores come from a trained reference run (not metadata or random)."""
        return self.uses_scores and self.method not in ("metadata", "random")

    def schedule_config(self, epochs: int) -> schedule.ScheduleConfig:
        q4, q3, q2, q1 = self.quartile_weights
        return schedule.ScheduleConfig(
            mode=self.curriculum,
            epochs=epochs,
            q4_weight=q4,
            q3_weight=q3,
            q2_weight=q2,
            q1_weight=q1,
        ).validate()

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["quartile_weights"] = list(self.quartile_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"run config: unknown keys {unknown}")
        kw = dict(d)
        kw["quartile_weights"] = tuple(float(w) for w in d.get("quartile_weights", ()))
        kw["lissa"] = LissaOptions(**d.get("lissa", {}))
        return cls(**kw)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, preset: str) -> RunConfig:
        """From `run.py`'s parsed arguments; `preset` is the resolved preset name."""
        # Random scores can only make a random selection: say so instead of refusing.
        random_pick = args.method == "random" and args.select is not None
        select_from = "random" if random_pick else args.select_from
        return cls(
            method=args.method,
            seed=args.seed,
            preset=preset,
            data=args.data,
            epochs=args.epochs,
            noise=args.noise,
            name=args.name,
            curriculum=args.curriculum,
            quartile_weights=parse_quartile_weights(args.quartile_weights),
            select=args.select,
            select_from=select_from,
            metadata=args.metadata,
            tracin_sign=args.tracin_sign,
            tracin_checkpoints=args.tracin_checkpoints,
            scoring_dropout=args.scoring_dropout,
            tracin_mode=args.tracin_mode,
            chunk=args.chunk,
            lissa=LissaOptions(args.lissa_depth, args.lissa_repeats, args.lissa_batch),
        )


def parse_quartile_weights(text: str) -> tuple[float, float, float, float]:
    """`"2,1,0.5,0.25"` -> (2.0, 1.0, 0.5, 0.25); a ConfigError naming the flag otherwise."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"--quartile-weights: expected four numbers Q4,Q3,Q2,Q1, got {text!r}")
    return values  # type: ignore[return-value]


# Workdir folders a run must never be written into (`experiments.layout`).
RESERVED_NAMES = ("data", "scores", "report", "learning_curve", "bench")


def _check_name(name: str) -> None:
    """`--name` is one folder inside the workdir: no path, and none of the layout's own."""
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ConfigError(f"--name: {name!r} must be a plain folder name (no path, no dot first)")
    if name in RESERVED_NAMES or name.startswith("reference"):
        raise ConfigError(f"--name: {name!r} is a folder of the workdir layout; choose another")


def _check_choice(flag: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(map(str, choices))}")
