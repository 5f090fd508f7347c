"""Dataset cache: build once, memory-map after, atomic writes, keys that change with the recipe."""

import dataclasses

import numpy as np
import pytest

from gf_jax import atomic
from gf_jax.config import DataConfig
from gf_jax.data import store
from gf_jax.data.schema import ARRAY_KEYS, DataError


def test_folder_source_builds_then_hits_cache(tmp_path, npz_source, capsys):
    cfg = DataConfig(source=str(npz_source))
    cache = tmp_path / "cache"
    train = store.load_split(cfg, "train", root=cache, verbose=True, progress=False)
    assert "built" in capsys.readouterr().out
    assert len(train) == 4 and isinstance(train.arrays["lanes"], np.memmap)
    again = store.load_split(cfg, "train", root=cache, verbose=True, progress=False)
    assert "cache hit" in capsys.readouterr().out
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(train.arrays[k], again.arrays[k])
    splits = store.load_splits(cfg, root=cache, progress=False)
    assert [len(splits[s]) for s in store.SPLITS] == [4, 2, 2]  # 'valid' is accepted for val


def test_save_load_round_trip(tmp_path, scenarios):
    s = scenarios(3)
    store.save(s, tmp_path / "c")
    back = store.load(tmp_path / "c")
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(back.arrays[k], s.arrays[k])
    for k in s.meta:
        np.testing.assert_array_equal(back.meta[k], s.meta[k])
    back.validate()


def test_key_depends_on_recipe():
    base = DataConfig()
    keys = {
        store.split_key(store.split_recipe(c, "train"))
        for c in (
            base,
            dataclasses.replace(base, n_train=10),
            dataclasses.replace(base, noise_fraction=0.0),
            dataclasses.replace(base, data_seed=1),
        )
    }
    assert len(keys) == 4
    # Val ignores the training noise fraction: same key.
    a = store.split_recipe(base, "val")
    b = store.split_recipe(dataclasses.replace(base, noise_fraction=0.0), "val")
    assert store.split_key(a) == store.split_key(b)
    assert store.split_seed(0, "train") != store.split_seed(0, "val")


def test_killed_build_leaves_no_valid_entry(tmp_path, scenarios):
    target = tmp_path / "c"
    with pytest.raises(RuntimeError), atomic.directory(target) as tmp:
        np.save(tmp / "lanes.npy", scenarios(1).arrays["lanes"])
        raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_corrupt_cache_raises_data_error(tmp_path, scenarios):
    store.save(scenarios(2), tmp_path / "c")
    (tmp_path / "c" / "lanes.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"lanes\.npy: unreadable cached array"):
        store.load(tmp_path / "c")


def test_missing_split_folder(tmp_path, npz_source):
    import shutil

    shutil.rmtree(npz_source / "test")
    with pytest.raises(DataError, match="no 'test' subfolder"):
        store.load_split(DataConfig(source=str(npz_source)), "test", root=tmp_path / "c")
    with pytest.raises(DataError, match="neither 'synthetic' nor a folder"):
        store.split_recipe(DataConfig(source=str(tmp_path / "nope")), "train")
