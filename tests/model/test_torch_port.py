"""PyTorch state dict conversion, the parity-fixture check (and that it can fail), the CLI."""

import dataclasses

import jax
import model_helpers
import numpy as np
import pytest
from model_helpers import FIXTURE, TINY

from gf_jax import checkpoint, model
from gf_jax.model import torch_port
from gf_jax.model.torch_port import StateDictError, params_from_state_dict, state_dict_from_params

needs_fixture = pytest.mark.skipif(
    not FIXTURE.exists(),
    reason=f"parity fixture not found at {FIXTURE} (../shared beside the repo)",
)
TWO_LEVELS = dataclasses.replace(TINY, decoder_levels=2)


@pytest.fixture(scope="module")
def state_dict():
    params = jax.tree.map(np.asarray, model_helpers.tiny_params())
    return state_dict_from_params(params, TINY)


def test_round_trip_and_torch_layout(state_dict):
    params = model_helpers.tiny_params()
    back = params_from_state_dict(state_dict, TINY)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    d = TINY.dim
    assert state_dict["encoder.fusion_encoder.layers.0.self_attn.in_proj_weight"].shape == (
        3 * d,
        d,
    )
    assert state_dict["encoder.ego_encoder.motion.weight_ih_l0"].shape == (4 * d, 7)
    assert state_dict["planner.plan_decoder.3.weight"].shape == (160, d)
    # Buffers are accepted and ignored.
    extra = {**state_dict, "encoder.lane_encoder.position_encode.pe": np.zeros((1, 50, d))}
    extra["decoder.initial_predictor.modal"] = np.arange(TINY.modalities)
    params_from_state_dict(extra, TINY)


def test_missing_key_is_named(state_dict):
    broken = dict(state_dict)
    del broken["planner.route_fusion.norm_2.bias"]
    with pytest.raises(
        StateDictError, match=r"missing key 'planner.route_fusion.norm_2.bias'"
    ) as e:
        params_from_state_dict(broken, TINY)
    assert "\n" not in str(e.value)


def test_wrong_shape_is_named(state_dict):
    broken = dict(state_dict)
    broken["decoder.initial_predictor.predictor.score.0.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(StateDictError, match=r"score\.0\.weight'.*expected shape") as e:
        params_from_state_dict(broken, TINY)
    assert "\n" not in str(e.value)


def test_unexpected_key_is_named(state_dict):
    broken = {**state_dict, "decoder.bogus.weight": np.zeros(3, np.float32)}
    with pytest.raises(StateDictError, match=r"unexpected key 'decoder.bogus.weight'"):
        params_from_state_dict(broken, TINY)


def test_shared_future_encoder_copies_must_agree():
    params = jax.tree.map(np.asarray, _two_level_params())
    sd = state_dict_from_params(params, TWO_LEVELS)
    name0 = "decoder.interaction_stage.0.future_encoder.mlp.0.weight"
    name1 = name0.replace("stage.0", "stage.1")
    np.testing.assert_array_equal(sd[name0], sd[name1])
    params_from_state_dict(sd, TWO_LEVELS)
    sd[name1] = sd[name1] + 1.0
    with pytest.raises(StateDictError, match=r"stage\.1\.future_encoder.*differs"):
        params_from_state_dict(sd, TWO_LEVELS)


def _two_level_params():
    rng = np.random.default_rng(0)
    return jax.tree.map(
        lambda s: rng.normal(size=s.shape).astype(np.float32), model.abstract_params(TWO_LEVELS)
    )


def test_convert_cli_writes_a_checkpoint(tmp_path, state_dict):
    path = tmp_path / "sd.npz"
    np.savez(path, **state_dict)
    out = tmp_path / "ckpt"
    assert torch_port.main(["convert", str(path), "--out", str(out), "--preset", "tiny"]) == 0
    params, meta = checkpoint.restore_params(out)
    jax.tree.map(np.testing.assert_array_equal, params, model_helpers.tiny_params())
    assert meta["model_config"]["dim"] == TINY.dim
    # A state dict for another configuration is refused with a one-line error.
    assert torch_port.main(["convert", str(path), "--out", str(out), "--preset", "cpu"]) == 1


@needs_fixture
def test_fixture_check_passes():
    rows, ok = torch_port.check_fixture(FIXTURE)
    assert ok, "\n" + torch_port.format_rows([r for r in rows if not r.ok])
    keys = {r.key for r in rows}
    assert {
        "output.ego_plan",
        "inter.encoder.encoding",
        "loss.total",
        "metric.predictorADE",
    } <= keys


@needs_fixture
def test_fixture_check_fails_on_a_perturbed_parameter(tmp_path, capsys):
    z = np.load(FIXTURE)
    arrays = {k: z[k] for k in z.files}
    arrays["decoder.interaction_stage.1.decoder.gaussian.3.bias"] = (
        arrays["decoder.interaction_stage.1.decoder.gaussian.3.bias"] + 1e-3
    )
    perturbed = tmp_path / "perturbed.npz"
    np.savez(perturbed, **arrays)
    assert torch_port.main(["check", str(perturbed)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "output.level_2_interactions" in out
