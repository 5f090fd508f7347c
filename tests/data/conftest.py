"""Fixtures of the data tests: a tiny nuPlan dataset written from the procedural world."""

import pytest


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """(scenarios, db dir, map root, tagged tokens) of 8 procedural scenarios, one log each,
    built once per session."""
    pytest.importorskip("pyogrio")
    pytest.importorskip("pyproj")
    from gf_jax.data.nuplan import recording, writer

    scenarios = recording.simulate(8, seed=1, city_mix=recording.CITY_MIX)
    return (scenarios, *writer.write_dataset(tmp_path_factory.mktemp("nuplan"), scenarios))
