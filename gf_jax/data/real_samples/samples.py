"""The real-samples folder: where it is, every recording in it, all its scenarios, its licence.

Licence: the samples and anything derived from them (cached splits, npz files, pictures) are
CC BY-NC-SA 4.0 (Argoverse 2: (c) 2022 Argo AI, LLC; nuScenes: Motional). `LICENCE_NOTE` is written
next to every derived file; derived data is never stored inside the package.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gf_jax.data.real_samples.av2 import av2_forecasting, av2_sensor
from gf_jax.data.real_samples.log import DEFAULT_STRIDE, Log, scenarios
from gf_jax.data.real_samples.scenarionet import nuscenes
from gf_jax.data.schema import DataError, ScenarioSet, concat

# ../shared/data/real_driving_samples next to the repository (this file is
# <repo>/gf_jax/data/real_samples/samples.py).
DEFAULT_DIR = Path(__file__).resolve().parents[4] / "shared/data/real_driving_samples"
LICENCE_FILE = "LICENCE_CC-BY-NC-SA-4.0.txt"
LICENCE_NOTE = (
    "Derived from real driving samples, licensed CC BY-NC-SA 4.0 (attribution, non-commercial,\n"
    "share-alike): Argoverse 2 (c) 2022 Argo AI, LLC (github.com/argoverse/av2-api test data) and\n"
    "nuScenes v1.0-mini (Motional; ScenarioNet conversion, github.com/metadriverse/scenarionet).\n"
    "This derived data carries the same licence; do not use it commercially.\n"
    "https://creativecommons.org/licenses/by-nc-sa/4.0/\n"
)


def logs(root: str | os.PathLike = DEFAULT_DIR) -> Iterator[Log]:
    """Every recording of the samples folder, in a fixed order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: real driving samples folder not found")
    found = 0
    for folder in sorted((root / "av2" / "forecasting").glob("*/")):
        found += 1
        yield av2_forecasting(folder)
    for folder in sorted((root / "av2" / "sensor_logs").glob("*/")):
        found += 1
        yield av2_sensor(folder)
    for path in sorted((root / "nuscenes_mini_scenarionet").glob("*.pkl")):
        found += 1
        yield nuscenes(path)
    if not found:
        raise DataError(f"{root}: no AV2 or nuScenes samples inside")


@functools.lru_cache(maxsize=2)
def _load(root: str, stride: int) -> ScenarioSet:
    parts = [s for log in logs(root) if (s := scenarios(log, stride)) is not None]
    if not parts:
        raise DataError(f"{root}: the real samples yield no scenario")
    return concat(parts, f"real-samples:{root}")


def load(root: str | os.PathLike = DEFAULT_DIR, *, stride: int = DEFAULT_STRIDE) -> ScenarioSet:
    """All scenarios of the real samples (validated; cached per process)."""
    return _load(str(Path(root).resolve()), int(stride))


def groups(s: ScenarioSet) -> np.ndarray:
    """The log / scene each scenario comes from (scenarios of one log overlap in time)."""
    return np.array([t.rsplit("_", 1)[0] for t in s.meta["token"]], str)


def write_licence(folder: str | os.PathLike) -> Path:
    """Puts the CC BY-NC-SA note next to derived files."""
    from gf_jax import atomic

    return atomic.write_text(Path(folder) / LICENCE_FILE, LICENCE_NOTE)
