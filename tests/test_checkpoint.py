"""Parameter checkpoints: exact round trip, metadata, atomic replacement."""

import jax
import numpy as np
import pytest

from gf_jax import checkpoint, model
from gf_jax.config import PRESETS


def test_round_trip_is_exact(tmp_path):
    params = model.init_params(PRESETS["tiny"].model, jax.random.key(3))
    meta = {"epoch": 2, "lr": 1e-4, "note": "x"}
    out = checkpoint.save_params(tmp_path / "ck", params, meta)
    restored, restored_meta = checkpoint.restore_params(out)
    assert restored_meta == meta
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        assert isinstance(b, jax.Array) and b.dtype == a.dtype
        np.testing.assert_array_equal(a, b)


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    tree = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": np.ones(2, np.float32)}
    checkpoint.save_params(tmp_path / "ck", tree, {"v": 1})
    tree2 = jax.tree.map(lambda x: x + 1, tree)
    checkpoint.save_params(tmp_path / "ck", tree2, {"v": 2})
    restored, meta = checkpoint.restore_params(tmp_path / "ck")
    assert meta == {"v": 2}
    np.testing.assert_array_equal(restored["a"]["w"], tree2["a"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_restoring_a_non_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        checkpoint.restore_params(tmp_path)
