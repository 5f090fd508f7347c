"""nuPlan reader: tiny nuPlan-schema logs and maps written from the procedural world must extract to
the features the world produces directly; selection, CLI, resumption and malformed inputs."""

import shutil
import sqlite3

import numpy as np
import pytest

from gf_jax.data import gameformer_npz, nuplan
from gf_jax.data.nuplan import recording, writer
from gf_jax.data.schema import ARRAY_KEYS, NUPLAN_SCENARIO_TYPES, DataError

CM = 0.01


def _all_types(scenarios):
    return nuplan.ExtractConfig(scenario_types=tuple(sorted({s.scenario_type for s in scenarios})))


def _close(a, b):
    """Max difference per leading row, headings (channel 2) compared modulo 2 pi."""
    d = np.abs(a.astype(np.float64) - b)
    d[..., 2] = np.abs(np.angle(np.exp(1j * (a[..., 2] - b[..., 2].astype(np.float64)))))
    return d.reshape(len(a), -1).max(-1) if a.ndim > 1 else d


def _assert_polylines(got, exp, what):
    """Same real polylines to 1 cm in nearest-vertex order; rows at equal distance (adjacent pieces
    sharing their nearest vertex) may come in either order."""
    real_g, real_e = np.any(got != 0, axis=(1, 2)), np.any(exp != 0, axis=(1, 2))
    np.testing.assert_array_equal(real_g, real_e, err_msg=f"{what}: padding differs")
    dmin = lambda a: np.linalg.norm(a[..., :2], axis=-1).min(-1)  # noqa: E731
    np.testing.assert_allclose(dmin(got), dmin(exp), atol=CM, err_msg=f"{what}: order differs")
    free = list(np.nonzero(real_e)[0])
    for r in np.nonzero(real_g)[0]:
        err = [_close(got[r : r + 1], exp[m : m + 1])[0] for m in free]
        assert err and min(err) < CM, f"{what}: polyline {r} has no match within 1 cm"
        free.pop(int(np.argmin(err)))


def _assert_matches_world(arrays, sc, what):
    for k in ("ego_agent_past", "ego_agent_future"):
        assert _close(arrays[k], sc.expected[k]).max() < CM, f"{what}: {k}"
    for k in ("neighbor_agents_past", "neighbor_agents_future"):
        got, exp = arrays[k], sc.expected[k]
        np.testing.assert_array_equal(got == 0, exp == 0, err_msg=f"{what}: {k} padding")
        assert _close(got, exp).max() < CM, f"{what}: {k}"
    for k in ("lanes", "crosswalks", "route_lanes"):
        _assert_polylines(arrays[k], sc.expected[k], f"{what}: {k}")


def test_extraction_equals_the_world(world):
    scenarios, db, maps, tokens = world
    s = nuplan.extract(db, maps, config=_all_types(scenarios))
    assert len(s) == len(scenarios)
    cities = {sc.city for sc in scenarios}
    assert "singapore" in cities and len(cities) >= 3  # several UTM zones, left-hand traffic
    for sc, token in zip(scenarios, tokens, strict=True):
        j = list(s.meta["token"]).index(token)
        assert s.meta["map_name"][j] == sc.map_name and s.meta["city"][j] == sc.city
        assert s.meta["scenario_type"][j] == sc.scenario_type
        assert np.any(s.arrays["neighbor_agents_past"][j] != 0)
        _assert_matches_world({k: s.arrays[k][j] for k in ARRAY_KEYS}, sc, f"scenario {token}")
    # Traffic-light codes survive (green and red lanes exist in some signalised scenario).
    codes = s.arrays["lanes"][..., 3:7].reshape(-1, 4).sum(0)
    assert codes[0] > 0 and codes[2] > 0 and codes[1] == 0 and codes[3] > 0


def test_selection_types_scenes_and_caps(world):
    scenarios, db, _, tokens = world
    paths = nuplan.list_logs(db)
    default, failed = nuplan.select(paths)
    assert not failed
    want = [(t, sc.scenario_type) for sc, t in zip(scenarios, tokens, strict=True)
            if sc.scenario_type in NUPLAN_SCENARIO_TYPES]  # fmt: skip
    # One candidate per log: the tag in the first scene and the non-challenge tag are ignored; of
    # two allowed tags on a frame the alphabetically larger type wins.
    assert 0 < len(want) < len(scenarios)
    assert [(c.token, c.scenario_type) for c in default] == want
    capped, _ = nuplan.select(paths, nuplan.ExtractConfig(per_type=1))
    types = [c.scenario_type for c in capped]
    assert len(types) == len(set(types)) == len({c.scenario_type for c in default})


def test_log_api(world):
    scenarios, db, _, tokens = world
    sc, token = scenarios[0], tokens[0]
    with nuplan.NuPlanLog(nuplan.list_logs(db)[0]) as log:
        assert log.map_name == sc.map_name and len(log.tokens) == 2 * sc.frames - 1
        present = log.present_row(token)
        assert present == 2 * recording.PRESENT  # tag time - 3 s, on the 20 Hz clock
        states = log.ego_states(log.tokens[present].hex())
        assert states.shape == (101, 7)
        np.testing.assert_allclose(states, sc.ego[1:102], atol=1e-6)
        objs = log.tracked_objects(log.tokens[present].hex())
        assert {
            "track_token",
            "category",
            "x",
            "y",
            "heading",
            "vx",
            "vy",
            "width",
            "length",
        } == set(objs[0])
        cats = [o["category"] for o in objs]
        assert "traffic_cone" in cats and cats.index("traffic_cone") > cats.index("vehicle")
        assert all(len(o["track_token"]) == 16 for o in objs)
        with pytest.raises(DataError, match="history"):
            log.ego_states(log.tokens[3].hex())


def test_cli_parallel_resumable_and_reports_failures(world, tmp_path, capsys):
    scenarios, db, maps, _ = world
    logs = tmp_path / "db"
    shutil.copytree(db, logs)
    (logs / "zz_corrupt.db").write_bytes(b"not a database" * 100)
    out = tmp_path / "out"
    types = ["--types", *_all_types(scenarios).scenario_types]
    args = ["extract", "--db", str(logs), "--maps", str(maps), "--out", str(out), "--no-progress"]
    assert nuplan.main([*args, "--workers", "2", *types]) == 0
    captured = capsys.readouterr()
    assert f"{len(scenarios)} scenarios written" in captured.out
    assert "zz_corrupt.db" in captured.err and "not a readable SQLite" in captured.err
    files = gameformer_npz.list_files(out)
    assert len(files) == len(scenarios)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    files[0].unlink()
    mtime = files[1].stat().st_mtime_ns
    assert nuplan.main([*args, *types]) == 0
    assert f"1 scenarios written, {len(scenarios) - 1} already present" in capsys.readouterr().out
    assert files[1].stat().st_mtime_ns == mtime
    back = gameformer_npz.read_folder(out)
    assert set(back.meta["scenario_type"]) == {s.scenario_type for s in scenarios}


def _one_line(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


@pytest.mark.parametrize(
    ("name", "sql", "message"),
    [
        ("missing", "DROP TABLE scene", "missing table 'scene'"),
        ("empty", "DELETE FROM lidar_pc", "empty log"),
        ("corrupt", None, "not a readable SQLite database"),
    ],
)
def test_malformed_logs(world, tmp_path, name, sql, message):
    src = nuplan.list_logs(world[1])[0]
    bad = tmp_path / f"{name}.db"
    if sql is None:  # a real header, then garbage pages
        bad.write_bytes(src.read_bytes()[:4096] + b"\xff" * 50_000)
    else:
        shutil.copy(src, bad)
        with sqlite3.connect(bad) as c:
            c.execute(sql)
    with pytest.raises(DataError) as e:
        nuplan.NuPlanLog(bad)
    assert message in _one_line(e, bad)


def test_malformed_maps(world, tmp_path):
    scenarios, _, maps, _ = world
    gpkg = tmp_path / "map.gpkg"
    shutil.copy(writer.map_path(maps, scenarios[0].city), gpkg)
    with sqlite3.connect(gpkg) as c:
        c.execute("DROP TABLE crosswalks")
        c.execute("DELETE FROM gpkg_contents WHERE table_name = 'crosswalks'")
        c.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = 'crosswalks'")
    with pytest.raises(DataError) as e:
        nuplan.NuPlanMap(gpkg)
    assert "crosswalks" in _one_line(e, gpkg)
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError) as e:
        nuplan.NuPlanMap(garbage)
    _one_line(e, garbage)
    with pytest.raises(DataError, match="no map"):
        nuplan.find_map(tmp_path, "us-ma-boston")
