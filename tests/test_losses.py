"""The per-example GameFormer loss: parity with the original on the fixture, independence of
examples, and that its batch mean is the original's batch loss."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gf_jax import losses, model
from gf_jax.config import PRESETS
from gf_jax.model.layers import torch_clamp

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "fixtures"
    / "gameformer_parity_seed0.npz"
).resolve()
PAPER = PRESETS["paper"].model
TINY = PRESETS["tiny"].model


def _random_outputs(b: int, cfg, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, m = cfg.neighbors + 1, cfg.modalities
    out = {}
    for k in range(cfg.decoder_levels + 1):
        traj = rng.normal(0, 1, (b, n, m, 80, 4)).astype(np.float32)
        traj[..., :2] += np.linspace(0, 30, 80)[:, None]
        out[f"level_{k}_interactions"] = traj
        out[f"level_{k}_scores"] = rng.normal(0, 1, (b, n, m)).astype(np.float32)
    out["ego_plan"] = rng.normal(0, 3, (b, 80, 3)).astype(np.float32)
    return out


@pytest.mark.skipif(not FIXTURE.exists(), reason=f"parity fixture not found at {FIXTURE}")
def test_matches_the_original_on_the_fixture_outputs():
    z = np.load(FIXTURE)
    outputs = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("output.")}
    targets = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("target.")}
    terms = losses.loss_terms(outputs, targets, PAPER)
    per = losses.per_example_loss(outputs, targets, PAPER)
    for name, value in per.items():
        assert value.shape == (2,)
        np.testing.assert_allclose(value.mean(), z[f"loss.{name}"], rtol=1e-4, err_msg=name)
    for k in range(PAPER.decoder_levels + 1):
        differ = np.asarray(terms[f"level_{k}_best_mode"]) != z[f"loss.level_{k}_best_mode"]
        assert not (differ & (z[f"loss.level_{k}_mode_margin"] >= 1e-5)).any()
    # Imposing the fixture's own best modes reproduces its losses too (ties included).
    fixture_modes = {k: z[f"loss.level_{k}_best_mode"] for k in range(PAPER.decoder_levels + 1)}
    imposed = losses.per_example_loss(outputs, targets, PAPER, imposed_best_modes=fixture_modes)
    for name, value in imposed.items():
        np.testing.assert_allclose(value.mean(), z[f"loss.{name}"], rtol=1e-4, err_msg=name)
    same = np.asarray(terms["level_2_best_mode"]) == z["loss.level_2_best_mode"]
    np.testing.assert_allclose(
        np.asarray(terms["final_best_mode_mu"])[same], z["loss.final_best_mode_mu"][same], atol=1e-5
    )


def test_batch_mean_is_the_original_batch_formula(scenarios):
    batch = scenarios(3, seed=1).batch(TINY.neighbors)
    outputs = _random_outputs(3, TINY)
    per = losses.per_example_loss(outputs, batch, TINY)
    # The original: plain means over the whole batch with padded entries in the denominator.
    gt = np.concatenate([batch["ego_agent_future"][:, None], batch["neighbor_agents_future"]], 1)
    valid = np.concatenate([np.ones((3, 1, 80)), gt[:, 1:, :, 0] != 0], 1)
    expected_level_k = 0.0
    for k in range(TINY.decoder_levels + 1):
        traj = outputs[f"level_{k}_interactions"] * valid[:, :, None, :, None]
        dist = np.linalg.norm(traj[..., :2] - gt[:, :, None, :, :2], axis=-1).mean(-1)
        best = dist.argmin(-1)
        sel = np.take_along_axis(traj, best[:, :, None, None, None], 2)[:, :, 0]
        ls = np.clip(sel[..., 2:], -2, 2)
        d = gt[..., :2] - sel[..., :2]
        gmm = np.mean(ls.sum(-1) + 0.5 * ((d / np.exp(ls)) ** 2).sum(-1))
        logp = jax.nn.log_softmax(outputs[f"level_{k}_scores"], -1)
        nll = -np.take_along_axis(np.asarray(logp), best[..., None], -1)[..., 0]
        ce = 0.8 * nll + 0.2 * (-np.asarray(logp).mean(-1))
        score = np.mean(ce * (gt[:, :, 0, 0] != 0))
        np.testing.assert_allclose(per[f"level_{k}_gmm"].mean(), gmm, rtol=1e-5)
        np.testing.assert_allclose(per[f"level_{k}_score"].mean(), score, rtol=1e-5)
        expected_level_k += gmm + score
    diff = outputs["ego_plan"] - batch["ego_agent_future"]
    sl1 = np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5)
    planning = sl1.mean() + sl1[:, -1].mean()
    np.testing.assert_allclose(per["planning"].mean(), planning, rtol=1e-5)
    np.testing.assert_allclose(per["total"].mean(), expected_level_k + planning, rtol=1e-5)
    np.testing.assert_allclose(per["total"], per["level_k"] + per["planning"], rtol=1e-6)


def test_imposed_best_modes_equal_to_the_argmin_change_nothing(scenarios):
    batch = scenarios(3, seed=5).batch(TINY.neighbors)
    outputs = _random_outputs(3, TINY, seed=6)
    terms = losses.loss_terms(outputs, batch, TINY)
    argmin = {k: terms[f"level_{k}_best_mode"] for k in range(TINY.decoder_levels + 1)}
    plain = losses.per_example_loss(outputs, batch, TINY)
    imposed = losses.per_example_loss(outputs, batch, TINY, imposed_best_modes=argmin)
    assert imposed.keys() == plain.keys()
    for k in plain:
        np.testing.assert_array_equal(imposed[k], plain[k], err_msg=k)
    # Imposing only some levels leaves the others to the argmin, again bit for bit.
    jitted = jax.jit(losses.loss_terms, static_argnums=2)
    partial = jitted(outputs, batch, TINY, {1: np.asarray(argmin[1], np.int64)})
    for k, v in jax.jit(losses.loss_terms, static_argnums=2)(outputs, batch, TINY).items():
        np.testing.assert_array_equal(partial[k], v, err_msg=k)


def test_imposed_best_modes_other_than_the_argmin_move_that_level_only(scenarios):
    batch = scenarios(3, seed=5).batch(TINY.neighbors)
    outputs = _random_outputs(3, TINY, seed=6)
    plain_terms = losses.loss_terms(outputs, batch, TINY)
    modes_BxA = np.array(plain_terms["level_0_best_mode"])
    modes_BxA[1, 0] = (modes_BxA[1, 0] + 1) % TINY.modalities  # the ego of example 1
    terms = losses.loss_terms(outputs, batch, TINY, {0: modes_BxA})
    np.testing.assert_array_equal(terms["level_0_best_mode"], modes_BxA)
    # The margin still describes the distances, whichever mode is imposed.
    np.testing.assert_array_equal(terms["level_0_mode_margin"], plain_terms["level_0_mode_margin"])
    plain = jax.tree.map(np.asarray, losses.per_example_loss(outputs, batch, TINY))
    moved = jax.tree.map(np.asarray, losses.per_example_loss(outputs, batch, TINY, {0: modes_BxA}))
    for k in ("level_0_gmm", "level_k", "total"):
        assert moved[k][1] != plain[k][1], k
        np.testing.assert_array_equal(moved[k][[0, 2]], plain[k][[0, 2]], err_msg=k)
    for k in ("level_1_gmm", "level_1_score", "planning"):
        np.testing.assert_array_equal(moved[k], plain[k], err_msg=k)


def test_example_loss_does_not_depend_on_the_rest_of_the_batch(scenarios):
    batch = scenarios(4, seed=2).batch(TINY.neighbors)
    outputs = _random_outputs(4, TINY, seed=3)
    other_batch = scenarios(4, seed=7).batch(TINY.neighbors)
    other_outputs = _random_outputs(4, TINY, seed=8)
    mixed_batch = {k: np.concatenate([v[:1], other_batch[k][1:]]) for k, v in batch.items()}
    mixed_outputs = {k: np.concatenate([v[:1], other_outputs[k][1:]]) for k, v in outputs.items()}
    a = losses.per_example_loss(outputs, batch, TINY)
    b = losses.per_example_loss(mixed_outputs, mixed_batch, TINY)
    for k in a:
        np.testing.assert_allclose(a[k][0], b[k][0], rtol=1e-6, err_msg=k)
        assert not np.allclose(a[k][1:], b[k][1:]), k


def test_example_loss_vmaps_to_the_per_example_loss(scenarios):
    params = model.init_params(TINY, jax.random.key(0))
    batch = {k: jnp.asarray(v) for k, v in scenarios(3, seed=4).batch(TINY.neighbors).items()}
    per = losses.per_example_loss(model.apply(params, batch, TINY), batch, TINY)["total"]
    one = jax.jit(jax.vmap(lambda ex: losses.example_loss(params, ex, TINY)))(batch)
    np.testing.assert_allclose(one, per, rtol=1e-5)
    np.testing.assert_allclose(losses.loss_fn(params, batch, TINY), per.mean(), rtol=1e-6)


def test_log_sigma_clamp_passes_gradient_at_the_bound():
    # torch.clamp lets the gradient through at exactly the bound (jnp.clip would halve it).
    g = jax.grad(lambda x: torch_clamp(x, -2.0, 2.0).sum())(jnp.array([-2.0, 2.0, 3.0]))
    np.testing.assert_array_equal(g, [1.0, 1.0, 0.0])
