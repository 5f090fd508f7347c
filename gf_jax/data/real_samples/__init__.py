"""Adapters for the small real driving samples: Argoverse 2 and nuScenes-mini -> ScenarioSets.

Reads `../shared/data/real_driving_samples/` (see its README): the AV2 forecasting scenario (parquet,
city-frame tracks, vector map with centrelines), the AV2 sensor logs (feather cuboids in the ego
frame of each sweep plus ego poses; centrelines averaged from the lane boundaries), and the ten
nuScenes-mini scenes in ScenarioNet format (pickles, read with a restricted unpickler that only
rebuilds numpy arrays and builtin containers). Every log is already at 10 Hz; a scenario is an anchor
every `stride` frames with 2 s of past and 8 s of future, turned into the GameFormer layout by
`nuplan.gameformer_arrays`: ego frame at the anchor, the ego pose as the rear axle, lanes and
crosswalks with a vertex in the 60 m square, no traffic-light information (every lane unknown),
route lanes = lanes the ego passes along (within 1.5 m and 45 degrees) from now to the end of its
future. AV2 parquet/feather need the optional extra `[real]` (pyarrow).

Modules: `log` (a recording and its scenarios), `av2` and `scenarionet` (the two adapters),
`samples` (the folder, `load`, the licence), `preview` (`python -m gf_jax.data.real_samples preview
--out DIR`).

Licence: the samples and anything derived from them (cached splits, npz files, pictures) are
CC BY-NC-SA 4.0 (Argoverse 2: (c) 2022 Argo AI, LLC; nuScenes: Motional). `LICENCE_NOTE` is written
next to every derived file; derived data is never stored inside the package.
"""

from gf_jax.data.real_samples.av2 import (
    AV2_CLASSES,
    AV2_SIZES,
    CITY_NAMES,
    av2_forecasting,
    av2_sensor,
)
from gf_jax.data.real_samples.log import (
    DEFAULT_STRIDE,
    ROUTE_ANGLE,
    ROUTE_DIST,
    Log,
    scenarios,
    windows,
)
from gf_jax.data.real_samples.preview import main, preview
from gf_jax.data.real_samples.samples import (
    DEFAULT_DIR,
    LICENCE_FILE,
    LICENCE_NOTE,
    groups,
    load,
    logs,
    write_licence,
)
from gf_jax.data.real_samples.scenarionet import NUSCENES_CLASSES, load_pickle, nuscenes

__all__ = [
    "AV2_CLASSES",
    "AV2_SIZES",
    "CITY_NAMES",
    "DEFAULT_DIR",
    "DEFAULT_STRIDE",
    "LICENCE_FILE",
    "LICENCE_NOTE",
    "NUSCENES_CLASSES",
    "ROUTE_ANGLE",
    "ROUTE_DIST",
    "Log",
    "av2_forecasting",
    "av2_sensor",
    "groups",
    "load",
    "load_pickle",
    "logs",
    "main",
    "nuscenes",
    "preview",
    "scenarios",
    "windows",
    "write_licence",
]
