"""Fault injection: `python -m gf_jax.data.nuplan extract` and the `nuplan:` data source.

Each fault asserts the exit code (2: a bad flag, refused before any log is read; 1: bad or missing
input), one `error:` line naming the file or flag, no output left behind, and that the same
command succeeds once the input is fixed. The logs and maps are tiny ones written from the
procedural world (`gf_jax.data.nuplan.writer`).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from fault_harness import assert_no_new_files, assert_refused, files_under, run_cli

from gf_jax.config import DataConfig
from gf_jax.data import gameformer_npz, nuplan, store
from gf_jax.data.schema import DataError

N_LOGS = 4  # one scenario per log; the nuplan: source needs 3 logs for train/val/test


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(db dir, map root) of N_LOGS procedural scenarios, written once for the module."""
    pytest.importorskip("pyogrio")
    pytest.importorskip("pyproj")
    from gf_jax.data.nuplan import recording, writer

    world = recording.simulate(N_LOGS, seed=1, city_mix=recording.CITY_MIX)
    db, maps, _ = writer.write_dataset(tmp_path_factory.mktemp("nuplan"), world)
    return db, maps


@pytest.fixture
def inputs(pristine: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A private copy of (db dir, map root) to break, and the output folder (not yet made)."""
    db, maps = (Path(shutil.copytree(p, tmp_path / p.name)) for p in pristine)
    return db, maps, tmp_path / "out"


def extract_argv(db: Path, maps: Path, out: Path) -> list[str]:
    return ["extract", "--db", str(db), "--maps", str(maps), "--out", str(out), "--no-progress"]


def assert_extracts(db: Path, maps: Path, out: Path, capsys: pytest.CaptureFixture) -> None:
    """The fixed input extracts every log's scenario (the rerun half of each fault)."""
    outcome = run_cli(nuplan.main, extract_argv(db, maps, out), capsys)
    assert outcome.code == 0 and not outcome.errors, outcome
    assert f"{N_LOGS} scenarios written" in outcome.stdout
    assert len(gameformer_npz.list_files(out)) == N_LOGS


def restore(broken: Path, pristine: Path) -> None:
    shutil.rmtree(broken)
    shutil.copytree(pristine, broken)


def test_every_log_garbage(inputs, pristine, capsys):
    db, maps, out = inputs
    logs = sorted(db.glob("*.db"))
    for log in logs:
        log.write_bytes(b"not a database" * 100)
    outcome = run_cli(nuplan.main, extract_argv(db, maps, out), capsys)
    assert_refused(outcome, 1, db, logs[0], "not a readable SQLite database")
    assert f"{N_LOGS} of {N_LOGS} log(s) failed" in outcome.errors[0]
    assert not out.exists()  # no empty output folder, no sidecar
    restore(db, pristine[0])
    assert_extracts(db, maps, out, capsys)


def test_every_log_missing_a_table(inputs, pristine, capsys):
    db, maps, out = inputs
    logs = sorted(db.glob("*.db"))
    for log in logs:
        with sqlite3.connect(log) as c:
            c.execute("DROP TABLE scenario_tag")
    outcome = run_cli(nuplan.main, extract_argv(db, maps, out), capsys)
    assert_refused(outcome, 1, logs[0], "missing table 'scenario_tag'")
    assert not out.exists()
    restore(db, pristine[0])
    assert_extracts(db, maps, out, capsys)


@pytest.mark.parametrize("flag", ["--db", "--maps"])
def test_missing_input_folder(inputs, capsys, flag):
    db, maps, out = inputs
    gone = out.parent / "no-such-folder"
    argv = extract_argv(gone if flag == "--db" else db, gone if flag == "--maps" else maps, out)
    before = files_under(out.parent)
    assert_refused(run_cli(nuplan.main, argv, capsys), 1, flag, gone)
    assert_no_new_files(out.parent, before)
    assert_extracts(db, maps, out, capsys)


def test_map_layer_missing(inputs, pristine, capsys):
    db, maps, out = inputs
    gpkgs = sorted(maps.glob("*/*/map.gpkg"))
    for gpkg in gpkgs:  # every city's map: no log can be extracted
        with sqlite3.connect(gpkg) as c:
            c.execute("DROP TABLE crosswalks")
            c.execute("DELETE FROM gpkg_contents WHERE table_name = 'crosswalks'")
            c.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = 'crosswalks'")
    outcome = run_cli(nuplan.main, extract_argv(db, maps, out), capsys)
    assert_refused(outcome, 1, "map.gpkg", "map layer 'crosswalks'")
    assert any(str(g) in outcome.errors[0] for g in gpkgs)
    assert not out.exists()
    restore(maps, pristine[1])
    assert_extracts(db, maps, out, capsys)


@pytest.mark.parametrize(
    ("bad", "flag"),
    [
        (["--types", "starting_left_turn", "flying_cars"], "--types"),
        (["--per-type", "-1"], "--per-type"),
        (["--workers", "0"], "--workers"),
        (["--per-type", "many"], "--per-type"),
    ],
)
def test_bad_flag_refused_before_any_log_is_read(inputs, capsys, bad, flag):
    db, maps, out = inputs
    gone = out.parent / "no-such-folder"  # would be the error if a log were read first
    before = files_under(out.parent)
    outcome = run_cli(nuplan.main, [*extract_argv(gone, maps, out), *bad], capsys)
    assert_refused(outcome, 2, flag)
    assert str(gone) not in outcome.errors[0]
    assert_no_new_files(out.parent, before)
    assert_extracts(db, maps, out, capsys)


def test_no_scenario_of_the_selected_types(inputs, capsys):
    db, maps, out = inputs
    argv = [*extract_argv(db, maps, out), "--types", "on_carpark"]  # valid, absent from the logs
    outcome = run_cli(nuplan.main, argv, capsys)
    assert_refused(outcome, 1, db, "--types", f"in {N_LOGS} log(s)")
    assert not out.exists()
    assert_extracts(db, maps, out, capsys)


def test_nuplan_source_names_skipped_logs_and_total_failure(inputs, pristine, tmp_path, capsys):
    db, maps, _ = inputs
    cfg = DataConfig(source=f"nuplan:{db},{maps}")
    cache = tmp_path / "data"
    logs = sorted(db.glob("*.db"))
    for log in logs:
        log.write_bytes(b"garbage" * 200)
    with pytest.raises(DataError) as e:
        store.load_splits(cfg, root=cache, progress=False)
    message = str(e.value)
    assert "\n" not in message and "no nuPlan scenario extracted" in message
    assert str(logs[0]) in message and "not a readable SQLite database" in message
    assert "no .npz" not in message
    assert not list(cache.glob("nuplan-*"))  # no extraction folder left behind
    # Fixed but for one log: the rest trains, and the skipped log is shown with its reason.
    restore(db, pristine[0])
    logs[-1].write_bytes(b"garbage" * 200)
    capsys.readouterr()
    splits = store.load_splits(cfg, root=cache, progress=False)
    assert sum(len(s) for s in splits.values()) == N_LOGS - 1
    err = capsys.readouterr().err
    assert f"nuplan: skipped {logs[-1]}: not a readable SQLite database" in err


def test_one_bad_log_is_named_and_strict_refuses_it(inputs, pristine, capsys):
    db, maps, out = inputs
    bad = sorted(db.glob("*.db"))[0]
    bad.write_bytes(b"garbage" * 200)
    capsys.readouterr()
    assert nuplan.main(extract_argv(db, maps, out)) == 0  # the others are extracted
    err = capsys.readouterr().err
    assert f"skipped {bad}: not a readable SQLite database" in err and "error:" not in err
    strict = run_cli(nuplan.main, [*extract_argv(db, maps, out), "--strict"], capsys)
    assert_refused(strict, 1, db, "--strict")
    restore(db, pristine[0])
    assert run_cli(nuplan.main, [*extract_argv(db, maps, out), "--strict"], capsys).code == 0
    assert len(gameformer_npz.list_files(out)) == N_LOGS
