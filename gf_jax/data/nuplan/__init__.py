"""Devkit-free nuPlan reader: SQLite log databases + GeoPackage maps -> GameFormer scenarios.

Follows research/nuplan_data.md (sections 1-5 and 10) without nuplan-devkit:
- `log`: `NuPlanLog(db)` reads a log with `sqlite3` (MergedPointCloud frames subsampled to 10 Hz,
  rear-axle ego poses, boxes); `select` picks the tagged scenarios of many logs.
- `maps`: `NuPlanMap(gpkg)` reads the vector layers with pyogrio/shapely (extra `[nuplan]`) and
  reprojects them from EPSG:4326 to the UTM zone named in the file's `meta` table.
- `features`: `gameformer_arrays(window)` is GameFormer's feature recipe (also used by the AV2 and
  nuScenes adapters in `gf_jax.data.real_samples`).
- `extraction`: `extract` (a ScenarioSet in memory) and `extract_to_folder` (npz files), in
  parallel over logs; `extract_source` (the `nuplan:` data source: prints the skipped logs, fails
  with a reason when nothing was extracted); `cli`: `python -m gf_jax.data.nuplan extract --db DIR
  --maps DIR --out DIR [--workers N]` (exit 2 for a bad flag, 1 when nothing was extracted).
- `writer` (with `recording`): turns the procedural world into nuPlan `.db` logs and `map.gpkg`
  maps, to test a pipeline end to end without real nuPlan data. Not imported here.
Coordinates are made relative in float64 (`ExtractConfig.float32_globals` reproduces GameFormer's
float32 quantisation of global UTM coordinates instead).
"""

from gf_jax.data.nuplan.cli import main
from gf_jax.data.nuplan.config import ExtractConfig
from gf_jax.data.nuplan.extraction import (
    ExtractReport,
    extract,
    extract_source,
    extract_to_folder,
    inputs,
)
from gf_jax.data.nuplan.features import (
    AGENT_CLASSES,
    MAP_RADIUS,
    TL_CODES,
    UNKNOWN_TL,
    Window,
    gameformer_arrays,
    quaternion_yaw,
)
from gf_jax.data.nuplan.log import (
    CATEGORY_ORDER,
    MERGED_LIDAR,
    REQUIRED_TABLES,
    SCENARIO_OFFSET_US,
    Candidate,
    NuPlanLog,
    list_logs,
    select,
)
from gf_jax.data.nuplan.maps import GEO_EXTRA, MAP_LAYERS, NuPlanMap, find_map, load_map

__all__ = [
    "AGENT_CLASSES",
    "CATEGORY_ORDER",
    "GEO_EXTRA",
    "MAP_LAYERS",
    "MAP_RADIUS",
    "MERGED_LIDAR",
    "REQUIRED_TABLES",
    "SCENARIO_OFFSET_US",
    "TL_CODES",
    "UNKNOWN_TL",
    "Candidate",
    "ExtractConfig",
    "ExtractReport",
    "NuPlanLog",
    "NuPlanMap",
    "Window",
    "extract",
    "extract_source",
    "extract_to_folder",
    "find_map",
    "gameformer_arrays",
    "inputs",
    "list_logs",
    "load_map",
    "main",
    "quaternion_yaw",
    "select",
]
