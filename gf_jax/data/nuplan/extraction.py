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
import re
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
from gf_jax.data.nuplan.maps import check_map_root, find_map, load_map
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
    paths, _ = inputs(db_paths, map_root)
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
    """What `extract_to_folder` did; `check` turns "nothing available" into a DataError."""

    written: int
    skipped: int  # already there (resumed)
    failed: list[tuple[str, str]]  # (log or log:token, one-line error)
    seconds: float
    source: str = ""  # the --db input, to name in messages
    logs: int = 0  # log files read
    selected: int = 0  # candidate scenarios after the type filter and the per-type cap

    def summary(self) -> str:
        return (
            f"{self.written} scenarios written, {self.skipped} already present, "
            f"{len(self.failed)} failed ({self.seconds:.1f} s)"
        )

    def failed_logs(self) -> dict[str, str]:
        """{log: its first error} of every log with a failure, in report order."""
        out: dict[str, str] = {}
        for where, err in self.failed:
            m = _SCENARIO.match(where)
            out.setdefault(m.group(1) if m else where, _line(where, err))
        return out

    def failure_lines(self, limit: int | None = None) -> list[str]:
        """`skipped LOG: reason` per failed log (the first `limit`, then how many more)."""
        logs = self.failed_logs()
        lines = [f"skipped {err}" for err in logs.values()]
        if limit is not None and len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more failed logs"]
        return lines

    def check(self, types_flag: str = "") -> ExtractReport:
        """Self, or a one-line DataError saying why no scenario is available (`types_flag`: the
        option that selects the types, named when none of them is found)."""
        if self.written + self.skipped:
            return self
        logs = self.failed_logs()
        flag = f" ({types_flag})" if types_flag else ""
        none = f"no scenario of the selected types{flag} in {self.logs - len(logs)} log(s)"
        if logs:
            first = next(iter(logs.values()))
            why = f"{len(logs)} of {self.logs} log(s) failed, first {first}"
            why += f"; {none}" if self.selected == 0 and len(logs) < self.logs else ""
        else:
            why = none
        raise DataError(f"{self.source}: no nuPlan scenario extracted: {why}")


_SCENARIO = re.compile(r"^(.*):([0-9a-f]{16})$")  # "log:token" of a scenario-level failure


def _line(where: str, err: str) -> str:
    """One line naming the log: errors that already start with it are kept as they are."""
    m = _SCENARIO.match(where)
    log = m.group(1) if m else where
    return err if err.startswith(log) else f"{where}: {err}"


def inputs(
    db_paths: str | os.PathLike | Sequence[str | os.PathLike], map_root: str | os.PathLike
) -> tuple[list[Path], list[Path]]:
    """The log files and map files of an extraction, checked before any is read: a missing
    `--db` or `--maps` input is a DataError naming it."""
    return list_logs(db_paths), check_map_root(map_root)


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
    leaves a partial file behind; a run that extracts nothing leaves no output folder behind
    (`ExtractReport.check` says why)."""
    t0 = time.perf_counter()
    out = Path(out)
    logs, _ = inputs(db_paths, map_root)
    cands, failed = select(logs, config)
    source = str(db_paths) if isinstance(db_paths, str | os.PathLike) else str(logs[0].parent)
    report = ExtractReport(0, 0, failed, 0.0, source, len(logs), len(cands))
    if not cands:
        report.seconds = time.perf_counter() - t0
        return report
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    before = {c for c in cands if (out / _file(c)).exists()}
    results = _run(cands, map_root, config, str(out), workers, progress)
    failed += [(f"{c.db}:{c.token}", err) for c, _, err in results if err]
    ok = [c for c, _, err in results if not err]
    if ok:
        _write_sidecar(out, ok)
    elif created and not any(out.iterdir()):
        out.rmdir()  # nothing extracted: leave no empty output folder behind
    report.written, report.skipped = len(ok) - len(before), len(before)
    report.seconds = time.perf_counter() - t0
    return report


def _write_sidecar(out: Path, ok: list[Candidate]) -> None:
    sidecar = gameformer_npz.read_sidecar(out)
    for c in ok:
        sidecar[_file(c)] = {
            "city": gameformer_npz.city_of_map(c.map_name),
            "scenario_type": c.scenario_type,
            "corrupted": False,
            "log": Path(c.db).stem,  # the dataset cache splits by log
        }
    atomic.write_json(out / gameformer_npz.META_FILE, sidecar)


SHOWN_FAILURES = 5  # failed logs listed by the `nuplan:` data source (then a count)


def extract_source(
    db: str | os.PathLike, map_root: str | os.PathLike, out: str | os.PathLike, *, progress: bool
) -> ExtractReport:
    """The `nuplan:DB_DIR,MAPS_DIR` data source's extraction into `out`: skipped logs are printed
    with their reasons (the first few, then a count) and extracting nothing is a DataError that
    says why."""
    report = extract_to_folder(db, map_root, out, progress=progress)
    for line in report.failure_lines(SHOWN_FAILURES):
        print(f"nuplan: {line}", file=sys.stderr)
    return report.check()
