"""Every number of the attribution report, from the workdir's files alone (no data, no models).

`load` reads a workdir (`experiments.attribution.layout`); `summarize` turns it into one
JSON-ready dict: the LDS of every scorer with its interval, the retraining-noise ceiling, the
removal deltas, noise detection, the full-data and baseline metrics, and the wall times. Only
finished runs count; what is still missing is counted, never guessed.

Targets. `loss`: every validation scenario's loss after retraining (J targets; pair scorers
only, their [N, J] matrices). `ade`: the mean validation plan ADE (one target; every scorer, pair
scorers by their row means). Per-example scorers can only predict an aggregate, so they have no
`loss` entry. Each interval draws from its own stream of the seed (`Streams.BOOTSTRAP` and the
entry's name), so the report is the same on every machine.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from experiments.attribution import lds, noise, retrain, scorers
from experiments.attribution.config import AttributionConfig, Streams, is_pair_scorer
from experiments.attribution.layout import (
    Layout,
    ceiling_name,
    reference_name,
    subset_name,
)

RUN_KINDS = ("reference", "subset", "ceiling", "removal")


@dataclasses.dataclass(frozen=True)
class Workdir:
    """A benchmark's stored outputs.

    Attributes:
      cfg: the config of the latest invocation.
      config: config.json as saved (the preset and data digests too).
      corrupted_N: the training set's corruption flags.
      masks_RxN: the planned random subsets.
      scores: scorer -> (per-example [N], pairs [N, J] or None, info).
      runs: run name -> (outcome record, per-scenario arrays [J]).
      baselines: planner -> split -> metrics.
    """

    cfg: AttributionConfig
    config: dict[str, Any]
    corrupted_N: np.ndarray
    masks_RxN: np.ndarray
    scores: dict[str, tuple[np.ndarray, np.ndarray | None, dict[str, Any]]]
    runs: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]
    baselines: dict[str, Any]


def load(root: str | Path) -> Workdir:
    """Reads a workdir; FileNotFoundError naming the first missing file."""
    layout = Layout(root, scratch=Path(root))  # scratch is never read here
    config = json.loads(layout.config.read_text())
    with np.load(layout.subsets, allow_pickle=False) as z:
        n = int(z["n"])
        masks_RxN = np.unpackbits(z["packed"], axis=1, count=n).astype(bool)
    with np.load(layout.split, allow_pickle=False) as z:
        corrupted_N = z["corrupted"].astype(bool)
    cfg = AttributionConfig.from_saved(config["attribution"])
    named = {
        name: scorers.load(layout.score_file(name))
        for name in cfg.scorer_names
        if layout.score_file(name).exists()
    }
    runs = {}
    for folder in sorted(layout.retrains.glob("*")) if layout.retrains.is_dir() else []:
        done = retrain.load(layout, folder.name)
        if done is not None:
            runs[folder.name] = done
    baselines = json.loads(layout.baselines.read_text()) if layout.baselines.exists() else {}
    return Workdir(cfg, config, corrupted_N, masks_RxN, named, runs, baselines)


def _rng(cfg: AttributionConfig, entry: str) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, Streams.BOOTSTRAP, zlib.crc32(entry.encode())])


def _estimate(w: Workdir, entry: str, fn: Any, *args: Any) -> dict[str, Any]:
    return fn(*args, resamples=w.cfg.bootstrap, confidence=w.cfg.confidence, rng=_rng(w.cfg, entry))


def finished_subsets(w: Workdir, prefix_of: Any = subset_name) -> list[int]:
    """Indices r of the planned subsets whose run (`subset_name` or `ceiling_name`) finished."""
    return [r for r in range(len(w.masks_RxN)) if prefix_of(r) in w.runs]


def outcome_matrix(w: Workdir, names: list[str], key: str) -> np.ndarray:
    """[R, J] per-scenario `key` (`loss`, `plan_ade`) of the named runs, in order."""
    return np.stack([w.runs[n][1][key].astype(np.float64) for n in names])


def lds_rows(w: Workdir) -> list[dict[str, Any]]:
    """Per scorer: its kind and LDS on both targets (None where it does not apply or too few
    subsets have finished: at least 3 are needed for a rank correlation)."""
    done = finished_subsets(w)
    names = [subset_name(r) for r in done]
    masks_RxN = w.masks_RxN[done]
    rows = []
    for scorer, (per_N, pairs_NxJ, _) in w.scores.items():
        row: dict[str, Any] = {"scorer": scorer, "pairs": is_pair_scorer(scorer)}
        row["loss"] = row["ade"] = None
        if len(done) >= 3:
            if pairs_NxJ is not None:
                loss_RxJ = outcome_matrix(w, names, "loss")
                row["loss"] = _estimate(
                    w, f"loss/{scorer}", lds.lds, pairs_NxJ, masks_RxN, loss_RxJ
                )
            ade_R = outcome_matrix(w, names, "plan_ade").mean(axis=1)
            row["ade"] = _estimate(w, f"ade/{scorer}", lds.lds, per_N, masks_RxN, ade_R)
        rows.append(row)
    return rows


def ceiling(w: Workdir) -> dict[str, Any] | None:
    """The agreement of the same subsets' outcomes under the two training seeds, per target,
    or None with fewer than 3 finished pairs."""
    pairs = [r for r in finished_subsets(w, ceiling_name) if subset_name(r) in w.runs]
    if len(pairs) < 3:
        return None
    a = [subset_name(r) for r in pairs]
    b = [ceiling_name(r) for r in pairs]
    loss_a, loss_b = outcome_matrix(w, a, "loss"), outcome_matrix(w, b, "loss")
    ade_a = outcome_matrix(w, a, "plan_ade").mean(axis=1)
    ade_b = outcome_matrix(w, b, "plan_ade").mean(axis=1)
    return {
        "pairs": len(pairs),
        "loss": _estimate(w, "ceiling/loss", lds.agreement, loss_a, loss_b),
        "ade": _estimate(w, "ceiling/ade", lds.agreement, ade_a, ade_b),
    }


def full_data(w: Workdir) -> dict[str, Any] | None:
    """The full-data model (reference run 0): its val and test metrics, and every reference's
    val and test plan ADE (their spread across seeds)."""
    first = reference_name(w.cfg.seed)
    if first not in w.runs:
        return None
    record = w.runs[first][0]
    seeds = [s for s in w.cfg.reference_seeds if reference_name(s) in w.runs]
    by_seed = {
        s: {
            "val": w.runs[reference_name(s)][0]["val"]["plan_ade"],
            "test": w.runs[reference_name(s)][0]["test"].get("plan_ade", float("nan")),
        }
        for s in seeds
    }
    return {"val": record["val"], "test": record["test"], "references": by_seed}


def retrained(w: Workdir) -> dict[str, dict[str, list[float]]]:
    """Val and test plan ADE of every finished retrain, by kind (subset, ceiling, removal): did
    the retrains learn, not only the full-data model?"""
    out: dict[str, dict[str, list[float]]] = {}
    for record, _ in w.runs.values():
        if record["kind"] != "reference":
            by_split = out.setdefault(record["kind"], {"val": [], "test": []})
            by_split["val"].append(record["val"]["plan_ade"])
            by_split["test"].append(record["test"].get("plan_ade", float("nan")))
    return out


def removal_rows(w: Workdir) -> list[dict[str, Any]]:
    """Every finished removal: scorer, side, fraction, val and test plan ADE, and their deltas
    against the full-data model (positive: removing those examples hurt)."""
    full = full_data(w)
    rows = []
    for record, _ in w.runs.values():
        if record["kind"] != "removal":
            continue
        val, test = record["val"]["plan_ade"], record["test"].get("plan_ade", float("nan"))
        row = {**record["labels"], "val": val, "test": test, "n_train": record["n_train"]}
        if full is not None:
            row["delta_val"] = val - full["val"]["plan_ade"]
            row["delta_test"] = test - full["test"].get("plan_ade", float("nan"))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["scorer"], r["side"], r["fraction"], r.get("draw", 0)))


def timing(w: Workdir) -> dict[str, Any]:
    """Wall seconds: retrains by kind (sum and mean), and scoring per scorer."""
    by_kind: dict[str, list[float]] = {k: [] for k in RUN_KINDS}
    for record, _ in w.runs.values():
        seconds = (record.get("fit_seconds") or 0.0) + record.get("outcome_seconds", 0.0)
        by_kind.setdefault(record["kind"], []).append(seconds)
    out: dict[str, Any] = {
        k: {"runs": len(v), "total": float(np.sum(v)), "mean": float(np.mean(v)) if v else None}
        for k, v in by_kind.items()
    }
    out["scoring"] = {name: info.get("seconds") for name, (_, _, info) in w.scores.items()}
    retrains = sum(out[k]["total"] for k in RUN_KINDS)
    out["total"] = retrains + sum(v or 0.0 for v in out["scoring"].values())
    return out


def summarize(w: Workdir) -> dict[str, Any]:
    """Everything the report shows, JSON-ready."""
    n_train = int(w.masks_RxN.shape[1])
    planned = {
        "subsets": w.cfg.subsets,
        "ceiling": min(w.cfg.ceiling_subsets, w.cfg.subsets),
        "removals": w.cfg.removal_count,
    }
    kinds = [record["kind"] for record, _ in w.runs.values()]
    return {
        "config": w.config,
        "n_train": n_train,
        "n_val": int(w.config["data"]["n_val"]),
        "planned": planned,
        "finished": {k: kinds.count(k) for k in RUN_KINDS},
        "lds": lds_rows(w),
        "ceiling": ceiling(w),
        "removal": removal_rows(w),
        "noise": {
            name: noise.detection(per_N, w.corrupted_N, w.cfg.inspect_fraction)
            for name, (per_N, _, _) in w.scores.items()
        },
        "full_data": full_data(w),
        "retrained": retrained(w),
        "baselines": w.baselines,
        "timing": timing(w),
    }
