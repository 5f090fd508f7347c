"""nuPlan logs -> GameFormer scenarios: in memory (`extract`) or as npz files (`extract_to_folder`).

Work is split by log over processes (`workers`); a scenario that fails is skipped and reported, a
log that cannot be read skips its scenarios. `extract_to_folder` is resumable: files already in the
output folder are kept, and each new file is written atomically next to the metadata sidecar.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gf_jax import atomic
from gf_jax.data import gameformer_npz
from gf_jax.data.nuplan.config import DEFAULT_CONFIG, ExtractConfig
from gf_jax.data.nuplan.features import gameformer_arrays
from gf_jax.data.nuplan.log import Candidate, NuPlanLog, list_logs, select
from gf_jax.data.nuplan.maps import find_map, load_map
from gf_jax.data.schema import LAYOUT, DataError, ScenarioSet, empty_meta, validate_arrays

# (candidate, arrays or None when written to a folder, one-line error or "")
Result = tuple[Candidate, dict[str, np.ndarray] | None, str]


def _extract_log(
    db: str, cands: list[Candidate], map_root: str, cfg: ExtractConfig, out: str | None
) -> list[Result]:
    """Features of one log's scenarios: (candidate, arrays or None when written to `out`, error).
    With `out`, files already there are skipped and each new file is written atomically."""
    results: list[Result] = []
    todo = cands
    if out is not None:
        todo = [c for c in cands if not (Path(out) / _file(c)).exists()]
        results += [(c, None, "") for c in cands if c not in todo]
    if not todo:
        return results
    try:
        log = NuPlanLog(db)
        nmap = load_map(str(find_map(map_root, log.map_name)))
    except (DataError, ImportError) as e:
        return results + [(c, None, str(e)) for c in todo]
    with log:
        for c in todo:
            try:
                arrays = gameformer_arrays(log.window(c.token, nmap, cfg))
                validate_arrays(arrays, f"{db}:{c.token}", batched=False)
            except (DataError, ValueError) as e:
                results.append((c, None, f"{db}: scenario {c.token}: {e}".splitlines()[0]))
                continue
            if out is not None:
                gameformer_npz.write_file(Path(out) / _file(c), arrays, c.map_name, c.token)
                results.append((c, None, ""))
            else:
                results.append((c, arrays, ""))
    return results


def _file(c: Candidate) -> str:
    return gameformer_npz.file_name(c.map_name, c.token)


def _run(
    cands: list[Candidate],
    map_root: str | os.PathLike,
    cfg: ExtractConfig,
    out: str | None,
    workers: int,
    progress: bool,
) -> list[Result]:
    """Extraction over logs, on `workers` processes (1: in this process), with a progress bar."""
    from tqdm.auto import tqdm

    by_log: dict[str, list[Candidate]] = {}
    for c in cands:
        by_log.setdefault(c.db, []).append(c)
    jobs = [(db, cs, str(map_root), cfg, out) for db, cs in by_log.items()]
    bar = tqdm(total=len(cands), desc="nuPlan scenarios", unit="scn", disable=not progress)
    results: list = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results += _extract_log(*job)
            bar.update(len(job[1]))
    else:
        # Forking a process that runs JAX threads is unsafe: spawn then.
        threaded = "jax" in sys.modules or threading.active_count() > 1
        ctx = multiprocessing.get_context("spawn" if threaded else "fork")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as ex:
            futures = [ex.submit(_extract_log, *job) for job in jobs]
            for f in concurrent.futures.as_completed(futures):
                part = f.result()
                results += part
                bar.update(len(part))
    bar.close()
    order = {(c.db, c.token): i for i, c in enumerate(cands)}
    return sorted(results, key=lambda r: order[(r[0].db, r[0].token)])


def extract(
    db_paths: str | os.PathLike | Sequence[str | os.PathLike],
    map_root: str | os.PathLike,
    *,
    config: ExtractConfig = DEFAULT_CONFIG,
    workers: int = 1,
    progress: bool = False,
) -> ScenarioSet:
    """The selected scenarios of the logs as a validated ScenarioSet (failed ones left out)."""
    paths = list_logs(db_paths)
    cands, _ = select(paths, config)
    ok = [(c, a) for c, a, err in _run(cands, map_root, config, None, workers, progress) if not err]
    if not ok:
        raise DataError(f"{paths[0].parent}: no nuPlan scenario could be extracted")
    return _scenario_set([c for c, _ in ok], [a for _, a in ok], str(paths[0].parent))


def _scenario_set(cands: list[Candidate], arrays: list[dict], source: str) -> ScenarioSet:
    n = len(cands)
    meta = empty_meta(
        n,
        map_name=np.array([c.map_name for c in cands], str),
        token=np.array([c.token for c in cands], str),
        city=np.array([gameformer_npz.city_of_map(c.map_name) for c in cands], str),
        scenario_type=np.array([c.scenario_type for c in cands], str),
    )
    stacked = {k: np.stack([a[k] for a in arrays]) for k in LAYOUT}
    return ScenarioSet(stacked, meta, source).validate()


@dataclasses.dataclass
class ExtractReport:
    written: int
    skipped: int  # already there (resumed)
    failed: list[tuple[str, str]]  # (log or scenario, one-line error)
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.written} scenarios written, {self.skipped} already present, "
            f"{len(self.failed)} failed ({self.seconds:.1f} s)"
        )


def extract_to_folder(
    db_paths: str | os.PathLike | Sequence[str | os.PathLike],
    map_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: ExtractConfig = DEFAULT_CONFIG,
    workers: int = 1,
    progress: bool = True,
) -> ExtractReport:
    """Writes `<out>/<map_name>_<token>.npz` per selected scenario plus the metadata sidecar.

    Resumable: existing files are kept. Files are written atomically, so an interrupted run never
    leaves a partial file behind."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cands, failed = select(list_logs(db_paths), config)
    before = {c for c in cands if (out / _file(c)).exists()}
    results = _run(cands, map_root, config, str(out), workers, progress)
    failed += [(f"{c.db}:{c.token}", err) for c, _, err in results if err]
    sidecar = gameformer_npz.read_sidecar(out)
    for c, _, err in results:
        if not err:
            sidecar[_file(c)] = {
                "city": gameformer_npz.city_of_map(c.map_name),
                "scenario_type": c.scenario_type,
                "corrupted": False,
                "log": Path(c.db).stem,  # the dataset cache splits by log
            }
    atomic.write_json(out / gameformer_npz.META_FILE, sidecar)
    ok = sum(1 for _, _, err in results if not err)
    return ExtractReport(ok - len(before), len(before), failed, time.perf_counter() - t0)
