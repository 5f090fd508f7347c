"""Where the attribution benchmark reads and writes: small outputs in the workdir, bulk in scratch.

    <workdir>/config.json                 the resolved AttributionConfig, its preset, data digests
    <workdir>/split.npz                   the training set's corruption flags (noise detection)
    <workdir>/subsets.npz                 the random subsets' masks, bit-packed
    <workdir>/baselines.json              non-learned planners on val and test
    <workdir>/scores/<scorer>.npz         per-example scores [N] (and pair scores [N, J], float32)
    <workdir>/retrains/<run>/outcome.json one retrain: what it trained on, metrics, times
    <workdir>/retrains/<run>/outcome.npz  its per-validation-scenario loss and errors [J]
    <scratch>/data/                       the cached dataset splits
    <scratch>/train/<run>/                the retrain's `fit` folder (checkpoints, until done)

The workdir is what gets committed (docs/results-attribution/): the benchmark resumes from it and
the report is rebuilt from it alone. Run names: `reference-seed<S>` (full-data runs),
`subset-<r>` and `ceiling-<r>` (subset r with the second seed), `remove-<scorer>-<side>-<pct>`
and `remove-random<d>-<pct>`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

CONFIG = "config.json"
OUTCOME_JSON = "outcome.json"
OUTCOME_NPZ = "outcome.npz"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths of one benchmark.

    Attributes:
      root: the workdir of small outputs.
      scratch: the folder of data and training checkpoints (not committed).
    """

    root: Path
    scratch: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "scratch", Path(self.scratch))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def split(self) -> Path:
        return self.root / "split.npz"

    @property
    def subsets(self) -> Path:
        return self.root / "subsets.npz"

    @property
    def baselines(self) -> Path:
        return self.root / "baselines.json"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    def score_file(self, scorer: str) -> Path:
        return self.scores / f"{scorer}.npz"

    @property
    def retrains(self) -> Path:
        # Not `runs/`: the repository ignores every folder of that name.
        return self.root / "retrains"

    def run(self, name: str) -> Path:
        return self.retrains / name

    @property
    def data(self) -> Path:
        return self.scratch / "data"

    def train(self, name: str) -> Path:
        return self.scratch / "train" / name


def reference_name(seed: int) -> str:
    return f"reference-seed{seed}"


def subset_name(r: int) -> str:
    return f"subset-{r:03d}"


def ceiling_name(r: int) -> str:
    return f"ceiling-{r:03d}"


def percent(fraction: float) -> str:
    """0.05 -> '5', 0.125 -> '12.5': the removal's share in run names and tables."""
    return f"{100 * fraction:g}"


def removal_name(scorer: str, side: str, fraction: float) -> str:
    return f"remove-{scorer}-{side}-{percent(fraction)}"


def random_removal_name(draw: int, fraction: float) -> str:
    return f"remove-random{draw}-{percent(fraction)}"
