"""Does TracIn need every epoch's checkpoint? Rankings of checkpoint subsets against all of them.

    python experiments/tracin_subsets.py [--workdir runs] [--out WORKDIR/report/tracin_subsets]

TracIn sums `lr_k <g_i(theta_k), g_val(theta_k)>` over the reference run's checkpoints, one full
gradient pass per checkpoint, so its cost grows with their number. This computes each checkpoint's
term once (jvp mode), then, for subsets (every j-th epoch counted back from the last, the last few,
the last one), the Spearman rho of the subset's sum with the sum over all checkpoints, the overlap
of their top and bottom quartiles, and the cost as a fraction of a training run (the reference
run's own `fit_seconds`). Writes `subsets.json` (with the per-checkpoint terms' digest) and
`subsets.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments import options, stats
from experiments.layout import Layout
from experiments.reporting import loading
from gf_jax import atomic, cli, runtime
from gf_jax.data import store
from gf_jax.data.schema import DataError
from valuation import checkpoints


def subsets(k: int) -> dict[str, list[int]]:
    """Named subsets of checkpoint indices 0..k-1 (`valuation.checkpoints` names), each ending
    at the last one."""
    names = ["all", *(f"every{j}" for j in (2, 3, 4, 5) if j < k)]
    names += [f"last{n}" for n in (1, 2, 3) if n < k]
    return {name: checkpoints.subset(k, name) for name in names}


def quartile_overlap(a_N: np.ndarray, b_N: np.ndarray, top: bool) -> float:
    """Share of a's top (or bottom) quartile that is also in b's."""
    q = max(1, len(a_N) // 4)
    order = (lambda s: np.argsort(-s)) if top else np.argsort
    return len(set(order(a_N)[:q]) & set(order(b_N)[:q])) / q


def per_checkpoint_terms(reference: Path, chunk: int) -> tuple[np.ndarray, list[dict], float]:
    """[K, N] TracIn terms lr_k <g_i, g_val> of every checkpoint, their info, seconds per pass."""
    from valuation import gameformer, tracin

    preset = loading.run_preset(reference)
    root = reference.parents[1] / "data"
    train = store.load_split(preset.data, "train", root=root, progress=False)
    val = store.load_split(preset.data, "val", root=root, progress=False)
    ckpts, info = gameformer.load_checkpoints(reference, "all")
    loss = gameformer.loss_fn(preset.model)
    train_ex = gameformer.examples(train, preset.model)
    val_ex = gameformer.examples(val, preset.model)
    terms, seconds = [], []
    for ckpt in ckpts:
        t0 = time.perf_counter()
        terms.append(tracin.tracin_scores(loss, [ckpt], train_ex, val_ex, chunk_size=chunk))
        seconds.append(time.perf_counter() - t0)
    # The first pass compiles; the steady cost of one pass is the best of the others.
    return np.stack(terms), info, float(min(seconds[1:] or seconds))


def compare(terms_KxN: np.ndarray, pass_seconds: float, train_seconds: float) -> list[dict]:
    full_N = terms_KxN.sum(axis=0)
    rows = []
    for name, idx in subsets(len(terms_KxN)).items():
        s_N = terms_KxN[idx].sum(axis=0)
        rows.append(
            {
                "subset": name,
                "checkpoints": len(idx),
                "epochs": ",".join(str(i + 1) for i in idx),
                "spearman vs all": stats.spearman(s_N, full_N),
                "top-quartile overlap": quartile_overlap(full_N, s_N, top=True),
                "bottom-quartile overlap": quartile_overlap(full_N, s_N, top=False),
                "cost / training run": len(idx) * pass_seconds / train_seconds,
            }
        )
    return rows


def parser() -> argparse.ArgumentParser:
    p = cli.script_parser("python experiments/tracin_subsets.py", __doc__, raw_text=True)
    p.add_argument("--workdir", default="runs", help="holds the reference run")
    p.add_argument("--data", default=None, help="the reference's --data, if it had one")
    p.add_argument("--out", default=None, help="default WORKDIR/report/tracin_subsets")
    p.add_argument(
        "--chunk", type=options.positive_int, default=32, help="examples per jitted scoring call"
    )
    return p


def reference_seconds(reference: Path) -> float:
    """The reference run's training seconds; a DataError naming its result.json otherwise."""
    path = reference / "result.json"
    if not path.exists():
        raise DataError(f"{reference}: no finished reference run (train one with run.py)")
    try:
        return float(json.loads(path.read_text())["fit_seconds"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: unreadable result ({type(e).__name__}: {e})") from None


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    layout = Layout(args.workdir)
    reference = layout.reference(args.data)
    train_seconds = reference_seconds(reference)
    terms, info, pass_seconds = per_checkpoint_terms(reference, args.chunk)
    rows = compare(terms, pass_seconds, train_seconds)
    out = Path(args.out) if args.out else layout.report / "tracin_subsets"
    record = {"reference": str(reference), "checkpoints": info, "pass_seconds": pass_seconds,
              "train_seconds": train_seconds, "rows": rows}  # fmt: skip
    table = stats.markdown_table(rows, list(rows[0]))
    atomic.write_json(out / "subsets.json", record)
    atomic.write_text(out / "subsets.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    runtime.use_tcmalloc()  # before any work: it may re-execute this process
    sys.exit(main())
