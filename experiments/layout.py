"""The `runs/` layout: the one place that knows where every stage reads and writes.

    <root>/data/<split>-<key>/          cached dataset splits (gf_jax.data.store)
    <root>/reference[-<data>][-noiseX]/seed0/
                                        the uniform reference run, every epoch checkpointed
    <root>/scores/<name>.npz            score files (with their tokens and description)
    <root>/<run name>/seed<S>/          config.json, metrics.jsonl, result.json, checkpoints/
    <root>/report/                      REPORT.md, figures/, theory/
    <root>/learning_curve/<setting>/    learning-curve runs

A run's saved config names its score file relative to the root (`scores/<name>.npz`), so a
workdir copied elsewhere (e.g. `docs/results-cpu/`) still finds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REFERENCE_SEED = 0
RESULT = "result.json"
CONFIG = "config.json"


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object (folder and file name suffixes)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths under one workdir root."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def theory(self) -> Path:
        return self.report / "theory"

    @property
    def learning_curves(self) -> Path:
        return self.root / "learning_curve"

    def reference(self, data: str | None = None, noise: float | None = None) -> Path:
        """The reference run trained on this data: `reference` for the preset's own world, a
        suffixed folder otherwise, so a variant (e.g. a noiseless world) never reuses a
        reference trained on different data."""
        parts = ["reference"]
        if data not in (None, "synthetic"):
            parts.append(digest(data))
        if noise is not None:
            parts.append(f"noise{noise:g}")
        return self.root / "-".join(parts) / f"seed{REFERENCE_SEED}"

    def score_file(self, name: str) -> Path:
        return self.scores / f"{name}.npz"

    def relative(self, path: Path) -> str:
        """`path` relative to the root (as saved in configs)."""
        return str(Path(path).relative_to(self.root))

    def resolve(self, saved: str) -> Path:
        """A path saved by `relative` -> a path here. Older runs saved paths relative to the
        working directory; those are found by name in `scores/`."""
        p = Path(saved)
        for candidate in (self.root / p, p, self.scores / p.name):
            if candidate.exists():
                return candidate
        return self.root / p

    def run(self, name: str, seed: int) -> Path:
        return self.root / name / f"seed{seed}"

    def result(self, name: str, seed: int) -> Path:
        return self.run(name, seed) / RESULT

    def finished(self) -> Iterator[tuple[str, int, Path]]:
        """(run name, seed, result path) of every finished curriculum run, sorted; reference
        runs are not included."""
        for path in sorted(self.root.glob(f"*/seed*/{RESULT}")):
            name = path.parent.parent.name
            if name.startswith("reference") or not path.parent.name[4:].isdigit():
                continue
            yield name, int(path.parent.name[4:]), path
