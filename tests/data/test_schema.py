"""Schema validation: what a real scenario must look like, and one-line errors when it does not."""

import numpy as np
import pytest

from gf_jax.data.schema import LAYOUT, DataError, ScenarioSet, concat, empty_meta, validate_arrays


def _valid_arrays(n: int = 2) -> dict[str, np.ndarray]:
    a = {k: np.zeros((n, *shape), np.float32) for k, (shape, _) in LAYOUT.items()}
    a["ego_agent_past"][:, :-1, 0] = np.linspace(-10, -0.5, 20)
    a["ego_agent_past"][:, :, 3] = 5.0
    a["ego_agent_future"][:, :, 0] = np.linspace(0.5, 40, 80)
    a["neighbor_agents_past"][:, :2, :, 0] = 8.0
    a["neighbor_agents_past"][:, :2, :, 6:9] = (4.5, 1.9, 1.0)
    a["neighbor_agents_future"][:, :2, :, 0] = 9.0
    a["lanes"][:, :3, :, 0] = np.linspace(-20, 30, 50)
    a["lanes"][:, :3, :, 6] = 1.0
    return a


def _set(n: int = 2) -> ScenarioSet:
    return ScenarioSet(_valid_arrays(n), empty_meta(n, city="boston"), "unit.npz")


def test_valid_set_passes_and_helpers_work():
    s = _set(3).validate()
    assert len(s) == 3
    assert s.subset([0, 2]).arrays["lanes"].shape == (2, 40, 50, 7)
    assert set(s.model_inputs()) == {
        "ego_agent_past", "neighbor_agents_past", "map_lanes", "map_crosswalks", "route_lanes"
    }  # fmt: skip
    assert s.targets(10)["neighbor_agents_future"].shape == (3, 10, 80, 3)
    assert len(concat([s, s.subset([1])])) == 4


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda a: a.pop("lanes"), "lanes: missing key"),
        (
            lambda a: a.__setitem__("crosswalks", a["crosswalks"][:, :4]),
            "crosswalks: expected shape",
        ),
        (
            lambda a: a.__setitem__("route_lanes", a["route_lanes"].astype(np.float64)),
            "dtype float32",
        ),
        (
            lambda a: a["ego_agent_future"].__setitem__((1, 5, 0), np.nan),
            "non-finite value at index [1, 5, 0]",
        ),
        (lambda a: a["ego_agent_past"].__setitem__((0, -1, 0), 3.0), "not (0, 0, 0)"),
        (
            lambda a: a["neighbor_agents_past"].__setitem__((0, 4, 0, 0), 1.0),
            "slot 4 holds an agent after padding",
        ),
        (lambda a: a["neighbor_agents_past"].__setitem__((1, 1, 3), 0.0), "all-zero past frame 3"),
        (
            lambda a: a["neighbor_agents_future"].__setitem__((0, 7, 3, 0), 1.0),
            "padding slot 7 has a non-zero future",
        ),
        (lambda a: a["lanes"].__setitem__((0, 5, 0, 6), 1.0), "polyline 5 has zero coordinates"),
        (
            lambda a: a["lanes"].__setitem__((1, 9, 0, 0), 1.0),
            "polyline 9 follows padding polyline 8",
        ),
    ],
)
def test_bad_input_raises_one_line_error_naming_source(mutate, fragment):
    a = _valid_arrays()
    mutate(a)
    with pytest.raises(DataError) as e:
        validate_arrays(a, "unit.npz")
    msg = str(e.value)
    assert msg.startswith("unit.npz: ") and fragment in msg and "\n" not in msg


def test_metadata_is_checked():
    s = _set()
    s.meta["corrupted"] = np.zeros(2, np.int64)
    with pytest.raises(DataError, match="corrupted: expected a bool array"):
        s.validate()
    s = _set()
    del s.meta["city"]
    with pytest.raises(DataError, match="city: missing metadata key"):
        s.validate()


def test_unbatched_scenario_validates():
    a = {k: v[0] for k, v in _valid_arrays().items()}
    validate_arrays(a, "one.npz", batched=False)
    a["lanes"] = a["lanes"][None]
    with pytest.raises(DataError, match=r"one\.npz: lanes: expected shape"):
        validate_arrays(a, "one.npz", batched=False)
