"""nuScenes-mini scenes in ScenarioNet format -> `Log`s.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays and builtin
containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gf_jax.data.real_samples.log import Log
from gf_jax.data.schema import DataError

NUSCENES_CLASSES = {"VEHICLE": 0, "PEDESTRIAN": 1, "CYCLIST": 2}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers only; any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)  # numpy 2 renamed it
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike) -> Any:
    """A ScenarioNet pickle through the restricted unpickler; DataError naming the file."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: unreadable or unsafe pickle ({e})") from e


def _map_features(d: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Lane polylines and closed crosswalk rings of a scene."""
    lanes, crosswalks = [], []
    for f in d["map_features"].values():
        if str(f["type"]).startswith("LANE") and len(f.get("polyline", ())) >= 2:
            lanes.append(np.asarray(f["polyline"], np.float64)[:, :2])
        elif str(f["type"]) == "CROSSWALK" and len(f.get("polygon", ())) >= 3:
            ring = np.asarray(f["polygon"], np.float64)[:, :2]
            crosswalks.append(np.concatenate([ring, ring[:1]]))
    return lanes, crosswalks


def nuscenes(path: Path) -> Log:
    """One ScenarioNet nuScenes scene as a Log; DataError on unexpected content."""
    d = load_pickle(path)
    try:
        meta = d["metadata"]
        tracks = d["tracks"]
        ego_id = meta["sdc_id"]
        n = int(d["length"])
        names = [k for k in tracks if k != ego_id]
        st = np.zeros((len(names), n, 7))
        seen = np.zeros((len(names), n), bool)
        for k, name in enumerate(names):
            s = tracks[name]["state"]
            st[k] = np.column_stack([s["position"][:, :2], s["heading"], s["velocity"][:, :2],
                                     s["length"][:, :1], s["width"][:, :1]])  # fmt: skip
            seen[k] = np.asarray(s["valid"]) > 0
        e = tracks[ego_id]["state"]
        ego = np.column_stack([e["position"][:, :2], e["heading"]])
        lanes, crosswalks = _map_features(d)
        map_name = str(meta.get("map", ""))
        cls = np.array([NUSCENES_CLASSES.get(str(tracks[k]["type"]), -1) for k in names])
        times = np.asarray(meta.get("ts", np.arange(n) * 0.1), np.float64)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{path}: unexpected ScenarioNet content ({e!r})") from e
    city = "singapore" if map_name.startswith("singapore") else map_name.split("-")[0]
    return Log(path.stem.replace("sd_nuscenes_v1.0-mini_", ""), "nuscenes", city, map_name, times,
               ego, np.asarray(e["valid"]) > 0, st, seen, cls, lanes, crosswalks)  # fmt: skip
