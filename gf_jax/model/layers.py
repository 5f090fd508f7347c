"""Building blocks that behave like their PyTorch counterparts in GameFormer-Planner.

Every module holds only `nnx.Param`s (no RNG state, no buffers), so `nnx.split(model)` yields a
plain tree of float arrays. Dropout is a pure function of an explicit `rng` (a PRNG key, or a
seed derived from one by `split_rng`): `rng=None` means deterministic evaluation. Initialisers
follow PyTorch's defaults (spec 3.10), so a freshly initialised model starts from the same
distribution as the original.

Shape letters (as in `gf_jax.data.schema`): B batch, Q queries, S keys (sources), H heads,
D features (Dh per head; the LSTM's hidden state too), T time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LAYER_NORM_EPS = 1e-5

Activation = Callable[[jax.Array], jax.Array]


# Dropout randomness: the `rng` key is turned into a uint32 seed once, sub-seeds and masks come
# from a counter-based integer hash (lowbias32, C. Wellons). Drawing ~40 threefry streams instead
# made the CPU compile of a dropout forward 3.5x slower (18 s vs 5 s for `tiny`).
_GOLDEN = 0x9E3779B9


def _mix32(x: jax.Array) -> jax.Array:
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _seed(rng: jax.Array) -> jax.Array:
    """A uint32 scalar seed from a PRNG key (typed or raw) or an already derived seed."""
    if rng.dtype == jnp.uint32 and rng.ndim == 0:
        return rng
    return jax.random.bits(rng, (), jnp.uint32)


def split_rng(rng: jax.Array | None, n: int) -> tuple[jax.Array | None, ...]:
    """n independent dropout seeds derived from `rng`, or n Nones when dropout is off."""
    if rng is None:
        return (None,) * n
    seed = _seed(rng)
    return tuple(
        _mix32(seed ^ _mix32(jnp.uint32((_GOLDEN * (i + 1)) & 0xFFFFFFFF))) for i in range(n)
    )


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout as torch.nn.Dropout in train mode; the identity when `rng` is None."""
    if rng is None or rate == 0.0:
        return x
    counter = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
    bits = _mix32(_mix32(counter) ^ _seed(rng))
    keep = bits >= jnp.uint32(min(int(rate * 2.0**32), 2**32 - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def torch_clamp(
    x: jax.Array, lo: float | jax.Array | None = None, hi: float | jax.Array | None = None
) -> jax.Array:
    """torch.clamp: the gradient passes wherever lo <= x <= hi (bounds included).

    jnp.clip splits the gradient at ties, which would differ from the original at exact bounds.
    """
    if lo is not None:
        x = jnp.where(x < lo, lo, x)
    if hi is not None:
        x = jnp.where(x > hi, hi, x)
    return x


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch's F.gelu default."""
    return jax.nn.gelu(x, approximate=False)


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """[length, dim] transformer position code: even dims sin, odd dims cos (float32, as torch)."""
    position_Px1 = np.arange(length, dtype=np.float32)[:, None]
    div_term = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    table_PxD = np.zeros((length, dim), np.float32)
    table_PxD[:, 0::2] = np.sin(position_Px1 * div_term)
    table_PxD[:, 1::2] = np.cos(position_Px1 * div_term[: dim // 2])
    return table_PxD


# Every parameter records how it was drawn (`init` metadata), so that `gameformer.init_params`
# can redraw the whole tree from two flat random draws: one compiled RNG op instead of hundreds.
def uniform_param(rngs: nnx.Rngs, shape: Sequence[int], bound: float) -> nnx.Param:
    """U(-bound, bound), the PyTorch default for Linear, LSTM and (Xavier) attention weights."""
    value = jax.random.uniform(rngs.params(), tuple(shape), jnp.float32, -bound, bound)
    return nnx.Param(value, init=("uniform", float(bound)))


def normal_param(rngs: nnx.Rngs, shape: Sequence[int], std: float = 1.0) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)
    return nnx.Param(value, init=("normal", float(std)))


def constant_param(shape: Sequence[int], value: float) -> nnx.Param:
    return nnx.Param(jnp.full(tuple(shape), value, jnp.float32), init=("constant", float(value)))


class Linear(nnx.Module):
    """y = x @ kernel + bias with torch.nn.Linear's init: U(+-1/sqrt(fan_in)) for both."""

    def __init__(
        self, in_features: int, out_features: int, *, rngs: nnx.Rngs, zero_bias: bool = False
    ):
        bound = 1.0 / math.sqrt(in_features)
        self.kernel = uniform_param(rngs, (in_features, out_features), bound)
        self.bias = (
            constant_param((out_features,), 0.0)
            if zero_bias
            else uniform_param(rngs, (out_features,), bound)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


class LayerNorm(nnx.Module):
    """torch.nn.LayerNorm (eps 1e-5, two-pass biased variance)."""

    def __init__(self, dim: int):
        self.scale = constant_param((dim,), 1.0)
        self.bias = constant_param((dim,), 0.0)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        var = jnp.mean(centred * centred, -1, keepdims=True)
        return centred * jax.lax.rsqrt(var + LAYER_NORM_EPS) * self.scale[...] + self.bias[...]


class Embedding(nnx.Module):
    """torch.nn.Embedding table, N(0, 1) init; looked up by position (the original's aranges)."""

    def __init__(self, count: int, dim: int, *, rngs: nnx.Rngs):
        self.embedding = normal_param(rngs, (count, dim))

    def __call__(self) -> jax.Array:
        return self.embedding[...]


class MLP(nnx.Module):
    """Linear layers with `activation` (and dropout) between them, none after the last.

    Covers the original's Sequentials: point nets (ReLU), GMM and plan heads (ELU, Dropout),
    score heads (ELU), the future encoder (ReLU).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: Activation,
        *,
        rngs: nnx.Rngs,
        dropout_rate: float = 0.0,
    ):
        self.layers = nnx.Dict(
            {str(i): Linear(a, b, rngs=rngs) for i, (a, b) in enumerate(itertools.pairwise(sizes))}
        )
        self.activation = activation
        self.dropout_rate = dropout_rate

    def __call__(self, x: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        n = len(self.layers)
        rngs = split_rng(rng, n)
        for i in range(n):
            x = self.layers[str(i)](x)
            if i < n - 1:
                x = dropout(self.activation(x), self.dropout_rate, rngs[i])
        return x


class MultiheadAttention(nnx.Module):
    """torch.nn.MultiheadAttention (batch_first) with a key-padding mask.

    Packed in-projection: `in_kernel` [D, 3D] holds the q, k, v projections side by side, each
    split into heads of D/H consecutive features. Init as torch: Xavier-uniform in-projection with
    zero bias, Linear-default out-projection weight with zero bias.

    Queries may carry extra axes between batch and query (`q_Bx...xQxD`), all attending to the
    same keys `kv_BxSxD`; the mask (True = padding key) broadcasts to [B, ..., S].

    All-masked rows: PyTorch returns NaN, which then spreads over the sample. Here such a row
    attends to nothing: its weights are all zero, so its output is the out-projection bias and
    no masked content (nor NaN) leaks; gradients stay finite.
    """

    def __init__(self, dim: int, heads: int, dropout_rate: float, *, rngs: nnx.Rngs):
        bound = math.sqrt(6.0 / (dim + 3 * dim))
        self.in_kernel = uniform_param(rngs, (dim, 3 * dim), bound)
        self.in_bias = constant_param((3 * dim,), 0.0)
        self.out = Linear(dim, dim, rngs=rngs, zero_bias=True)
        self.heads = heads
        self.dropout_rate = dropout_rate

    def __call__(
        self,
        q_BxQxD: jax.Array,
        kv_BxSxD: jax.Array,
        mask_BxS: jax.Array | None = None,
        *,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        dim = q_BxQxD.shape[-1]
        head_dim = dim // self.heads
        w, b = self.in_kernel[...], self.in_bias[...]
        # torch scales q before the product; kept for rounding parity.
        q = (q_BxQxD @ w[:, :dim] + b[:dim]) * (1.0 / math.sqrt(head_dim))
        k = kv_BxSxD @ w[:, dim : 2 * dim] + b[dim : 2 * dim]
        v = kv_BxSxD @ w[:, 2 * dim :] + b[2 * dim :]
        q_BxQxHxDh = q.reshape(*q.shape[:-1], self.heads, head_dim)
        k_BxSxHxDh = k.reshape(*k.shape[:-1], self.heads, head_dim)
        v_BxSxHxDh = v.reshape(*v.shape[:-1], self.heads, head_dim)

        logits_BxHxQxS = jnp.einsum("b...qhd,bshd->b...hqs", q_BxQxHxDh, k_BxSxHxDh)
        if mask_BxS is not None:
            valid_BxS = jnp.logical_not(mask_BxS)
            valid_Bx1x1xS = valid_BxS[..., None, None, :]
            logits_BxHxQxS = jnp.where(
                valid_Bx1x1xS, logits_BxHxQxS, jnp.finfo(logits_BxHxQxS.dtype).min
            )
        weights_BxHxQxS = jax.nn.softmax(logits_BxHxQxS, axis=-1)
        if mask_BxS is not None:
            any_valid = jnp.any(valid_BxS, axis=-1)[..., None, None, None]
            weights_BxHxQxS = jnp.where(any_valid, weights_BxHxQxS, 0.0)
        weights_BxHxQxS = dropout(weights_BxHxQxS, self.dropout_rate, rng)

        out_BxQxHxDh = jnp.einsum("b...hqs,bshd->b...qhd", weights_BxHxQxS, v_BxSxHxDh)
        return self.out(out_BxQxHxDh.reshape(*out_BxQxHxDh.shape[:-2], dim))


class FeedForward(nnx.Module):
    """Linear(D, ffn_dim), exact GELU, Dropout, Linear(ffn_dim, D), Dropout."""

    def __init__(self, dim: int, ffn_dim: int, dropout_rate: float, *, rngs: nnx.Rngs):
        self.linear_1 = Linear(dim, ffn_dim, rngs=rngs)
        self.linear_2 = Linear(ffn_dim, dim, rngs=rngs)
        self.dropout_rate = dropout_rate

    def __call__(self, x: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        r1, r2 = split_rng(rng, 2)
        h = dropout(gelu(self.linear_1(x)), self.dropout_rate, r1)
        return dropout(self.linear_2(h), self.dropout_rate, r2)


class SelfBlock(nnx.Module):
    """Post-norm self-attention block: h = LN1(x + MHA(x)); out = LN2(h + FFN(h)).

    Serves as both torch.nn.TransformerEncoderLayer (`attention_dropout=True`: an extra dropout on
    the attention output before the residual, as torch's `dropout1`) and GameFormer's
    SelfTransformer (no such dropout).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        dropout_rate: float,
        *,
        rngs: nnx.Rngs,
        attention_dropout: bool = False,
    ):
        self.attention = MultiheadAttention(dim, heads, dropout_rate, rngs=rngs)
        self.norm_1 = LayerNorm(dim)
        self.norm_2 = LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout_rate, rngs=rngs)
        self.dropout_rate = dropout_rate if attention_dropout else 0.0

    def __call__(
        self, x_BxSxD: jax.Array, mask_BxS: jax.Array | None, *, rng: jax.Array | None = None
    ) -> jax.Array:
        r_attn, r_out, r_ffn = split_rng(rng, 3)
        a_BxSxD = self.attention(x_BxSxD, x_BxSxD, mask_BxS, rng=r_attn)
        h_BxSxD = self.norm_1(x_BxSxD + dropout(a_BxSxD, self.dropout_rate, r_out))
        return self.norm_2(h_BxSxD + self.ffn(h_BxSxD, rng=r_ffn))


class CrossBlock(nnx.Module):
    """GameFormer's CrossTransformer: h = LN1(MHA(q, kv)); out = LN2(h + FFN(h)).

    No residual around the attention: the query only shapes the attention weights.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout_rate: float, *, rngs: nnx.Rngs):
        self.attention = MultiheadAttention(dim, heads, dropout_rate, rngs=rngs)
        self.norm_1 = LayerNorm(dim)
        self.norm_2 = LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout_rate, rngs=rngs)

    def __call__(
        self,
        q_BxQxD: jax.Array,
        kv_BxSxD: jax.Array,
        mask_BxS: jax.Array | None,
        *,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        r_attn, r_ffn = split_rng(rng, 2)
        h = self.norm_1(self.attention(q_BxQxD, kv_BxSxD, mask_BxS, rng=r_attn))
        return self.norm_2(h + self.ffn(h, rng=r_ffn))


class LSTMLayer(nnx.Module):
    """One torch.nn.LSTM layer; gate blocks in the order input, forget, cell, output.

    The two biases are kept apart as in torch (the forward adds them): the parameter count is
    then the original's, and AdamW moves their sum at the original's speed. Init
    U(+-1/sqrt(hidden)).
    """

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(hidden)
        self.kernel_ih = uniform_param(rngs, (in_features, 4 * hidden), bound)
        self.kernel_hh = uniform_param(rngs, (hidden, 4 * hidden), bound)
        self.bias_ih = uniform_param(rngs, (4 * hidden,), bound)
        self.bias_hh = uniform_param(rngs, (4 * hidden,), bound)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        hidden = self.kernel_hh.shape[0]
        kernel_hh = self.kernel_hh[...]
        # Input projections of all steps at once; only the recurrence is sequential.
        gates_in_TxBx4D = jnp.swapaxes(
            x_BxTxD @ self.kernel_ih[...] + (self.bias_ih[...] + self.bias_hh[...]), 0, 1
        )

        def step(carry, gates_in_Bx4D):
            h_BxD, c_BxD = carry
            gates = gates_in_Bx4D + h_BxD @ kernel_hh
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c_BxD = jax.nn.sigmoid(f) * c_BxD + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_BxD = jax.nn.sigmoid(o) * jnp.tanh(c_BxD)
            return (h_BxD, c_BxD), h_BxD

        zeros_BxD = jnp.zeros((x_BxTxD.shape[0], hidden), x_BxTxD.dtype)
        _, h_TxBxD = jax.lax.scan(step, (zeros_BxD, zeros_BxD), gates_in_TxBx4D)
        return jnp.swapaxes(h_TxBxD, 0, 1)


class LSTM(nnx.Module):
    """Stacked torch.nn.LSTM (batch_first, zero initial state, no inter-layer dropout)."""

    def __init__(self, in_features: int, hidden: int, num_layers: int, *, rngs: nnx.Rngs):
        self.layers = nnx.Dict(
            {
                str(i): LSTMLayer(in_features if i == 0 else hidden, hidden, rngs=rngs)
                for i in range(num_layers)
            }
        )

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        """Top layer's outputs at every step, [B, T, hidden]."""
        for i in range(len(self.layers)):
            x_BxTxD = self.layers[str(i)](x_BxTxD)
        return x_BxTxD
