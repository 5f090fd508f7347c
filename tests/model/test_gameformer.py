"""The functional model API: parameter tree, counts, shapes, tracing, dropout, masks, gradients."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import model_helpers
import numpy as np
import pytest
from model_helpers import TINY, make_batch

from gf_jax import losses, model
from gf_jax.config import PRESETS, ModelConfig


@pytest.fixture
def tiny_params():
    return model_helpers.tiny_params()


@pytest.fixture
def tiny_apply():
    return model_helpers.tiny_apply()


def test_param_counts_match_the_original():
    assert model.param_count(model.abstract_params(PRESETS["paper"].model)) == 9_962_979
    big = ModelConfig(encoder_layers=6, decoder_levels=3)
    assert model.param_count(model.abstract_params(big)) == 14_224_036


def test_params_are_a_plain_dict_of_float_arrays(tiny_params):
    def check(tree):
        assert type(tree) is dict
        for key, value in tree.items():
            assert isinstance(key, str)
            if isinstance(value, dict):
                check(value)
            else:
                assert isinstance(value, jax.Array) and value.dtype == jnp.float32, key

    check(tiny_params)
    # Standard tree utilities work directly on it.
    doubled = jax.tree.map(lambda x: 2 * x, tiny_params)
    assert jax.tree.structure(doubled) == jax.tree.structure(tiny_params)


def test_init_depends_on_key_and_copies_fusion_layers():
    cfg = dataclasses.replace(TINY, encoder_layers=2)
    a = model.init_params(cfg, jax.random.key(0))
    b = model.init_params(cfg, jax.random.key(1))
    assert not np.allclose(a["planner"]["plan_decoder"]["layers"]["0"]["kernel"],
                           b["planner"]["plan_decoder"]["layers"]["0"]["kernel"])  # fmt: skip
    # torch.nn.TransformerEncoder deep-copies its layer: identical at init.
    fusion = a["encoder"]["fusion_encoder"]
    chex.assert_trees_all_equal(fusion["0"], fusion["1"])


def test_output_shapes_and_extra_keys_ignored(tiny_params, tiny_apply):
    batch = make_batch()
    out = tiny_apply(tiny_params, batch, model_config=TINY)
    n, m = TINY.neighbors + 1, TINY.modalities
    assert set(out) == {
        *(f"level_{k}_{s}" for k in range(TINY.decoder_levels + 1) for s in ("interactions", "scores")),
        "ego_plan",
    }  # fmt: skip
    assert out["level_1_interactions"].shape == (2, n, m, 80, 4)
    assert out["level_0_scores"].shape == (2, n, m)
    assert out["ego_plan"].shape == (2, 80, 3)
    assert all(bool(jnp.isfinite(v).all()) for v in out.values())


def test_jit_traces_once(tiny_params):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(params, inputs):
        return model.apply(params, inputs, TINY)

    first = forward(tiny_params, make_batch(seed=1))
    moved = jax.tree.map(lambda x: x + 0.01, tiny_params)
    second = forward(moved, make_batch(seed=2))
    assert not np.allclose(first["ego_plan"], second["ego_plan"])


def test_dropout_off_is_deterministic_and_on_depends_on_rng(tiny_params, tiny_apply):
    batch = make_batch()
    a = tiny_apply(tiny_params, batch, model_config=TINY)
    b = tiny_apply(tiny_params, batch, model_config=TINY)
    chex.assert_trees_all_equal(a, b)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    d1 = tiny_apply(tiny_params, batch, model_config=TINY, rng=k1)
    d1_again = tiny_apply(tiny_params, batch, model_config=TINY, rng=k1)
    d2 = tiny_apply(tiny_params, batch, model_config=TINY, rng=k2)
    chex.assert_trees_all_equal(d1, d1_again)
    assert not np.allclose(d1["ego_plan"], d2["ego_plan"])
    assert not np.allclose(d1["ego_plan"], a["ego_plan"])


def _assert_close_except(a, b, skip_agent=None):
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if skip_agent is not None and key.startswith("level_"):
            keep = np.ones(x.shape[1], bool)
            keep[skip_agent] = False
            x, y = x[:, keep], y[:, keep]
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=key)


def test_padded_neighbor_content_does_not_leak(tiny_params, tiny_apply):
    batch = make_batch(n_neighbors=(3, 5))
    base = tiny_apply(tiny_params, batch, model_config=TINY)
    rng = np.random.default_rng(0)
    changed = {k: v.copy() for k, v in batch.items()}
    # Slot 3 of example 0 (agent 4, a predicted agent) and slot 15 (not predicted) are padding.
    # Fill their history but keep x+y+heading+vx+vy at the current frame summing to 0, so
    # the model's own rule still masks them.
    for slot in (3, 15):
        changed["neighbor_agents_past"][0, slot, :-1] = rng.normal(0, 5, (20, 11))
        changed["neighbor_agents_past"][0, slot, -1, :5] = (2.5, -2.5, 0.0, 1.0, -1.0)
        changed["neighbor_agents_past"][0, slot, -1, 5:] = rng.normal(0, 1, 6)
    out = tiny_apply(tiny_params, changed, model_config=TINY)
    # The padded agent's own (ignored) predictions may change; nothing else may.
    _assert_close_except(base, out, skip_agent=1 + 3)


def test_masked_map_content_does_not_leak(tiny_params, tiny_apply):
    batch = make_batch(n_lanes=(4, 6), n_crosswalks=(1, 0), n_route=(2, 1))
    base = tiny_apply(tiny_params, batch, model_config=TINY)
    rng = np.random.default_rng(1)
    changed = {k: v.copy() for k, v in batch.items()}
    for key, slot, points in (
        ("map_lanes", 10, 50),
        ("map_crosswalks", 3, 30),
        ("route_lanes", 5, 50),
    ):
        arr = changed[key]
        arr[:, slot] = rng.normal(0, 10, arr[:, slot].shape)
        # One x == 0 per 10-point segment keeps every segment masked.
        arr[:, slot, np.arange(0, points, 10) + 3, 0] = 0.0
    out = tiny_apply(tiny_params, changed, model_config=TINY)
    _assert_close_except(base, out)


def test_examples_are_independent(tiny_params, tiny_apply):
    a = make_batch(n_neighbors=(3, 5), seed=0)
    b = {k: v.copy() for k, v in a.items()}
    other = make_batch(n_neighbors=(7, 1), n_lanes=(2, 9), seed=5)
    for k in b:
        b[k][1] = other[k][1]
    out_a = tiny_apply(tiny_params, a, model_config=TINY)
    out_b = tiny_apply(tiny_params, b, model_config=TINY)
    for k in out_a:
        np.testing.assert_allclose(out_a[k][0], out_b[k][0], rtol=1e-6, atol=1e-6, err_msg=k)


def _empty_batch():
    # Example 0: parked ego (masked by the model's rule), no neighbours, no crosswalks, no route.
    # Example 1: additionally no lanes, so every key of the ego's scene attention is masked.
    batch = make_batch(
        n_neighbors=(0, 0), n_lanes=(3, 0), n_crosswalks=(0, 0), n_route=(0, 0),
        parked=(True, True),
    )  # fmt: skip
    assert not batch["ego_agent_past"].any()
    return batch


def test_gradients_finite_on_padded_inputs(tiny_params, tiny_apply):
    batch = _empty_batch()
    loss, grads = jax.jit(jax.value_and_grad(losses.loss_fn), static_argnames="model_config")(
        tiny_params, batch, model_config=TINY
    )
    assert np.isfinite(loss)
    bad = [jax.tree_util.keystr(p) for p, g in jax.tree_util.tree_leaves_with_path(grads)
           if not np.isfinite(g).all()]  # fmt: skip
    assert not bad, bad
    for rng in (None, jax.random.key(0)):
        out = tiny_apply(tiny_params, batch, model_config=TINY, rng=rng)
        assert all(bool(jnp.isfinite(v).all()) for v in out.values())


def test_intermediates_have_the_fixture_names(tiny_params, tiny_apply):
    out, inter = model.apply_with_intermediates(tiny_params, make_batch(), TINY)
    assert inter["encoder.mask"].shape == (2, 21 + 200 + 15)
    assert inter["decoder.level_1_content"].shape == (
        2,
        TINY.neighbors + 1,
        TINY.modalities,
        TINY.dim,
    )
    np.testing.assert_array_equal(
        inter["decoder.env_encoding"], inter["decoder.level_1_content"][:, 0]
    )
    assert not inter["planner.route_mask"][:, 0].any()
    np.testing.assert_array_equal(
        out["ego_plan"], tiny_apply(tiny_params, make_batch(), model_config=TINY)["ego_plan"]
    )
