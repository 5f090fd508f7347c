"""PyTorch state dict conversion, the parity-fixture check (that it passes, that it imposes the
fixture's best modes at numerical ties only, and that it can fail), the CLIs."""

import dataclasses

import jax
import model_helpers
import numpy as np
import pytest
from model_helpers import FIXTURE, TINY

from gf_jax import checkpoint, losses, metrics, model, parity
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
    rows, ok = parity.check_fixture(FIXTURE)
    assert ok, "\n" + parity.format_rows([r for r in rows if not r.ok])
    keys = {r.key for r in rows}
    assert {
        "output.ego_plan",
        "inter.encoder.encoding",
        "loss.total",
        "metric.predictorADE",
    } <= keys
    # No flip on the shared fixture, so nothing is imposed.
    assert not any("imposed" in r.note for r in rows)


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


def test_mode_flips_count_ties_and_real_differences_apart():
    ours = np.array([[0, 1, 2], [3, 4, 5]])
    theirs = np.array([[0, 2, 2], [3, 4, 0]])
    margin = np.array([[0.0, 3e-6, 1.0], [1.0, 1.0, 2e-5]])
    f = parity.mode_flips(ours, theirs, margin)
    assert (f.ties, f.real) == (1, 1) and not f.imposable
    assert parity.mode_flips(ours, theirs, np.minimum(margin, 9e-6)).imposable
    assert not parity.mode_flips(ours, ours, margin).imposable  # nothing to impose


def _runner_up_at_the_tightest_tie(z, level: int, neighbors: int) -> tuple[int, int, int]:
    """(b, n, mode): the valid agent with the smallest positive fixture margin below 1e-5 at
    `level`, and its second-nearest mode by the fixture's own outputs (as the loss measures)."""
    traj = z[f"output.level_{level}_interactions"].astype(np.float64)
    nb = z["target.neighbor_agents_future"][:, :neighbors].astype(np.float64)
    gt = np.concatenate([z["target.ego_agent_future"][:, None], nb], axis=1)
    valid = np.concatenate([np.ones_like(nb[:, :1, :, 0]), nb[..., 0] != 0], axis=1)
    traj = traj * valid[:, :, None, :, None]
    dist = np.linalg.norm(traj[..., :2] - gt[:, :, None, :, :2], axis=-1).mean(-1)
    margin = z[f"loss.level_{level}_mode_margin"]
    tight = (margin > 0) & (margin < parity.FLIP_MARGIN) & (gt[:, :, 0, 0] != 0)
    assert tight.any(), "the fixture has no tie to flip"
    b, n = np.argwhere(tight)[np.argmin(margin[tight])]
    best, runner_up = np.argsort(dist[b, n])[:2]
    assert best == z[f"loss.level_{level}_best_mode"][b, n]
    assert dist[b, n, runner_up] - dist[b, n, best] < parity.FLIP_MARGIN
    return int(b), int(n), int(runner_up)


def _tie_flipped_arrays(z) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    """The fixture as if PyTorch had picked the runner-up at the last level's tightest tie.

    Every mode-dependent reference moves by what that choice changes: losses, metrics and
    best-mode means on the fixture's own outputs; gradients (nothing else can say) by our port's
    change, both sides computed by one compiled function so that its float noise cancels.
    """
    arrays = {k: z[k] for k in z.files}
    cfg = parity.config_from_fixture(z)
    level = cfg.decoder_levels
    b, n, runner_up = _runner_up_at_the_tightest_tie(z, level, cfg.neighbors)
    modes = z[f"loss.level_{level}_best_mode"].copy()
    modes[b, n] = runner_up
    arrays[f"loss.level_{level}_best_mode"] = modes
    outputs = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("output.")}
    targets = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("target.")}
    inputs = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("input.")}
    plain = losses.loss_terms(outputs, targets, cfg)
    flipped = losses.loss_terms(outputs, targets, cfg, {level: modes})
    for name in (f"level_{level}_gmm", f"level_{level}_score", "level_k", "total"):
        delta = np.float64(np.mean(flipped[name])) - np.float64(np.mean(plain[name]))
        arrays[f"loss.{name}"] = np.float32(arrays[f"loss.{name}"] + delta)
    mu_delta = np.asarray(flipped["final_best_mode_mu"]) - np.asarray(plain["final_best_mode_mu"])
    arrays["loss.final_best_mode_mu"] = arrays["loss.final_best_mode_mu"] + mu_delta
    m_plain = metrics.batch_metrics(outputs, plain, targets)
    m_flipped = metrics.batch_metrics(outputs, flipped, targets)
    for ours, theirs in metrics.ORIGINAL_NAMES.items():
        delta = float(m_flipped[ours]) - float(m_plain[ours])
        arrays[f"metric.{theirs}"] = np.float32(arrays[f"metric.{theirs}"] + delta)

    state_dict = {k: z[k] for k in z.files if k.startswith(torch_port.PREFIXES)}
    params = torch_port.params_from_state_dict(state_dict, cfg)

    grad_fn = jax.jit(jax.grad(_total), static_argnums=4)
    original = z[f"loss.level_{level}_best_mode"]
    g_plain, g_flipped = (
        state_dict_from_params(
            jax.device_get(grad_fn(params, inputs, targets, {level: m.astype(np.int32)}, cfg)),
            cfg,
        )
        for m in (original, modes)
    )
    for k in z.files:
        name = k.split(".", 1)[1]
        if k.startswith("grad."):
            arrays[k] = arrays[k] + (g_flipped[name] - g_plain[name])
        elif k.startswith("gradnorm."):
            norms = [np.linalg.norm(g[name].astype(np.float64)) for g in (g_plain, g_flipped)]
            arrays[k] = np.float32(arrays[k] + norms[1] - norms[0])
    return arrays, (b, n, runner_up)


def _total(params, inputs, targets, imposed, cfg):
    outputs = model.apply(params, inputs, cfg)
    return losses.per_example_loss(outputs, targets, cfg, imposed)["total"].mean()


@pytest.fixture(scope="module")
def tie_flipped(tmp_path_factory):
    """Paths of the tie-flipped fixture and of the same flip declared at a real margin."""
    z = np.load(FIXTURE)
    arrays, (b, n, _) = _tie_flipped_arrays(z)
    level = int(z["config.decoder_levels"])
    out = tmp_path_factory.mktemp("tie")
    np.savez(out / "tie.npz", **arrays)
    margin = arrays[f"loss.level_{level}_mode_margin"].copy()
    margin[b, n] = 2 * parity.FLIP_MARGIN
    np.savez(out / "real.npz", **{**arrays, f"loss.level_{level}_mode_margin": margin})
    return out / "tie.npz", out / "real.npz", level


@needs_fixture
def test_a_flip_at_a_tie_is_imposed_and_passes(tie_flipped, capsys):
    tie, _, level = tie_flipped
    assert parity.main([str(tie)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "1 flips at margin < 1e-05" in rows[f"loss.level_{level}_best_mode"]
    for key in (f"loss.level_{level}_gmm", "loss.total", "grad.planner.plan_decoder.0.weight"):
        assert "best mode imposed at 1 tie" in rows[key], rows[key]
    assert "imposed" not in rows["loss.level_0_gmm"] and "imposed" not in rows["loss.planning"]
    # Without imposing, the same (correct) port fails on the loss or the score-head gradients.
    rows, ok = parity.check_fixture(tie, impose_ties=False)
    failed = {r.key for r in rows if not r.ok}
    assert not ok and any(k.startswith("grad.decoder.interaction_stage") for k in failed), failed


@needs_fixture
def test_the_same_flip_at_a_real_margin_fails(tie_flipped, capsys):
    _, real, level = tie_flipped
    assert torch_port.main(["check", str(real)]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"loss.level_{level}_best"))
    assert "FAIL" in row and "1 flips at margin >= 1e-05" in row
    assert "imposed" not in out
