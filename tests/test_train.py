"""Training: learning happens, runs are reproducible, resume is exact, failures are clear."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from gf_jax import checkpoint, loop, sampling, steps, train
from gf_jax import mesh as mesh_lib
from gf_jax import workdir as workdir_lib
from gf_jax.config import get_preset

EPOCHS = 3


@pytest.fixture(scope="module")
def preset():
    p = get_preset("tiny")
    t = dataclasses.replace(
        p.train, epochs=EPOCHS, batch_size=8, eval_batch_size=8, lr_milestones=(2,)
    )
    return dataclasses.replace(p, train=t)


@pytest.fixture(scope="module")
def data():
    import scenario_factory

    return scenario_factory.make_scenarios(20, seed=3), scenario_factory.make_scenarios(8, seed=4)


def _strip(history):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in history]


def _fit(preset, data, workdir, **kw):
    tr, va = data
    kw.setdefault("progress", False)
    return train.fit(preset, tr, va, va, workdir=workdir, **kw)


def _record_lrs(monkeypatch) -> list[float]:
    """The learning rate fed to every train step of the next fits, in order."""
    lrs = []
    compiled = steps.compiled_steps

    def recording(model_cfg, train_cfg):
        step_fn, eval_fn = compiled(model_cfg, train_cfg)

        def step(*args):
            lrs.append(float(args[-1]))
            return step_fn(*args)

        return step, eval_fn

    monkeypatch.setattr(steps, "compiled_steps", recording)
    return lrs


def _count_restores(monkeypatch) -> list[str]:
    """The checkpoint folders restored from here on."""
    restored = []
    restore = checkpoint.restore_params

    def counting(directory):
        restored.append(str(directory))
        return restore(directory)

    monkeypatch.setattr(checkpoint, "restore_params", counting)
    return restored


def test_loss_decreases_and_outputs_written(tmp_path, preset, data, monkeypatch):
    p = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=6))
    lrs = _record_lrs(monkeypatch)
    extra = {"method": "uniform", "seed": 0}
    out = _fit(p, data, tmp_path, keep_all_checkpoints=True, extra_result=extra)
    hist = out.result["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    result = json.loads((tmp_path / "result.json").read_text())
    for k in (
        "plan_ade",
        "plan_fde",
        "plan_ahe",
        "pred_ade",
        "pred_fde",
        "best_epoch",
        "history",
        "config",
    ):
        assert k in result
    assert "plan_ade" in result["test"]
    assert result["method"] == "uniform" and result["seed"] == 0 and result["fit_seconds"] > 0
    assert result == json.loads(json.dumps(out.result))  # written once, as returned
    assert json.loads((tmp_path / "config.json").read_text())["preset"]["name"] == "tiny"
    # Every epoch's checkpoint is kept with its learning rate (TracIn needs them).
    store = checkpoint.CheckpointStore(tmp_path / "checkpoints", keep_all=True)
    epochs = store.epochs()
    assert epochs == list(range(6))
    assert [store.metadata(e)["lr"] for e in epochs] == [p.train.lr_at_epoch(e) for e in range(6)]
    # No warm-up: every step gets its epoch's rate, exactly as before warm-up existed.
    steps_per_epoch = 3  # 20 examples, batches of 8
    assert lrs == [np.float32(p.train.lr_at_epoch(s // steps_per_epoch)) for s in range(18)]


def test_warmup_scales_the_first_steps_only(tmp_path, preset, data, monkeypatch):
    t = dataclasses.replace(preset.train, epochs=2, warmup_steps=4, lr_milestones=(1,))
    lrs = _record_lrs(monkeypatch)
    out = _fit(dataclasses.replace(preset, train=t), data, tmp_path)
    lr0, lr1 = t.lr_at_epoch(0), t.lr_at_epoch(1)
    want = [lr0 / 4, lr0 * 2 / 4, lr0 * 3 / 4, lr1 * 4 / 4, lr1, lr1]
    np.testing.assert_array_equal(np.float32(lrs), np.float32(want))
    # The log and the checkpoints still record the epoch's rate.
    assert [r["lr"] for r in out.result["history"]] == [lr0, lr1]


def test_same_seed_is_bit_identical(tmp_path, preset, data):
    a = _fit(preset, data, tmp_path / "a")
    b = _fit(preset, data, tmp_path / "b")
    assert _strip(a.result["history"]) == _strip(b.result["history"])
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_after_kill_equals_uninterrupted(tmp_path, preset, data, monkeypatch):
    full = _fit(preset, data, tmp_path / "full")
    run_epoch = loop.run_epoch

    def killed_after_first_epoch(trainer, state):
        if state.epoch >= 1:
            raise KeyboardInterrupt("killed after epoch 1")
        return run_epoch(trainer, state)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(loop, "run_epoch", killed_after_first_epoch)
        _fit(preset, data, tmp_path / "cut")
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = _fit(preset, data, tmp_path / "cut", resume=True)
    assert _strip(resumed.result["history"]) == _strip(full.result["history"])
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_four_devices_match_one(tmp_path, preset, data):
    assert jax.device_count() == 4
    p = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=2))
    one = _fit(p, data, tmp_path / "one", mesh=mesh_lib.data_mesh(jax.devices()[:1]))
    four = _fit(p, data, tmp_path / "four", mesh=mesh_lib.data_mesh())
    for r1, r4 in zip(one.result["history"], four.result["history"], strict=True):
        assert r1["train_loss"] == pytest.approx(r4["train_loss"], rel=1e-4)
        assert r1["val_plan_ade"] == pytest.approx(r4["val_plan_ade"], rel=1e-4)


def test_nan_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, preset, data):
    tr, va = data
    bad = tr.subset(np.arange(len(tr)))
    bad.arrays["ego_agent_future"][5, 10, 0] = np.nan

    def sampling(epoch):
        p = np.ones(len(bad))
        p[5] = 1.0 if epoch >= 1 else 0.0  # the poisoned example only from epoch 2 on
        return p

    with pytest.raises(train.TrainingError, match=r"non-finite loss .* at epoch 2, step \d+"):
        train.fit(preset, bad, va, workdir=tmp_path, sampling=sampling, progress=False)
    store = checkpoint.CheckpointStore(tmp_path / "checkpoints")
    assert store.latest() == 0


def test_lock_refuses_second_writer_and_finished_run_is_kept(tmp_path, preset, data, monkeypatch):
    with workdir_lib.lock(tmp_path), pytest.raises(train.TrainingError, match="in use"):
        _fit(preset, data, tmp_path)
    p = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=1))
    _fit(p, data, tmp_path / "done")
    with pytest.raises(train.TrainingError, match="--overwrite"):
        _fit(p, data, tmp_path / "done")
    restored = _count_restores(monkeypatch)
    tr, va = data
    train.fit(p, tr, va, workdir=tmp_path / "done", overwrite=True, progress=False)
    assert restored == []  # no test split: nothing to evaluate the best params on
    # A finished run comes back as it is, its parameters read only when asked for (once).
    done = _fit(p, data, tmp_path / "done", resume=True)
    assert done.result["best_epoch"] == 1 and restored == []
    leaves = jax.tree.leaves(done.params)
    assert leaves and len(restored) == 1 and restored[0].endswith("best")
    assert jax.tree.leaves(done.best_params) == leaves and len(restored) == 1


def test_extra_result_may_not_replace_fit_keys(tmp_path, preset, data):
    with pytest.raises(ValueError, match="steps"):
        _fit(preset, data, tmp_path, extra_result={"steps": 1})
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before any work


def test_epoch_indices_modes():
    u = sampling.epoch_indices(10, 0, 0, None)
    assert sorted(u) == list(range(10))
    assert not np.array_equal(u, sampling.epoch_indices(10, 1, 0, None))
    sub = sampling.epoch_indices(10, 0, 0, np.array([2, 5, 7]))
    assert sorted(sub) == [2, 5, 7]
    p = np.zeros(10)
    p[3] = 1.0
    w = sampling.epoch_indices(10, 0, 0, lambda e: p)
    assert len(w) == 10 and set(w) == {3}
    with pytest.raises(ValueError, match="probabilities"):
        sampling.epoch_indices(10, 0, 0, lambda e: -np.ones(10))


def test_sampling_does_not_import_jax_and_train_reexports():
    code = (
        "import sys, gf_jax.sampling; print(sorted({'jax', 'optax', 'orbax'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("epoch_indices", "batches", "compiled_steps", "make_optimizer", "evaluate"):
        assert callable(getattr(train, name))
    assert train.METRIC_KEYS[0] == "plan_ade"


def test_padded_last_batch_has_zero_weight(scenarios):
    s = scenarios(5)
    got = list(sampling.batches(s, np.array([4, 1, 3, 0, 2]), 4, 10))
    assert [b[1].tolist() for b in got] == [[1, 1, 1, 1], [1, 0, 0, 0]]
    np.testing.assert_array_equal(got[0][0]["map_lanes"], s.arrays["lanes"][[4, 1, 3, 0]])
    np.testing.assert_array_equal(got[1][0]["ego_agent_future"][0], s.arrays["ego_agent_future"][2])


def test_cli_trains_on_the_procedural_world(tmp_path, capsys):
    args = ["--preset", "tiny", "--epochs", "1", "--seed", "2", "--workdir", str(tmp_path / "run")]
    assert train.main([*args, "--data-root", str(tmp_path / "data")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["best_epoch"] == 1 and np.isfinite(result["plan_ade"])
    assert result["config"]["preset"]["train"]["seed"] == 2
    assert "best epoch 1" in capsys.readouterr().out
    # A finished run is refused without --overwrite, with exit code 1.
    assert train.main([*args, "--data-root", str(tmp_path / "data")]) == 1


def test_gradient_accumulation_equals_one_big_batch(scenarios):
    import jax.numpy as jnp

    from gf_jax import model

    p = get_preset("tiny")
    mcfg = dataclasses.replace(p.model, dropout=0.0)  # same function on every micro-batch
    s = scenarios(8, seed=5)
    batch = {k: jnp.asarray(v) for k, v in s.batch(mcfg.neighbors).items()}
    weight = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)  # a padded tail too
    params = model.init_params(mcfg, jax.random.key(0))
    outs = []
    for accum in (1, 4):  # 4: the last micro-batch is all padding
        tcfg = dataclasses.replace(p.train, grad_accum=accum)
        step, _ = train.compiled_steps(mcfg, tcfg)
        opt = train.make_optimizer(tcfg).init(params)
        copy = jax.tree.map(jnp.array, params)  # the step donates its inputs
        outs.append(step(copy, opt, batch, weight, jax.random.key(1), jnp.float32(1e-3)))

    # Adam's first moment after one step is (1 - b1) x the clipped gradient: compare gradients
    # (comparing updated params would amplify rounding where Adam divides tiny gradients by eps).
    def grad_vector(opt_state):
        mu = opt_state[1].mu
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(mu)])

    g1 = grad_vector(outs[0][1])
    for _, opt_state, loss in outs[1:]:
        assert float(loss) == pytest.approx(float(outs[0][2]), rel=1e-5)
        assert np.linalg.norm(grad_vector(opt_state) - g1) / np.linalg.norm(g1) < 1e-5
