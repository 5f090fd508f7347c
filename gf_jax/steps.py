"""The optimizer and the jitted, donated train and eval steps, compiled once per config pair."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gf_jax import losses, metrics, model
from gf_jax.config import ModelConfig, TrainConfig

Params = Any


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW as PyTorch's (decoupled decay on every parameter) after global-norm clipping.

    The learning rate is applied outside (`-lr * update`) so that the schedule (milestones,
    warm-up) is an argument of the jitted step, not a constant baked into it (no recompiles).
    """
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
        optax.add_decayed_weights(cfg.weight_decay),
    )


def train_step(
    params: Params,
    opt_state: Any,
    batch: dict,
    weight_B: jax.Array,
    rng: jax.Array,
    lr: jax.Array,
    *,
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
    grad_accum: int,
) -> tuple[Params, Any, jax.Array]:
    """One optimizer step on a (possibly padded) batch; gradient accumulation over micro-batches.

    Returns the new params, optimizer state and the batch's mean loss.
    """

    def micro(b: dict, w_B: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        # Sum (not mean) per micro-batch so that accumulation equals one big weighted mean.
        def f(p):
            out = model.apply(p, b, model_cfg, rng=key)
            return jnp.sum(losses.per_example_loss(out, b, model_cfg)["total"] * w_B)

        return jax.value_and_grad(f)(params)

    total_w = jnp.maximum(jnp.sum(weight_B), 1.0)
    if grad_accum == 1:
        loss_sum, grads = micro(batch, weight_B, rng)
    else:
        split = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), (batch, weight_B))
        keys = jax.random.split(rng, grad_accum)

        def body(carry, xs):
            (b, w_B), key = xs
            loss_sum, grads = micro(b, w_B, key)
            return jax.tree.map(jnp.add, carry, (loss_sum, grads)), None

        zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
        (loss_sum, grads), _ = jax.lax.scan(body, zero, (split, keys))
    grads = jax.tree.map(lambda g: g / total_w, grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state, loss_sum / total_w


def eval_step(params: Params, batch: dict, *, model_cfg: ModelConfig) -> dict[str, jax.Array]:
    """Per-example loss and metric sums for one batch (eval mode, no dropout)."""
    outputs = model.apply(params, batch, model_cfg)
    terms = losses.loss_terms(outputs, batch, model_cfg)
    return {"loss": terms["total"], **metrics.per_example_metrics(outputs, terms, batch)}


def compiled_steps(model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[Callable, Callable]:
    """The jitted train and eval steps for a config pair, built once per process.

    Caching the jitted callables means a second `fit` with the same model and optimizer (a sweep,
    a resumed run, a test) reuses the compiled executables instead of recompiling. Epoch counts,
    learning rates and warm-up do not enter the step, so they do not split the cache.
    """
    return _compiled_steps(
        model_cfg, train_cfg.clip_norm, train_cfg.weight_decay, train_cfg.grad_accum
    )


@functools.lru_cache(maxsize=16)
def _compiled_steps(
    model_cfg: ModelConfig, clip_norm: float, weight_decay: float, grad_accum: int
) -> tuple[Callable, Callable]:
    tx = make_optimizer(TrainConfig(clip_norm=clip_norm, weight_decay=weight_decay))
    train_fn = jax.jit(
        functools.partial(train_step, model_cfg=model_cfg, tx=tx, grad_accum=grad_accum),
        donate_argnums=(0, 1),
    )
    eval_fn = jax.jit(functools.partial(eval_step, model_cfg=model_cfg))
    return train_fn, eval_fn
