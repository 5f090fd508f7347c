"""The interaction-difficulty metadata score of the released code (`score_scenarios.py`).

Six features per scenario, all on the future (ego future and neighbour futures, dt = 0.1 s)
except `n_active`, which uses the past; computed for the whole dataset at once with numpy:

    d_min            min over t and valid neighbours of |ego_t - nb_t|         1/max(d, 0.5)   0.20
    ttc_min          min of d_t / closing_t where closing_t = -(d_{t+1}-d_t)/dt
                     exceeds 0.1 m/s                                           1/max(ttc, 0.5) 0.25
    n_conflict       steps with any valid neighbour within 3 m                 /80             0.20
    t_prox           seconds with any valid neighbour within 10 m              /8              0.15
    delta_theta_max  max over t of the wrapped heading difference to the
                     nearest valid neighbour at t                              /pi             0.10
    n_active         valid neighbours whose past speed (channels 3, 4) exceeds
                     1 m/s at any step                                         /20             0.10

A neighbour is valid if its past xy is non-zero anywhere. Without valid neighbours d and TTC are
inf (normalised term 0) and the rest 0. As in the released code, a neighbour's unobserved future
steps (all zero) enter the distances as the point (0, 0); `ignore_unobserved=True` drops them.
Composite: `weighted` (the code's weighted sum) or `mean` (the paper's "averaged": the plain mean
of the six normalised terms).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gf_jax.data.schema import DT, ScenarioSet

FEATURES = ("d_min", "ttc_min", "n_conflict", "t_prox", "delta_theta_max", "n_active")
WEIGHTS = {
    "d_min": 0.20,
    "ttc_min": 0.25,
    "n_conflict": 0.20,
    "t_prox": 0.15,
    "delta_theta_max": 0.10,
    "n_active": 0.10,
}
CONFLICT_M, PROXIMITY_M, MIN_CLOSING_MPS, ACTIVE_MPS = 3.0, 10.0, 0.1, 1.0
COMPOSITES = ("weighted", "mean")


def _arrays(data: ScenarioSet | dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = data.arrays if isinstance(data, ScenarioSet) else data
    keys = ("ego_agent_future", "neighbor_agents_future", "neighbor_agents_past")
    return {k: np.asarray(arrays[k], np.float64) for k in keys}


def features(data: ScenarioSet | dict[str, Any], *, ignore_unobserved: bool = False) -> dict:
    """The six raw features, each float64 [N] (d_min and ttc_min may be inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # inf arithmetic is masked below
        return _features(_arrays(data), ignore_unobserved)


def _features(a: dict[str, np.ndarray], ignore_unobserved: bool) -> dict[str, np.ndarray]:
    # A in these names counts neighbour slots only (the ego is the separate `ego_*` array).
    ego_NxTx3 = a["ego_agent_future"]
    neighbor_NxAxTx3 = a["neighbor_agents_future"]
    neighbor_past_NxAxTx11 = a["neighbor_agents_past"]
    neighbor_valid_NxA = np.any(neighbor_past_NxAxTx11[..., :2] != 0, axis=(2, 3))

    dist_NxAxT = np.linalg.norm(ego_NxTx3[:, None, :, :2] - neighbor_NxAxTx3[..., :2], axis=-1)
    use_NxAxT = np.broadcast_to(neighbor_valid_NxA[..., None], dist_NxAxT.shape)
    if ignore_unobserved:
        use_NxAxT = use_NxAxT & np.any(neighbor_NxAxTx3 != 0, axis=-1)
    d_NxAxT = np.where(use_NxAxT, dist_NxAxT, np.inf)

    d_min = d_NxAxT.min(axis=(1, 2))

    closing_NxAxT = -np.diff(d_NxAxT, axis=2) / DT  # T - 1 steps; inf - inf = nan where unused
    approaching_NxAxT = use_NxAxT[..., 1:] & use_NxAxT[..., :-1] & (closing_NxAxT > MIN_CLOSING_MPS)
    ttc_NxAxT = np.where(
        approaching_NxAxT,
        d_NxAxT[..., :-1] / np.where(approaching_NxAxT, closing_NxAxT, 1.0),
        np.inf,
    )
    ttc_min = ttc_NxAxT.min(axis=(1, 2))

    n_conflict = np.any(d_NxAxT < CONFLICT_M, axis=1).sum(axis=1).astype(np.float64)
    t_prox = np.any(d_NxAxT < PROXIMITY_M, axis=1).sum(axis=1) * DT

    nearest_NxT = np.argmin(d_NxAxT, axis=1)  # all-inf columns -> 0, masked below
    heading_NxAxT = neighbor_NxAxTx3[..., 2]
    nearest_heading_NxT = np.take_along_axis(heading_NxAxT, nearest_NxT[:, None], 1)[:, 0]
    dtheta_NxT = np.abs(ego_NxTx3[..., 2] - nearest_heading_NxT)
    dtheta_NxT = np.minimum(dtheta_NxT, 2 * np.pi - dtheta_NxT)
    any_use_NxT = np.isfinite(d_NxAxT).any(axis=1)
    delta_theta_max = np.where(any_use_NxT, dtheta_NxT, -np.inf).max(axis=1)
    delta_theta_max = np.where(np.isfinite(delta_theta_max), delta_theta_max, 0.0)

    speed_NxAxT = np.hypot(neighbor_past_NxAxTx11[..., 3], neighbor_past_NxAxTx11[..., 4])
    moving_NxA = np.any(speed_NxAxT > ACTIVE_MPS, axis=2)
    n_active = (neighbor_valid_NxA & moving_NxA).sum(axis=1).astype(float)

    return {
        "d_min": d_min,
        "ttc_min": ttc_min,
        "n_conflict": n_conflict,
        "t_prox": t_prox,
        "delta_theta_max": delta_theta_max,
        "n_active": n_active,
    }


def normalised_terms(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature on its normaliser (larger = more interaction)."""
    with np.errstate(divide="ignore"):
        return {
            "d_min": 1.0 / np.maximum(feats["d_min"], 0.5),
            "ttc_min": 1.0 / np.maximum(feats["ttc_min"], 0.5),
            "n_conflict": feats["n_conflict"] / 80.0,
            "t_prox": feats["t_prox"] / 8.0,
            "delta_theta_max": feats["delta_theta_max"] / np.pi,
            "n_active": feats["n_active"] / 20.0,
        }


def composite(feats: dict[str, np.ndarray], how: str = "weighted") -> np.ndarray:
    """`weighted`: the released code's weighted sum; `mean`: the paper's plain average."""
    if how not in COMPOSITES:
        raise ValueError(f"unknown composite {how!r}; choose one of {COMPOSITES}")
    terms = normalised_terms(feats)
    if how == "mean":
        return np.mean([terms[f] for f in FEATURES], axis=0)
    return np.sum([WEIGHTS[f] * terms[f] for f in FEATURES], axis=0)


def metadata_scores(
    data: ScenarioSet | dict[str, Any], how: str = "weighted", *, ignore_unobserved: bool = False
) -> np.ndarray:
    """The composite interaction-difficulty score of every scenario, float64 [N]."""
    return composite(features(data, ignore_unobserved=ignore_unobserved), how)


def tiers(score: np.ndarray) -> np.ndarray:
    """4 for the top 20 %, 3 for 50-80 %, 2 for 20-50 %, 1 for the bottom 20 % (int [N])."""
    s = np.asarray(score, np.float64)
    q20, q50, q80 = np.quantile(s, [0.2, 0.5, 0.8])
    return np.select([s >= q80, s >= q50, s >= q20], [4, 3, 2], default=1)
