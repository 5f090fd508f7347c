"""GameFormer npz folders: exact round trips, the original's file layout, clear errors on bad files."""

import json
import zipfile

import numpy as np
import pytest

from gf_jax.data import gameformer_npz as gnpz
from gf_jax.data.schema import ARRAY_KEYS, DataError


def test_round_trip_is_exact(tmp_path, scenarios):
    s = scenarios(5, seed=1)
    paths = gnpz.write_folder(s, tmp_path)
    assert [p.name for p in paths] == [f"us-ma-boston_{t}.npz" for t in s.meta["token"]]
    back = gnpz.read_folder(tmp_path)
    order = np.argsort(s.meta["token"])  # files are read in name order
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(back.arrays[k], s.arrays[k][order])
        assert back.arrays[k].dtype == np.float32
    for k in ("map_name", "token", "city", "scenario_type", "corrupted"):
        np.testing.assert_array_equal(back.meta[k], s.meta[k][order])


def test_files_have_exactly_the_original_keys(tmp_path, scenarios):
    s = scenarios(1)
    (path,) = gnpz.write_folder(s, tmp_path)
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == [f"{k}.npy" for k in gnpz.FILE_KEYS]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())  # np.savez
    with np.load(path, allow_pickle=False) as z:
        assert z["map_name"].dtype.kind == "U" and z["map_name"].shape == ()
        assert str(z["token"]) == s.meta["token"][0]


def test_folder_without_sidecar_reads_as_real_data(tmp_path, scenarios):
    s = scenarios(2)
    gnpz.write_folder(s, tmp_path)
    (tmp_path / gnpz.META_FILE).unlink()
    back = gnpz.read_folder(tmp_path)
    assert list(back.meta["city"]) == ["boston", "boston"]  # from the nuPlan map name
    assert not back.meta["corrupted"].any()
    assert list(back.meta["scenario_type"]) == ["", ""]


def test_truncated_file_names_the_file(tmp_path, scenarios):
    paths = gnpz.write_folder(scenarios(2), tmp_path)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=paths[1].name + ": unreadable npz"):
        gnpz.read_folder(tmp_path)


def test_garbage_file_names_the_file(tmp_path, scenarios):
    gnpz.write_folder(scenarios(1), tmp_path)
    bad = tmp_path / "us-ma-boston_zzzz.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match=r"us-ma-boston_zzzz\.npz: unreadable npz") as e:
        gnpz.read_folder(tmp_path)
    assert "\n" not in str(e.value)


def test_wrong_shape_missing_key_and_pickle_are_rejected(tmp_path, scenarios):
    s = scenarios(1)
    arrays = {k: s.arrays[k][0] for k in ARRAY_KEYS}
    bad = dict(arrays, lanes=arrays["lanes"][:30])
    np.savez(tmp_path / "m_shape.npz", **bad)
    with pytest.raises(DataError, match=r"m_shape\.npz: lanes: expected shape \(40, 50, 7\)"):
        gnpz.read_file(tmp_path / "m_shape.npz")
    missing = {k: v for k, v in arrays.items() if k != "crosswalks"}
    np.savez(tmp_path / "m_missing.npz", **missing)
    with pytest.raises(DataError, match=r"m_missing\.npz: crosswalks: missing key"):
        gnpz.read_file(tmp_path / "m_missing.npz")
    np.savez(tmp_path / "m_pickle.npz", **arrays, map_name=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DataError, match=r"m_pickle\.npz: unreadable npz"):
        gnpz.read_file(tmp_path / "m_pickle.npz")
    nan = dict(arrays)
    nan["ego_agent_future"] = arrays["ego_agent_future"].copy()
    nan["ego_agent_future"][3, 1] = np.inf
    np.savez(tmp_path / "m_nan.npz", **nan)
    with pytest.raises(DataError, match=r"m_nan\.npz: ego_agent_future: non-finite"):
        gnpz.read_file(tmp_path / "m_nan.npz")


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"no \.npz scenario files"):
        gnpz.read_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        gnpz.read_folder(tmp_path / "nope")


def test_name_from_file_when_keys_absent(tmp_path, scenarios):
    s = scenarios(1)
    np.savez(
        tmp_path / "sg-one-north_00ff00ff00ff00ff.npz", **{k: s.arrays[k][0] for k in ARRAY_KEYS}
    )
    _, map_name, token = gnpz.read_file(tmp_path / "sg-one-north_00ff00ff00ff00ff.npz")
    assert (map_name, token) == ("sg-one-north", "00ff00ff00ff00ff")


def test_duplicate_tokens_refused_and_no_partial_files(tmp_path, scenarios):
    s = scenarios(2)
    s.meta["token"][:] = "same"
    with pytest.raises(DataError, match="both be written"):
        gnpz.write_folder(s, tmp_path / "out")
    assert not any((tmp_path / "out").glob("*.npz"))


def test_sidecar_is_json(tmp_path, scenarios):
    gnpz.write_folder(scenarios(3), tmp_path)
    meta = json.loads((tmp_path / gnpz.META_FILE).read_text())
    assert len(meta) == 3 and all("corrupted" in v for v in meta.values())
    assert not list(tmp_path.glob(".*tmp"))
