"""`python -m gf_jax.data.real_samples preview --out DIR`: pictures of the real-sample scenarios."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gf_jax import cli
from gf_jax.data.real_samples.samples import DEFAULT_DIR, groups, load, write_licence

DESCRIPTION = (
    "Adapters for the small real driving samples: Argoverse 2 and nuScenes-mini -> ScenarioSets."
)


def preview(out: str | os.PathLike, *, root: str | os.PathLike = DEFAULT_DIR, per_log: int = 1):
    """One picture per log (its first `per_log` scenarios) plus a contact sheet and the licence."""
    from gf_jax import viz

    s = load(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = groups(s)
    picks = [i for name in dict.fromkeys(g) for i in np.nonzero(g == name)[0][:per_log]]
    paths = []
    for i in picks:
        p = out / f"{s.meta['scenario_type'][i]}_{s.meta['token'][i]}.png"
        viz.save_scenarios(s, [i], p, cols=1, panel=6.5, dpi=110)
        paths.append(p)
    sheet = Path(viz.save_scenarios(s, picks, out / "contact_sheet.png", cols=5))
    write_licence(out)
    return paths, sheet


def _check(args: argparse.Namespace) -> None:
    """Every flag, before the samples are read."""
    if args.per_log < 1:
        raise cli.UsageError(f"--per-log {args.per_log}: must be at least 1 picture per log")
    if not Path(args.root).is_dir():
        raise cli.UsageError(f"--root {args.root}: no such folder of real driving samples")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out}: exists and is not a folder")


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m gf_jax.data.real_samples", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="write PNG pictures of the real-sample scenarios")
    pv.add_argument("--out", required=True, help="folder for the PNGs and the licence (created)")
    pv.add_argument("--root", default=str(DEFAULT_DIR), help="the real driving samples folder")
    pv.add_argument("--per-log", type=int, default=1, help="pictures per log (>= 1)")
    args = parser.parse_args(argv)
    _check(args)
    paths, sheet = preview(args.out, root=args.root, per_log=args.per_log)
    s = load(args.root)
    kinds, n = np.unique(s.meta["scenario_type"], return_counts=True)
    counts = {str(k): int(v) for k, v in zip(kinds, n, strict=True)}
    print(f"{len(s)} scenarios from {len(set(groups(s)))} logs {counts}")
    print(f"wrote {len(paths)} pictures and {sheet}")
    return 0
