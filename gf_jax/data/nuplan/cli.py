"""`python -m gf_jax.data.nuplan extract --db DIR --maps DIR --out DIR [--workers N]`.

Writes GameFormer npz files, in parallel over logs, resumable, skipping (and reporting) failed
logs and scenarios. Flags are checked before any log is read (exit 2 naming the flag); a missing
`--db` or `--maps` input, or a run that leaves no scenario in `--out`, exits 1 with one line
saying why (`--strict`: also when any log or scenario failed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gf_jax import cli
from gf_jax.data.nuplan.config import ExtractConfig, unknown_types
from gf_jax.data.nuplan.extraction import extract_to_folder
from gf_jax.data.nuplan.log import list_logs
from gf_jax.data.nuplan.maps import check_map_root
from gf_jax.data.schema import NUPLAN_SCENARIO_TYPES, DataError

DESCRIPTION = (
    "Devkit-free nuPlan reader: SQLite log databases + GeoPackage maps -> GameFormer scenarios."
)


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m gf_jax.data.nuplan", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="write GameFormer npz files from nuPlan logs and maps")
    ex.add_argument("--db", required=True, help="folder of nuPlan .db logs (or one .db file)")
    ex.add_argument("--maps", required=True, help="map root holding <map_name>/<version>/map.gpkg")
    ex.add_argument("--out", required=True, help="output folder of <map_name>_<token>.npz files")
    ex.add_argument("--workers", type=int, default=1, help="processes (parallel over logs)")
    ex.add_argument("--per-type", type=int, default=1000, help="cap per scenario type (0: none)")
    ex.add_argument("--types", nargs="*", default=None, help="scenario types (default: the 14)")
    ex.add_argument("--float32-globals", action="store_true", help="GameFormer's float32 quirk")
    ex.add_argument("--strict", action="store_true", help="exit 1 if any log or scenario failed")
    ex.add_argument("--no-progress", action="store_true")
    return p


def config_from(args: argparse.Namespace) -> ExtractConfig:
    """The extraction config; a `cli.UsageError` naming the flag before anything is read."""
    if args.workers < 1:
        raise cli.UsageError(f"--workers: must be >= 1, got {args.workers}")
    if args.per_type < 0:
        raise cli.UsageError(f"--per-type: must be >= 0 (0: no cap), got {args.per_type}")
    types = tuple(args.types) if args.types else NUPLAN_SCENARIO_TYPES
    bad = unknown_types(types)
    if bad:
        raise cli.UsageError(
            f"--types: {', '.join(map(repr, bad))} not a nuPlan scenario type "
            "(the devkit's scenario mapping lists the 73 valid ones)"
        )
    return ExtractConfig(
        scenario_types=types, per_type=args.per_type or None, float32_globals=args.float32_globals
    )


def check_inputs(args: argparse.Namespace) -> None:
    """A DataError naming the flag of a missing `--db` or `--maps` input (before any work)."""
    for flag, check in (
        ("--db", lambda: list_logs(args.db)),
        ("--maps", lambda: check_map_root(args.maps)),
    ):
        try:
            check()
        except DataError as e:
            raise DataError(f"{flag} {e}") from None


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from(args)
    check_inputs(args)
    report = extract_to_folder(
        args.db, args.maps, args.out, config=cfg, workers=args.workers,
        progress=not args.no_progress,
    )  # fmt: skip
    for line in report.failure_lines():
        print(line, file=sys.stderr)
    report.check(types_flag="see --types")
    print(report.summary())
    if args.strict and report.failed:
        raise DataError(f"{args.db}: {len(report.failed_logs())} log(s) had failures (--strict)")
    return 0
