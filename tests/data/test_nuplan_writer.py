"""The nuPlan writer: a procedural scenario written as a `.db` log and a `map.gpkg` reads back
through `NuPlanLog` and `NuPlanMap` as it was recorded."""

import numpy as np

from gf_jax.data import nuplan
from gf_jax.data.nuplan import recording, writer


def test_log_round_trips(world, tmp_path):
    sc = world[0][0]
    token = writer.write_log(tmp_path / "one.db", sc)
    with nuplan.NuPlanLog(tmp_path / "one.db") as log:
        assert (log.map_name, log.location, log.logfile) == (sc.map_name, sc.city, "one")
        assert len(log.tokens) == 2 * sc.frames - 1  # 20 Hz: the world's frames on even rows
        np.testing.assert_allclose(log.ego_states(log.tokens[100].hex(), 5.0, 4.9), sc.ego[:100])
        assert log.route_roadblocks(token) == [str(r) for r in sc.route]
        assert log.tokens[writer.TAG_ROW].hex() == token
        # The tag in the first scene is ignored (it lacks history), the one at TAG_ROW kept.
        assert log.scenarios([sc.scenario_type]) == [(token, sc.scenario_type)]
        present = log.tokens[2 * recording.PRESENT].hex()
        objs = log.tracked_objects(present)
        live = [a for a in sc.agents if a.seen[recording.PRESENT]]
        assert len(objs) == len(live) + 1  # and the traffic cone


def test_map_round_trips(world, tmp_path):
    scenarios = world[0]
    city = scenarios[0].city
    mine = [s for s in scenarios if s.city == city]
    path = writer.write_map(writer.map_path(tmp_path, city), mine)
    assert nuplan.find_map(tmp_path, scenarios[0].map_name) == path
    m = nuplan.NuPlanMap(path)
    assert m.crs == recording.CITY_UTM[city][0].lower()
    pieces = [p for s in mine for p in s.pieces]
    assert len(m.baseline) == len(pieces)
    for p in pieces[:5]:
        kind = "lane_connector_fid" if p.connector else "lane_fid"
        np.testing.assert_allclose(m.baseline[(kind, str(p.fid))], p.xy, atol=1e-3)
