"""Configs: presets resolve with scaled milestones, validation names the field, JSON round trips."""

import dataclasses
import json

import pytest

from gf_jax import config
from gf_jax.config import DataConfig, ModelConfig, TrainConfig


def test_resolve_preset_scales_the_presets_own_milestones():
    cpu = config.resolve_preset("cpu", epochs=20, seed=3, data="npz:/x", noise=0.2)
    assert cpu.train.epochs == 20 and cpu.train.seed == 3
    assert config.PRESETS["cpu"].train.lr_milestones == (5, 6, 7, 8, 9)  # of 10 epochs
    assert cpu.train.lr_milestones == (10, 12, 14, 16, 18) == config.scaled_milestones(20)
    assert cpu.data.source == "npz:/x" and cpu.data.noise_fraction == 0.2
    # tiny's own milestones (2, 3, 4 of 4) are scaled, not the paper's 10..18 of 20.
    assert config.resolve_preset("tiny", epochs=8).train.lr_milestones == (4, 6, 8)
    assert config.resolve_preset("tiny", epochs=1).train.lr_milestones == (1,)
    assert config.resolve_preset("paper") == config.PRESETS["paper"]


def test_scaled_milestones_is_scale_milestones_of_the_paper():
    assert config.scaled_milestones(20) == (10, 12, 14, 16, 18)
    for epochs in range(1, 60):
        want = tuple(sorted({max(1, round(m * epochs / 20)) for m in (10, 12, 14, 16, 18)}))
        assert config.scaled_milestones(epochs) == want


def test_unknown_preset_names_the_choices():
    with pytest.raises(
        ValueError, match=r"unknown preset 'huge'.*\['attribution', 'cpu', 'paper', 'tiny'\]"
    ):
        config.resolve_preset("huge")


def test_default_preset_follows_the_backend(capsys):
    import jax

    backend = jax.default_backend()
    name = "paper" if backend == "gpu" else "cpu"
    assert config.default_preset_name(verbose=True) == name
    assert f"preset: {name} (JAX backend {backend})" in capsys.readouterr().out
    assert config.default_preset_name() == name and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "bad, field",
    [
        (ModelConfig(dim=30, heads=4), "ModelConfig.dim"),
        (ModelConfig(neighbors=0), "ModelConfig.neighbors"),
        (ModelConfig(decoder_levels=-1), "ModelConfig.decoder_levels"),
        (ModelConfig(dropout=1.0), "ModelConfig.dropout"),
        (DataConfig(n_val=0), "DataConfig.n_val"),
        (DataConfig(noise_fraction=1.5), "DataConfig.noise_fraction"),
        (DataConfig(city_mix=(("a", 0.0),)), "DataConfig.city_mix"),
        (TrainConfig(epochs=0), "TrainConfig.epochs"),
        (TrainConfig(batch_size=10, grad_accum=4), "TrainConfig.batch_size"),
        (TrainConfig(learning_rate=0.0), "TrainConfig.learning_rate"),
        (TrainConfig(warmup_steps=-1), "TrainConfig.warmup_steps"),
    ],
)
def test_validation_names_the_field(bad, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        bad.validate()


def test_warmup_is_linear_then_the_epochs_rate():
    t = TrainConfig(learning_rate=1e-3, lr_milestones=(1,), warmup_steps=4)
    assert [t.lr_at_step(0, s) for s in range(4)] == [1e-3 * (s + 1) / 4 for s in range(4)]
    assert t.lr_at_step(0, 4) == t.lr_at_step(0, 100) == 1e-3
    assert t.lr_at_step(1, 2) == 5e-4 * 3 / 4 and t.lr_at_step(1, 9) == 5e-4
    plain = dataclasses.replace(t, warmup_steps=0)
    assert all(plain.lr_at_step(e, s) == plain.lr_at_epoch(e) for e in range(3) for s in range(9))


def test_preset_round_trips_through_json_and_old_configs_read_back():
    for preset in config.PRESETS.values():
        saved = json.loads(json.dumps(config.to_dict(preset)))
        assert config.preset_from_dict(saved) == preset
    old = json.loads(json.dumps(config.to_dict(config.PRESETS["cpu"])))
    del old["train"]["warmup_steps"]  # saved before the field existed
    assert config.preset_from_dict(old) == config.PRESETS["cpu"]
