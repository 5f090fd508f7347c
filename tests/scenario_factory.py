"""Small valid ScenarioSets with random content for tests (no procedural world needed).

(Not in a conftest.py: several conftest modules exist, and `import conftest` would find any one.)
"""

import numpy as np


def make_scenarios(n: int = 4, seed: int = 0):
    """Small valid ScenarioSet with random content (no procedural world needed)."""
    from gf_jax.data.schema import LAYOUT, ScenarioSet, empty_meta

    rng = np.random.default_rng(seed)
    a = {k: np.zeros((n, *shape), np.float32) for k, (shape, _) in LAYOUT.items()}
    t_past = np.arange(-20, 1) * 0.1
    t_fut = np.arange(1, 81) * 0.1
    for i in range(n):
        v = rng.uniform(2, 12)
        a["ego_agent_past"][i, :, 0] = v * t_past
        a["ego_agent_past"][i, :, 3] = v
        a["ego_agent_future"][i, :, 0] = v * t_fut
        k = rng.integers(1, 20)
        d = np.sort(rng.uniform(3, 50, k))
        a["neighbor_agents_past"][i, :k, :, 0] = d[:, None] + v * t_past
        a["neighbor_agents_past"][i, :k, :, 1] = rng.uniform(-4, 4, (k, 1))
        a["neighbor_agents_past"][i, :k, :, 3] = v
        a["neighbor_agents_past"][i, :k, :, 6:9] = (4.5, 1.9, 1.0)
        a["neighbor_agents_future"][i, :k, :, 0] = d[:, None] + v * t_fut
        nl = rng.integers(1, 40)
        a["lanes"][i, :nl, :, 0] = np.linspace(-30, 60, 50)
        a["lanes"][i, :nl, :, 1] = rng.uniform(-20, 20, (nl, 1))
        a["lanes"][i, :nl, :, 6] = 1.0
        a["route_lanes"][i, :2, :, 0] = np.linspace(-30, 60, 50)
        a["crosswalks"][i, :1, :, 0] = np.linspace(20, 25, 30)
        a["crosswalks"][i, :1, :, 1] = np.linspace(-5, 5, 30)
    meta = empty_meta(
        n,
        map_name="us-ma-boston",
        token=[f"{seed:08x}{i:08x}" for i in range(n)],
        city="boston",
        scenario_type=["following_lane_with_lead", "changing_lane"][seed % 2],
    )
    meta["corrupted"][::3] = True
    return ScenarioSet(a, meta, f"test(seed={seed})").validate()
