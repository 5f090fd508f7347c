"""Real AV2 / nuScenes samples: adapters give valid GameFormer scenarios, pickles load safely, the
dataset cache splits them by log, and a synthetic-trained model is evaluated and drawn on them."""

import dataclasses
import io
import pickle

import numpy as np
import pytest

from gf_jax.config import DataConfig, get_preset
from gf_jax.data import real_samples, store, synthetic
from gf_jax.data.schema import DataError

pytest.importorskip("pyarrow")
if not real_samples.DEFAULT_DIR.is_dir():
    pytest.skip(f"{real_samples.DEFAULT_DIR} not present", allow_module_level=True)


@pytest.fixture(scope="module")
def samples():
    return real_samples.load()


def test_adapters_yield_valid_scenarios(samples):
    s = samples.validate()
    g = real_samples.groups(s)
    assert len(s) >= 100 and len(set(g)) == 15  # 1 + 4 AV2 logs, 10 nuScenes scenes
    assert set(s.meta["scenario_type"]) == {"av2", "nuscenes"}
    a = s.arrays
    np.testing.assert_allclose(a["ego_agent_past"][:, -1, :3], 0.0, atol=1e-6)
    agents = np.any(a["neighbor_agents_past"] != 0, axis=(2, 3)).sum(1)
    lanes = np.any(a["lanes"] != 0, axis=(2, 3)).sum(1)
    route = np.any(a["route_lanes"] != 0, axis=(2, 3)).sum(1)
    assert agents.mean() > 5 and lanes.min() > 0
    moving = np.linalg.norm(a["ego_agent_future"][:, -1, :2], axis=-1) > 10
    assert (route[moving] > 0).mean() > 0.8  # the lanes the ego drives along
    assert np.any(a["crosswalks"] != 0)  # AV2 maps have pedestrian crossings
    assert np.all(a["lanes"][..., 6][np.any(a["lanes"] != 0, axis=-1)] == 1)  # no light states


def test_restricted_unpickler(tmp_path):
    path = next((real_samples.DEFAULT_DIR / "nuscenes_mini_scenarionet").glob("*.pkl"))
    d = real_samples.load_pickle(path)
    assert isinstance(d["tracks"], dict)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(
        DataError, match=r"evil\.pkl: unreadable or unsafe pickle .*builtins\.print"
    ):
        real_samples.load_pickle(bad)
    buf = io.BytesIO(pickle.dumps({"a": np.arange(3), "b": [1.5, "x"]}))
    bad.write_bytes(buf.getvalue())
    assert real_samples.load_pickle(bad)["a"].tolist() == [0, 1, 2]


def test_store_splits_by_log_with_licence(tmp_path):
    cfg = DataConfig(source="real-samples")
    splits = store.load_splits(cfg, root=tmp_path, progress=False)
    groups = {k: set(real_samples.groups(v)) for k, v in splits.items()}
    assert all(groups.values())
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert sum(len(v) for v in splits.values()) == len(real_samples.load())
    for folder in tmp_path.iterdir():
        assert (folder / real_samples.LICENCE_FILE).read_text().startswith("Derived")


@pytest.mark.slow
def test_synthetic_model_on_real_samples(samples, tmp_path, capsys):
    from gf_jax import train, viz

    # The same shapes and configs as tests/test_train.py: compiled steps are shared in a session.
    p = get_preset("tiny")
    p = dataclasses.replace(
        p, train=dataclasses.replace(p.train, epochs=1, batch_size=8, eval_batch_size=8)
    )
    tr, va = synthetic.generate(16, seed=0), synthetic.generate(8, seed=1)
    out = train.fit(p, tr, va, workdir=tmp_path / "run", progress=False)
    step = train.compiled_steps(p.model, p.train)[1]  # one compiled eval step for every call

    def evaluate(data):
        return train.evaluate(out.params, data, p.model, batch_size=8, step_fn=step)

    metrics = evaluate(samples)
    for source in ("av2", "nuscenes"):
        part = samples.subset(samples.meta["scenario_type"] == source)
        m = evaluate(part)
        with capsys.disabled():
            print(f"\nsynthetic-trained tiny model on {source} ({len(part)}): "
                  f"plan ADE {m['plan_ade']:.2f} m, pred ADE {m['pred_ade']:.2f} m")  # fmt: skip
    assert np.isfinite(metrics["plan_ade"]) and np.isfinite(metrics["pred_ade"])
    pic = viz.save_scenarios(samples, [0, len(samples) - 1], tmp_path / "real.png")
    assert (tmp_path / "real.png").stat().st_size > 10_000 and str(pic).endswith("real.png")
