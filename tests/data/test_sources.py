"""Data-source strings of the dataset cache: parsing, and the nuPlan source end to end."""

import numpy as np
import pytest

from gf_jax.config import DataConfig
from gf_jax.data import nuplan, real_samples, store
from gf_jax.data.schema import DataError


def test_parse_source(tmp_path):
    assert store.parse_source("synthetic") == ("synthetic", ())
    assert store.parse_source(f"npz:{tmp_path}") == ("npz", (str(tmp_path),))
    assert store.parse_source(str(tmp_path)) == ("npz", (str(tmp_path),))
    assert store.parse_source("nuplan:/a/db,/b/maps") == ("nuplan", ("/a/db", "/b/maps"))
    assert store.parse_source("real-samples") == ("real-samples", (str(real_samples.DEFAULT_DIR),))
    assert store.parse_source("real-samples:/x") == ("real-samples", ("/x",))
    for bad, msg in (("nuplan:/only-db", "DB_DIR,MAPS_DIR"), ("npz:", "needs a folder"),
                     ("bogus", "neither 'synthetic' nor a folder"), ("s3:x", "nuplan:DB_DIR")):  # fmt: skip
        with pytest.raises(DataError, match=msg) as e:
            store.parse_source(bad)
        assert "\n" not in str(e.value)


def test_assign_splits_is_deterministic_and_non_empty():
    logs = [f"log{i}" for i in range(12)]
    a = store.assign_splits(logs, "test")
    assert list(a) == list(store.assign_splits(list(reversed(logs)), "test"))[::-1]
    assert {s: int((a == s).sum()) for s in store.SPLITS} == {"train": 10, "val": 1, "test": 1}
    with pytest.raises(DataError, match="need 3"):
        store.assign_splits(["a", "b", "a"], "src")


def test_nuplan_source_extracts_once_and_splits_by_log(world, tmp_path):
    _, db, maps, _ = world
    cfg = DataConfig(source=f"nuplan:{db},{maps}")
    splits = store.load_splits(cfg, root=tmp_path, progress=False)
    n = sum(len(v) for v in splits.values())
    chosen, _ = nuplan.select(nuplan.list_logs(db))
    assert n == len(chosen) and all(len(v) for v in splits.values())
    tokens = [set(v.meta["token"]) for v in splits.values()]
    assert not (tokens[0] & tokens[1]) and not (tokens[0] & tokens[2])
    extracted = list(tmp_path.glob("nuplan-*"))
    assert len(extracted) == 1 and len(list(extracted[0].glob("*.npz"))) == n
    again = store.load_split(cfg, "val", root=tmp_path, progress=False)
    np.testing.assert_array_equal(again.arrays["lanes"], splits["val"].arrays["lanes"])
