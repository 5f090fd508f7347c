"""Building blocks against direct re-derivations: LSTM, attention masks, position code, rollout."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gf_jax.model import layers
from gf_jax.model.planner import unicycle_rollout


def test_lstm_matches_a_numpy_reference():
    lstm = layers.LSTMLayer(3, 4, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    w_ih, w_hh = np.asarray(lstm.kernel_ih[...]), np.asarray(lstm.kernel_hh[...])
    b = np.asarray(lstm.bias_ih[...]) + np.asarray(lstm.bias_hh[...])
    h, c = np.zeros((2, 4)), np.zeros((2, 4))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(5):
        i, f, g, o = np.split(x[:, t] @ w_ih + h @ w_hh + b, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
    np.testing.assert_allclose(lstm(jnp.asarray(x))[:, -1], h, rtol=1e-5, atol=1e-6)


def test_attention_masks_keys_and_all_masked_rows_are_safe():
    mha = layers.MultiheadAttention(8, 2, 0.0, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(1, 3, 8)), jnp.float32)
    kv = jnp.asarray(rng.normal(size=(1, 4, 8)), jnp.float32)
    mask = jnp.array([[False, True, False, True]])
    out = mha(q, kv, mask)
    kv_changed = kv.at[:, 1].set(100.0).at[:, 3].set(-7.0)
    np.testing.assert_allclose(mha(q, kv_changed, mask), out, rtol=0, atol=1e-6)
    # Every key masked: no NaN; the row attends to nothing (output = out-projection bias).
    full = mha(q, kv, jnp.ones((1, 4), bool))
    np.testing.assert_allclose(full, jnp.broadcast_to(mha.out.bias[...], full.shape), atol=1e-7)
    g = jax.grad(lambda k: mha(q, k, jnp.ones((1, 4), bool)).sum())(kv)
    assert np.isfinite(g).all()


def test_sinusoidal_table():
    t = layers.sinusoidal_table(50, 16)
    p, i = 7, 3
    freq = math.exp(-2 * i * math.log(10000.0) / 16)
    np.testing.assert_allclose(t[p, 2 * i], math.sin(p * freq), atol=1e-6)
    np.testing.assert_allclose(t[p, 2 * i + 1], math.cos(p * freq), atol=1e-6)


def test_dropout_rate_and_scaling():
    x = jnp.ones((200_000,))
    y = layers.dropout(x, 0.1, jax.random.key(0))
    assert abs(float((y == 0).mean()) - 0.1) < 0.005
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.9], rtol=1e-6)
    a, b = layers.split_rng(jax.random.key(0), 2)
    assert not np.array_equal(layers.dropout(x, 0.5, a), layers.dropout(x, 0.5, b))
    assert layers.dropout(x, 0.1, None) is x


def test_rollout_quirks():
    t = 80
    controls = jnp.zeros((1, t, 2)).at[:, :, 0].set(-9.0)  # braking harder than the clip
    state = jnp.array([[0.0, 0.0, 0.0, 3.0, 4.0]])  # speed 5 m/s
    plan = unicycle_rollout(controls, state)
    # Clipped to -5 m/s^2: speed 5 - 0.5 t, clamped at 0 after 1 s, x = sum v dt.
    v = np.maximum(5 - 0.5 * np.arange(1, t + 1), 0)
    np.testing.assert_allclose(plan[0, :, 0], np.cumsum(v * 0.1), rtol=1e-5)
    # Yaw is wrapped with C fmod (sign of the dividend), not mod.
    turn = jnp.zeros((1, t, 2)).at[:, :, 1].set(-0.5)
    fast = jnp.array([[0.0, 0.0, 0.0, 20.0, 0.0]])
    yaw = np.asarray(unicycle_rollout(turn, fast)[0, :, 2])
    raw = np.cumsum(np.full(t, -0.5 * 20 * 0.1))
    np.testing.assert_allclose(yaw, np.fmod(raw, 2 * np.pi), rtol=1e-4, atol=1e-4)
    assert yaw.min() < -np.pi  # jnp.mod would have wrapped into [0, 2 pi)
