"""nuPlan GeoPackage maps read without the devkit: `NuPlanMap(gpkg)` and where maps live.

The vector layers GameFormer uses (lanes, baseline paths, lane connectors, lane groups, crosswalks)
are read with pyogrio/shapely (extra `[nuplan]`) and reprojected from EPSG:4326 to the UTM zone
named in the file's `meta` table. `NuPlanMap.query` returns the elements around a point: lane and
connector centrelines with their traffic-light codes, crosswalk rings, and the route's centrelines.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gf_jax.data.nuplan.config import ExtractConfig
from gf_jax.data.nuplan.features import TL_CODES, UNKNOWN_TL
from gf_jax.data.schema import DataError

MAP_LAYERS = (
    "lanes_polygons", "baseline_paths", "lane_connectors", "lane_groups_polygons",
    "lane_group_connectors", "crosswalks",
)  # fmt: skip
GEO_EXTRA = "nuplan"


def geo_modules() -> tuple[Any, Any, Any]:
    """pyogrio.raw, shapely and pyproj, imported on first use (optional extra)."""
    try:
        import pyogrio.raw
        import pyproj
        import shapely
    except ImportError as e:
        raise ImportError(
            f"reading nuPlan maps needs the optional extra: pip install 'gf-jax[{GEO_EXTRA}]' "
            f"({e.name} is missing)"
        ) from e
    return pyogrio.raw, shapely, pyproj


def map_id(v: Any) -> str:
    """Map ids as strings ('' for null), whether stored as integers, floats or text."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


class NuPlanMap:
    """The vector layers of one `map.gpkg` that GameFormer uses, reprojected to UTM.

    Needs the optional extra `[nuplan]` (pyogrio, shapely, pyproj)."""

    def __init__(self, gpkg_path: str | os.PathLike):
        self.path = Path(gpkg_path)
        raw, shapely, pyproj = geo_modules()
        self._shapely = shapely
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such map file")
        self.crs = self._projected_crs()
        self.layers = {layer: self._read_layer(raw, pyproj, layer) for layer in MAP_LAYERS}
        self.baseline = self._baselines()
        self.lanes_of_group = self._group("lanes_polygons", "lane_group_fid", "lane_fid")
        self.connectors_of_group = self._group("lane_connectors", "lane_group_connector_fid", None)

    def _read_layer(self, raw: Any, pyproj: Any, layer: str) -> dict[str, Any]:
        """One layer's fids, UTM geometries, attribute columns and spatial index."""
        shapely = self._shapely
        try:
            meta, fids, geom, fields = raw.read(self.path, layer=layer, return_fids=True)
        except Exception as e:  # pyogrio raises several types for missing layers/bad files
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(
                f"{self.path}: missing or unreadable map layer '{layer}' ({msg})"
            ) from e
        geoms = shapely.from_wkb(geom)
        src = meta.get("crs") or "EPSG:4326"
        to_utm = pyproj.Transformer.from_crs(src, self.crs, always_xy=True)
        geoms = shapely.transform(geoms, lambda xy, t=to_utm: np.column_stack(t.transform(*xy.T)))
        cols = {str(n): np.asarray(v) for n, v in zip(meta["fields"], fields, strict=True)}
        return {
            "fid": np.asarray(fids).astype(np.int64),
            "geom": geoms,
            "cols": cols,
            "tree": shapely.STRtree(geoms),
        }

    def _baselines(self) -> dict[tuple[str, str], np.ndarray]:
        """Baseline paths (centrelines) by lane and by lane connector."""
        bp = self.layers["baseline_paths"]
        baseline: dict[tuple[str, str], np.ndarray] = {}
        for kind in ("lane_fid", "lane_connector_fid"):
            col = bp["cols"].get(kind)
            if col is None:
                raise DataError(f"{self.path}: baseline_paths: missing column '{kind}'")
            for i, v in enumerate(col):
                key = map_id(v)
                if key:
                    baseline[(kind, key)] = self._shapely.get_coordinates(bp["geom"][i])
        return baseline

    def _projected_crs(self) -> str:
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: no readable 'meta' table ({e})") from e
        crs = rows.get("projectedCoordSystem")
        if not crs:
            raise DataError(f"{self.path}: meta table lacks 'projectedCoordSystem'")
        return str(crs)

    def _group(self, layer: str, group_col: str, id_col: str | None) -> dict[str, list[str]]:
        lay = self.layers[layer]
        if group_col not in lay["cols"]:
            raise DataError(f"{self.path}: {layer}: missing column '{group_col}'")
        ids = lay["cols"][id_col] if id_col in lay["cols"] else lay["fid"]
        out: dict[str, list[str]] = {}
        for g, i in zip(lay["cols"][group_col], ids, strict=True):
            out.setdefault(map_id(g), []).append(map_id(i))
        return out

    def _near(self, layer: str, box: Any) -> list[int]:
        lay = self.layers[layer]
        return sorted(lay["tree"].query(box, predicate="intersects").tolist())

    def _centreline(self, kind: str, ident: str) -> np.ndarray | None:
        return self.baseline.get((kind, ident))

    def _lanes(self, box: Any, lights: dict[int, str]) -> tuple[list[np.ndarray], list[int]]:
        """Lane then lane-connector centrelines in the box, with their light codes."""
        lanes: list[np.ndarray] = []
        tl: list[int] = []
        lp = self.layers["lanes_polygons"]
        lane_ids = lp["cols"].get("lane_fid", lp["fid"])
        for i in self._near("lanes_polygons", box):
            c = self._centreline("lane_fid", map_id(lane_ids[i]))
            if c is not None:
                lanes.append(c)
                tl.append(UNKNOWN_TL)
        lc = self.layers["lane_connectors"]
        for i in self._near("lane_connectors", box):
            fid = int(lc["fid"][i])
            c = self._centreline("lane_connector_fid", str(fid))
            if c is not None:
                lanes.append(c)
                tl.append(TL_CODES.get(lights.get(fid, ""), UNKNOWN_TL))
        return lanes, tl

    def _route(self, box: Any, route_ids: Sequence[str]) -> list[np.ndarray]:
        """Centrelines of the route's roadblocks from the first one in the box to the first gap."""
        in_view = {str(int(self.layers["lane_groups_polygons"]["fid"][i]))
                   for i in self._near("lane_groups_polygons", box)}  # fmt: skip
        in_view |= {str(int(self.layers["lane_group_connectors"]["fid"][i]))
                    for i in self._near("lane_group_connectors", box)}  # fmt: skip
        kept: list[str] = []
        for rid in route_ids:
            if rid in in_view:
                kept.append(rid)
            elif kept:
                break
        route: list[np.ndarray] = []
        for rid in kept:
            if rid in self.lanes_of_group:
                parts = [self._centreline("lane_fid", i) for i in self.lanes_of_group[rid]]
            else:
                parts = [
                    self._centreline("lane_connector_fid", i)
                    for i in self.connectors_of_group.get(rid, [])
                ]
            route += [c for c in parts if c is not None]
        return route

    def query(
        self, xy: np.ndarray, lights: dict[int, str], route_ids: Sequence[str], cfg: ExtractConfig
    ) -> tuple[list[np.ndarray], list[int], list[np.ndarray], list[np.ndarray]]:
        """Map elements intersecting the axis-aligned square xy +- radius: lane and connector
        centrelines with light codes, crosswalk rings, and the centrelines of the route's
        roadblocks from the first one in the square up to the first gap."""
        r = cfg.map_radius
        box = self._shapely.box(xy[0] - r, xy[1] - r, xy[0] + r, xy[1] + r)
        lanes, tl = self._lanes(box, lights)
        cw = self.layers["crosswalks"]
        crosswalks = [
            self._shapely.get_coordinates(self._shapely.get_exterior_ring(cw["geom"][i]))
            for i in self._near("crosswalks", box)
        ]
        route = self._route(box, route_ids)
        if cfg.float32_globals:
            lanes, crosswalks, route = (
                [a.astype(np.float32) for a in group] for group in (lanes, crosswalks, route)
            )
        return lanes, tl, crosswalks, route


@functools.lru_cache(maxsize=8)
def load_map(gpkg_path: str) -> NuPlanMap:
    """A map, read once per process."""
    return NuPlanMap(gpkg_path)


def check_map_root(map_root: str | os.PathLike) -> list[Path]:
    """The `<map_root>/<map_name>/<version>/map.gpkg` files; DataError when the root is missing or
    holds none (checked before any log is read)."""
    root = Path(map_root)
    if not root.is_dir():
        raise DataError(f"{root}: no such nuPlan map folder")
    found = sorted(root.glob("*/*/map.gpkg"))
    if not found:
        raise DataError(f"{root}: no nuPlan maps (<map_name>/<version>/map.gpkg) in this folder")
    return found


def find_map(map_root: str | os.PathLike, map_name: str) -> Path:
    """`<map_root>/<map_name>/<version>/map.gpkg` (the newest version folder)."""
    root = Path(map_root)
    found = sorted((root / map_name).glob("*/map.gpkg"))
    if not found:
        raise DataError(f"{root}: no map {map_name}/<version>/map.gpkg")
    return found[-1]
