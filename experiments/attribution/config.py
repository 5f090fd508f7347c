"""`AttributionConfig`: everything the attribution benchmark depends on, saved as `config.json`.

Every random choice flows from `seed` through its own stream (`Streams`): the random subsets,
the random removals, the random scores, the projections of TRAK and of projected pair scores,
the dropout masks of `tracin_dropout`, LiSSA's mini-batches, and the bootstrap. Training seeds
derive from it too: reference run m trains with `seed + m` (run 0 is the full-data model every
removal is compared with), every retrain with `seed` (so it starts from the full-data run's
initialisation), and the noise-ceiling repeats with `seed + 1`.

Two kinds of field. The `IDENTITY` fields decide what every stored output means (the preset, the
data, the seed, the subset size, the retrain budget, the scorers' settings): a workdir holding
outputs made with other values is refused. The rest only decide how much is done (how many
subsets, which removals) or how it is summarised (bootstrap), so they may change between
invocations: `--subsets 100` after a run with 50 adds 50 more and keeps the first 50.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gf_jax import cli
from gf_jax.config import PRESETS

# Scorers with a score for every (training example, validation scenario) pair.
PAIR_SCORERS = ("tracin", "tracin_best", "tracin_dropout", "cosine", "trak")
# Scorers with one score per training example.
EXAMPLE_SCORERS = (
    "self_influence",
    "lissa",
    "loss",
    "metadata",
    "metadata_mean",
    "hybrid",
    "random",
)
SCORERS = PAIR_SCORERS + EXAMPLE_SCORERS
RETRAIN_BUDGETS = ("steps", "epochs")
# Fields added after workdirs were saved without them, with the behaviour those workdirs ran.
SAVED_BEFORE = {"retrain_budget": "epochs"}
# The ends of a score that the removal curves cut: the highest, then the lowest.
SCORE_SIDES = ("top", "bottom")
IDENTITY = (
    "preset",
    "epochs",
    "retrain_budget",
    "data",
    "noise",
    "seed",
    "subset_fraction",
    "pair_dim",
    "trak_dim",
    "lissa_depth",
    "lissa_repeats",
    "lissa_batch",
)


class ConfigError(cli.UsageError):
    """An option value that cannot make a benchmark; the message names the flag (exit code 2)."""


class Streams:
    """Constants folded into `seed` so that each use draws its own independent numbers."""

    SUBSETS = 0x5B5E7
    REMOVALS = 0x2E30F
    RANDOM_SCORES = 0x7A4D
    PROJECTION = 0x9C0F
    DROPOUT = 0xD40F
    LISSA = 0x1155A
    BOOTSTRAP = 0xB007


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    """One attribution benchmark.

    Attributes:
      preset: the gf_jax preset every model is trained with (`attribution`: small enough to
        retrain ~100 times).
      epochs: override of the preset's epoch count (milestones scale); None: the preset's.
      retrain_budget: how long a retrain on a subset trains. `steps`: about as many optimizer
        steps as a full-data run (its epochs, and milestones, scaled by n_train / n_kept and
        rounded: a half-subset trains twice the epochs); `epochs`: as many passes over its subset
        as a full-data run over everything (so half the steps). Workdirs saved before this field
        existed ran `epochs`. `epochs` left most half-subset retrains of the
        `attribution` preset at the loss plateau (README), hence `steps`.
      data: data source (`DataConfig.source`); None: the preset's procedural world.
      noise: fraction of corrupted training futures; None: the preset's (5 %).
      seed: every random choice (see the module doc); >= 0.
      subsets: random subsets retrained for the LDS (>= 2; the field's standard is >= 50).
      subset_fraction: each subset's share of the training set, in (0, 1) (0.5 is standard).
      ceiling_subsets: the first this many subsets (all if fewer) are retrained once more with
        seed + 1; the agreement of the two runs bounds any LDS (0: off; 1 is too few to rank).
        10, because 5 pairs left the aggregate target's interval at [-1, 1].
      reference_runs: full-data runs with seeds seed .. seed + reference_runs - 1; TRAK with m
        models uses the first m of them (>= max(trak_models)).
      trak_models: ensemble sizes of TRAK, one scorer `trak<m>` each (every m >= 1).
      scorers: the scorers computed (subset of SCORERS; `trak` means every `trak<m>`).
      pair_dim: projected dimension of the TracIn / cosine pair scores; None: exact.
      trak_dim: projected dimension of TRAK's features (>= 1).
      removal_fractions: shares of the training set removed in the counterfactual curves, each
        in (0, 1).
      removal_scorers: the scorers whose top and bottom are removed (`trak<m>` names allowed).
      random_removals: random removals per fraction (the baseline's spread; >= 0).
      lissa_depth: LiSSA recursion depth per repeat (damping and scale from the top eigenvalue).
      lissa_repeats: LiSSA repeats averaged.
      lissa_batch: examples per LiSSA Hessian-vector mini-batch.
      chunk_size: examples per jitted scoring call (memory only, not the numbers).
      bootstrap: bootstrap resamples of the subsets for every interval (>= 10).
      confidence: the intervals' coverage, in (0, 1).
      inspect_fraction: share of the training set inspected in noise detection, in (0, 1).
      keep_checkpoints: keep the retrains' checkpoints in the scratch folder (they are deleted
        once a retrain's outcome is written; reference runs always keep theirs).
    """

    preset: str = "attribution"
    epochs: int | None = None
    retrain_budget: str = "steps"
    data: str | None = None
    noise: float | None = None
    seed: int = 0
    subsets: int = 50
    subset_fraction: float = 0.5
    ceiling_subsets: int = 10
    reference_runs: int = 5
    trak_models: tuple[int, ...] = (1, 5)
    scorers: tuple[str, ...] = SCORERS
    pair_dim: int | None = None
    trak_dim: int = 512
    removal_fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    removal_scorers: tuple[str, ...] = ("tracin", "trak5", "self_influence", "lissa", "metadata")
    random_removals: int = 3
    lissa_depth: int = 50
    lissa_repeats: int = 2
    lissa_batch: int = 16
    chunk_size: int = 32
    bootstrap: int = 1000
    confidence: float = 0.95
    inspect_fraction: float = 0.1
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset: {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs: must be >= 1, got {self.epochs}")
        if self.retrain_budget not in RETRAIN_BUDGETS:
            raise ConfigError(
                f"--retrain-budget: {self.retrain_budget!r} is not one of "
                f"{', '.join(RETRAIN_BUDGETS)}"
            )
        if self.noise is not None and not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"--noise: must be in [0, 1], got {self.noise}")
        _at_least("--seed", self.seed, 0)
        _at_least("--subsets", self.subsets, 2)
        _open_fraction("--subset-fraction", self.subset_fraction)
        if self.ceiling_subsets < 0 or self.ceiling_subsets == 1:
            raise ConfigError(f"--ceiling-subsets: must be 0 or >= 2, got {self.ceiling_subsets}")
        if not self.trak_models or min(self.trak_models) < 1:
            raise ConfigError(f"--trak-models: need ensemble sizes >= 1, got {self.trak_models}")
        _at_least("--reference-runs", self.reference_runs, max(self.trak_models))
        unknown = sorted(set(self.scorers) - set(SCORERS))
        if unknown or not self.scorers:
            raise ConfigError(f"--scorers: unknown {unknown}; choose from {', '.join(SCORERS)}")
        if "hybrid" in self.scorers and not {"tracin", "metadata"} <= set(self.scorers):
            raise ConfigError("--scorers: hybrid needs tracin and metadata")
        if self.pair_dim is not None:
            _at_least("--pair-dim", self.pair_dim, 1)
        _at_least("--trak-dim", self.trak_dim, 1)
        for f in self.removal_fractions:
            _open_fraction("--removal-fractions", f)
        missing = sorted(set(self.removal_scorers) - set(self.scorer_names))
        if missing:
            raise ConfigError(f"--removal-scorers: {missing} are not among the computed scorers")
        _at_least("--random-removals", self.random_removals, 0)
        for flag, value in (
            ("--lissa-depth", self.lissa_depth),
            ("--lissa-repeats", self.lissa_repeats),
            ("--lissa-batch", self.lissa_batch),
            ("--chunk", self.chunk_size),
        ):
            _at_least(flag, value, 1)
        _at_least("--bootstrap", self.bootstrap, 10)
        _open_fraction("--confidence", self.confidence)
        _open_fraction("--inspect-fraction", self.inspect_fraction)

    @property
    def scorer_names(self) -> tuple[str, ...]:
        """The computed scorers, `trak` expanded to `trak<m>` for every ensemble size."""
        out: list[str] = []
        for name in self.scorers:
            out += [f"trak{m}" for m in self.trak_models] if name == "trak" else [name]
        return tuple(out)

    @property
    def reference_seeds(self) -> tuple[int, ...]:
        """Training seeds of the full-data reference runs; the first is the full-data model."""
        return tuple(self.seed + m for m in range(self.reference_runs))

    @property
    def ceiling_seed(self) -> int:
        """The second training seed of the noise-ceiling repeats."""
        return self.seed + 1

    @property
    def removal_count(self) -> int:
        """How many removal retrains the plan holds (known before the scores are)."""
        per_fraction = len(self.removal_scorers) * len(SCORE_SIDES) + self.random_removals
        return len(self.removal_fractions) * per_fraction

    def retrain_epochs(self, epochs: int, n_train: int, n_kept: int) -> int:
        """Epochs of a retrain on `n_kept` of `n_train` examples, given a full-data run's."""
        if self.retrain_budget == "epochs" or n_kept >= n_train:
            return epochs
        return max(epochs, round(epochs * n_train / n_kept))

    def identity(self) -> dict[str, Any]:
        """The fields every stored output depends on (checked against a workdir's)."""
        return {k: v for k, v in self.to_dict().items() if k in IDENTITY}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> AttributionConfig:
        """A workdir's saved config; a field it predates takes the value it was run with."""
        return cls.from_dict({**SAVED_BEFORE, **d})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionConfig:
        """The config `to_dict` wrote (lists become tuples again); unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ConfigError(f"attribution config: unknown keys {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def is_pair_scorer(name: str) -> bool:
    """Whether scorer `name` (`trak<m>` included) has a score per (example, target) pair."""
    return name in PAIR_SCORERS or (name.startswith("trak") and name[4:].isdigit())


def json_ready(x: Any) -> Any:
    """Tuples as lists, recursively (what `json.loads(json.dumps(x))` would give)."""
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return [json_ready(v) for v in x]
    return x


def _at_least(flag: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{flag}: must be >= {low}, got {value}")


def _open_fraction(flag: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{flag}: must be a fraction in (0, 1), got {value}")
