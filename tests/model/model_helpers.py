"""Shared model-test helpers: the tiny config, the fixture path, hand-built padded batches.

(Not a conftest.py: a second `conftest` module would shadow tests/conftest.py for tests that
`import conftest`.)"""

import functools
from pathlib import Path

import jax
import numpy as np

from gf_jax import model
from gf_jax.config import PRESETS
from gf_jax.data.schema import LAYOUT, MODEL_INPUT_KEYS

TINY = PRESETS["tiny"].model
FIXTURE = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "fixtures"
    / "gameformer_parity_seed0.npz"
).resolve()


def make_batch(
    n_neighbors=(3, 5),
    n_lanes=(4, 6),
    n_crosswalks=(1, 0),
    n_route=(2, 1),
    seed: int = 0,
    parked=(False, False),
) -> dict[str, np.ndarray]:
    """A batch in the model's input names plus targets, one example per tuple entry."""
    rng = np.random.default_rng(seed)
    b = len(n_neighbors)
    a = {k: np.zeros((b, *shape), np.float32) for k, (shape, _) in LAYOUT.items()}
    t_past, t_fut = np.arange(-20, 1) * 0.1, np.arange(1, 81) * 0.1
    for i in range(b):
        v = 0.0 if parked[i] else rng.uniform(3, 10)
        a["ego_agent_past"][i, :, 0] = v * t_past
        a["ego_agent_past"][i, :, 3] = v
        a["ego_agent_future"][i, :, 0] = v * t_fut
        a["ego_agent_future"][i, :, 1] = 0.01 * v * t_fut**2
        k = n_neighbors[i]
        d = np.sort(rng.uniform(4, 40, k))
        y = rng.uniform(-6, 6, (k, 1))
        vn = rng.uniform(0, 10, (k, 1))
        a["neighbor_agents_past"][i, :k, :, 0] = d[:, None] + vn * t_past
        a["neighbor_agents_past"][i, :k, :, 1] = y
        a["neighbor_agents_past"][i, :k, :, 3] = vn
        a["neighbor_agents_past"][i, :k, :, 6:9] = (4.5, 1.9, 1.0)
        a["neighbor_agents_future"][i, :k, :, 0] = d[:, None] + vn * t_fut
        a["neighbor_agents_future"][i, :k, :, 1] = y
        for key, count, pts in (
            ("lanes", n_lanes[i], 50),
            ("crosswalks", n_crosswalks[i], 30),
            ("route_lanes", n_route[i], 50),
        ):
            if count:
                a[key][i, :count, :, 0] = np.linspace(-30, 60, pts) + rng.uniform(
                    0.1, 1, (count, 1)
                )
                a[key][i, :count, :, 1] = rng.uniform(-10, 10, (count, 1))
                a[key][i, :count, :, 2] = rng.uniform(-0.1, 0.1, (count, 1))
        a["lanes"][i, : n_lanes[i], :, 6] = 1.0
    batch = {name: a[key] for name, key in MODEL_INPUT_KEYS.items()}
    batch["ego_agent_future"] = a["ego_agent_future"]
    batch["neighbor_agents_future"] = a["neighbor_agents_future"][:, : TINY.neighbors]
    return batch


@functools.cache
def tiny_params():
    return model.init_params(TINY, jax.random.key(0))


def tiny_apply():
    # model.apply is jitted inside (cached per config and shapes): no outer jit, so that all
    # tests share one compiled forward.
    return model.apply
