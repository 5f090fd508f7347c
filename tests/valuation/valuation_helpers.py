"""Small models and data for the valuation tests: an MLP regression with optional dropout, and a
convex quadratic with a known Hessian.

(Not a conftest.py: a second `conftest` module would shadow tests/conftest.py for `import conftest`.)
"""

import jax
import jax.numpy as jnp
import numpy as np

D_IN, D_HIDDEN = 5, 8


def mlp_params(seed: int = 0) -> dict:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "w1": jax.random.normal(k1, (D_IN, D_HIDDEN)) / np.sqrt(D_IN),
        "b1": jnp.zeros(D_HIDDEN) + 0.1,
        "w2": jax.random.normal(k2, (D_HIDDEN, 2)) / np.sqrt(D_HIDDEN),
        "b2": jax.random.normal(k3, (2,)) * 0.1,
    }


def mlp_data(n: int, seed: int = 0) -> dict:
    """A pytree dataset with leading N: inputs [N, D_IN], 2-d targets [N, 2] and a weight [N]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D_IN)).astype(np.float32)
    return {
        "x": x,
        "y": {"t": np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], 1).astype(np.float32)},
        "w": rng.uniform(0.5, 1.5, n).astype(np.float32),
    }


def mlp_loss(params: dict, example: dict, rng=None) -> jax.Array:
    """Weighted squared error of ONE example; dropout on the hidden layer when `rng` is given."""
    h = jnp.tanh(example["x"] @ params["w1"] + params["b1"])
    if rng is not None:
        keep = jax.random.bernoulli(rng, 0.8, h.shape)
        h = jnp.where(keep, h / 0.8, 0.0)
    out = h @ params["w2"] + params["b2"]
    return example["w"] * jnp.sum(jnp.square(out - example["y"]["t"]))


def mlp_loss_nodrop(params: dict, example: dict) -> jax.Array:
    return mlp_loss(params, example)


def mlp_checkpoints(k: int = 3) -> list:
    return [(mlp_params(seed), 0.1 / (i + 1)) for i, seed in enumerate(range(10, 10 + k))]


def brute_force_tracin(loss_fn, checkpoints, train, val) -> np.ndarray:
    """sum_k lr_k <grad l(z_i), mean_j grad l(v_j)> with a plain Python loop over jax.grad."""
    n_train, n_val = len(jax.tree.leaves(train)[0]), len(jax.tree.leaves(val)[0])
    grad = jax.jit(jax.grad(loss_fn))
    out = np.zeros(n_train)
    for params, lr in checkpoints:

        def flat(g):
            return np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]).astype(np.float64)

        g_val = (
            sum(flat(grad(params, jax.tree.map(lambda a, j=j: a[j], val))) for j in range(n_val))
            / n_val
        )
        for i in range(n_train):
            out[i] += lr * flat(grad(params, jax.tree.map(lambda a, i=i: a[i], train))) @ g_val
    return out


def quadratic(dim: int = 6, seed: int = 0, eig=(0.5, 10.0)):
    """A convex per-example loss 0.5 (x - a_i)^T S (x - a_i) whose mean has Hessian S exactly."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    s = (q * np.linspace(*eig, dim)) @ q.T
    s = jnp.asarray((s + s.T) / 2, jnp.float32)

    def loss(params, example):
        d = params["x"] - example["a"]
        return 0.5 * d @ s @ d + 0.1 * jnp.sum(example["a"] * params["x"])

    data = {"a": rng.normal(size=(12, dim)).astype(np.float32)}
    params = {"x": jnp.asarray(rng.normal(size=dim), jnp.float32)}
    return loss, s, params, data


def flat_grads(loss_fn, params, data) -> np.ndarray:
    """[N, F] float64 per-example gradients by a loop over jax.grad (the reference)."""
    grad = jax.jit(jax.grad(loss_fn))
    n = len(jax.tree.leaves(data)[0])
    rows = [grad(params, jax.tree.map(lambda a, i=i: a[i], data)) for i in range(n)]
    flat = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in rows]
    return np.stack(flat).astype(np.float64)
