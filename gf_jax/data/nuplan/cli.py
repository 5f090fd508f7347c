"""`python -m gf_jax.data.nuplan extract --db DIR --maps DIR --out DIR [--workers N]`.

Writes GameFormer npz files, in parallel over logs, resumable, skipping (and reporting) failed
scenarios.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gf_jax.data.nuplan.config import ExtractConfig
from gf_jax.data.nuplan.extraction import extract_to_folder
from gf_jax.data.schema import NUPLAN_SCENARIO_TYPES, DataError

DESCRIPTION = (
    "Devkit-free nuPlan reader: SQLite log databases + GeoPackage maps -> GameFormer scenarios."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gf_jax.data.nuplan", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="write GameFormer npz files from nuPlan logs and maps")
    ex.add_argument("--db", required=True, help="folder of nuPlan .db logs (or one .db file)")
    ex.add_argument("--maps", required=True, help="map root holding <map_name>/<version>/map.gpkg")
    ex.add_argument("--out", required=True, help="output folder of <map_name>_<token>.npz files")
    ex.add_argument("--workers", type=int, default=1, help="processes (parallel over logs)")
    ex.add_argument("--per-type", type=int, default=1000, help="cap per scenario type (0: none)")
    ex.add_argument("--types", nargs="*", default=None, help="scenario types (default: the 14)")
    ex.add_argument("--float32-globals", action="store_true", help="GameFormer's float32 quirk")
    ex.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = ExtractConfig(
        scenario_types=tuple(args.types) if args.types else NUPLAN_SCENARIO_TYPES,
        per_type=args.per_type or None,
        float32_globals=args.float32_globals,
    )
    try:
        report = extract_to_folder(
            args.db, args.maps, args.out, config=cfg, workers=args.workers,
            progress=not args.no_progress,
        )  # fmt: skip
    except (DataError, ImportError) as e:
        print(e, file=sys.stderr)
        return 1
    for where, err in report.failed:
        print(f"skipped {where}: {err}", file=sys.stderr)
    print(report.summary())
    return 0
