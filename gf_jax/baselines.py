"""Non-learned reference planners and predictors; a trained GameFormer has to beat them.

- `constant_velocity`: the ego's current velocity (in the ego frame, where the current heading
  is 0) extrapolated along a straight line for the 80 future steps.
- `route_following`: the ego moves along the chain of route-lane centrelines at its current speed
  (rule in its docstring); constant velocity where there is no route.
- `constant_velocity_prediction`: each neighbour's last observed velocity extrapolated from its
  last observed position.
- `evaluate`: every baseline scored with the project's metric functions, so the numbers compare
  with a model's val metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gf_jax import metrics
from gf_jax.data.schema import DT, FUTURE_STEPS, ScenarioSet
from gf_jax.data.world.geometry import resample_at, wrap_angle

MAX_CHAIN_GAP_M = 3.0  # below a lane width (~3.5 m): a parallel lane's start is never "next"
EXTEND_M = 1000.0  # the straight extension past the route's end; longer than any 8 s drive
_SAME_POINT_M = 1e-6  # consecutive vertices closer than this are merged (no zero-length segments)


def constant_velocity(ego_agent_past_Nx21x7: np.ndarray) -> np.ndarray:
    """Plans [N, 80, 3] (x, y, heading) at the current velocity, heading held at its direction."""
    v_Nx2 = np.asarray(ego_agent_past_Nx21x7)[:, -1, 3:5]
    t_T = DT * np.arange(1, FUTURE_STEPS + 1, dtype=np.float32)
    xy_NxTx2 = v_Nx2[:, None, :] * t_T[None, :, None]
    moving = np.linalg.norm(v_Nx2, axis=-1) > 0.2  # below that the velocity direction is noise
    heading_N = np.where(moving, np.arctan2(v_Nx2[:, 1], v_Nx2[:, 0]), 0.0)
    heading_NxT = np.broadcast_to(heading_N[:, None], xy_NxTx2.shape[:2])
    return np.concatenate([xy_NxTx2, heading_NxT[..., None]], axis=-1).astype(np.float32)


def constant_velocity_prediction(
    neighbor_agents_past_NxAxTx11: np.ndarray, neighbors: int = 10
) -> np.ndarray:
    """Neighbour futures [N, neighbors, 80, 2]: each of the first `neighbors` slots (the ones the
    model predicts and the losses/metrics score) moves on from its last past position at its last
    past velocity (channels 3:5, vx and vy in the ego frame). Padding slots come out all zero."""
    neighbor_last_NxAx11 = np.asarray(neighbor_agents_past_NxAxTx11)[:, :neighbors, -1].astype(
        np.float64
    )
    t_T = DT * np.arange(1, FUTURE_STEPS + 1)
    neighbor_xy_NxAxTx2 = (
        neighbor_last_NxAx11[:, :, None, 0:2]
        + neighbor_last_NxAx11[:, :, None, 3:5] * t_T[None, None, :, None]
    )
    return neighbor_xy_NxAxTx2.astype(np.float32)


def route_following(data_or_arrays: ScenarioSet | Mapping[str, np.ndarray]) -> np.ndarray:
    """Plans [N, 80, 3] that follow the route lanes at the ego's current speed.

    Rule, per scenario (route polylines are `route_lanes[..., :2]`, all-zero ones are padding):
    1. Start: the route vertex nearest the ego (the origin); the path is that polyline from the
       vertex before it onward (increasing point index).
    2. Chain: at the path's end, continue with the unused route polyline whose first point is
       nearest that end, if it is within `MAX_CHAIN_GAP_M`; repeat until none is.
    3. Motion: the origin is projected onto the path's first two segments (arc length s0); the
       plan at t = 0.1 ... 8 s is the path point at s0 + |v| t shifted by the origin minus the
       projected point, so the plan starts at the ego (a stopped ego stays put, an ego off the
       centreline keeps its offset); |v| is the speed at the present, `ego_agent_past[:, -1, 3:5]`.
    4. Heading: the path tangent, linear in arc length between vertices (a vertex's tangent is
       the mean direction of its two segments), so a sampled circular arc gives its exact tangent.
    5. Beyond the path's end the plan goes straight on along the last segment's direction; with
       no route lanes (or a degenerate path) the plan is `constant_velocity`.
    """
    arrays = data_or_arrays.arrays if isinstance(data_or_arrays, ScenarioSet) else data_or_arrays
    ego_past_Nx21x7 = np.asarray(arrays["ego_agent_past"])
    route_NxLxPx2 = np.asarray(arrays["route_lanes"])[..., :2].astype(np.float64)
    paths = _route_paths(route_NxLxPx2)
    plan_NxTx3 = constant_velocity(ego_past_Nx21x7)
    rows = np.array([i for i, path in enumerate(paths) if path is not None], dtype=np.int64)
    if not len(rows):
        return plan_NxTx3
    # From here on N counts only the scenarios with a route path (`rows`).
    path_NxPx3 = _padded_paths([paths[i] for i in rows])
    s0_N, start_Nx2 = _project_origin(path_NxPx3[..., :2])
    speed_N = np.linalg.norm(ego_past_Nx21x7[rows, -1, 3:5].astype(np.float64), axis=-1)
    t_T = DT * np.arange(1, FUTURE_STEPS + 1)
    s_NxT = s0_N[:, None] + speed_N[:, None] * t_T[None, :]
    pose_NxTx3 = resample_at(path_NxPx3, s_NxT)
    pose_NxTx3[..., :2] -= start_Nx2[:, None, :]
    pose_NxTx3[..., 2] = wrap_angle(pose_NxTx3[..., 2])
    plan_NxTx3[rows] = pose_NxTx3.astype(np.float32)
    return plan_NxTx3


def _route_paths(route_NxLxPx2: np.ndarray) -> list[np.ndarray | None]:
    """Per scenario the chained route path's vertices [P, 2] (rules 1-2 of `route_following`),
    or None without route lanes. Distances are computed for all scenarios at once; only the
    short chain walk (at most L polylines) loops in Python."""
    n, n_lanes, n_points, _ = route_NxLxPx2.shape
    valid_NxL = np.any(route_NxLxPx2 != 0, axis=(2, 3))
    dist_NxLxP = np.linalg.norm(route_NxLxPx2, axis=-1)
    dist_NxLxP[~valid_NxL] = np.inf
    nearest_N = np.argmin(dist_NxLxP.reshape(n, -1), axis=1)
    lane_N, vertex_N = np.divmod(nearest_N, n_points)
    # gap_NxLxL[n, a, b]: from the end of polyline a to the start of polyline b.
    end_NxLx2, start_NxLx2 = route_NxLxPx2[:, :, -1], route_NxLxPx2[:, :, 0]
    gap_NxLxL = np.linalg.norm(end_NxLx2[:, :, None] - start_NxLx2[:, None, :], axis=-1)
    gap_NxLxL[~valid_NxL[:, None, :] | ~valid_NxL[:, :, None]] = np.inf
    gap_NxLxL[:, np.arange(n_lanes), np.arange(n_lanes)] = np.inf
    paths: list[np.ndarray | None] = []
    for i in range(n):
        if not valid_NxL[i].any():
            paths.append(None)
            continue
        lane = int(lane_N[i])
        parts, used = [route_NxLxPx2[i, lane, max(int(vertex_N[i]) - 1, 0) :]], {lane}
        while True:
            gaps_L = gap_NxLxL[i, lane].copy()
            gaps_L[list(used)] = np.inf
            lane = int(np.argmin(gaps_L))
            if gaps_L[lane] > MAX_CHAIN_GAP_M:
                break
            parts.append(route_NxLxPx2[i, lane])
            used.add(lane)
        path_Px2 = _merge_close(np.concatenate(parts))
        paths.append(path_Px2 if len(path_Px2) >= 2 else None)
    return paths


def _merge_close(xy_Px2: np.ndarray) -> np.ndarray:
    """Drops vertices that repeat the previous one (joins of chained polylines, padding)."""
    step_P = np.linalg.norm(np.diff(xy_Px2, axis=0), axis=-1)
    keep_P = np.concatenate([[True], step_P > _SAME_POINT_M])
    return xy_Px2[keep_P]


def _padded_paths(paths: list[np.ndarray]) -> np.ndarray:
    """Paths [N, P, 3] (x, y, unwrapped tangent heading) from vertex lists [P_i, 2]: each goes on
    straight along its last segment, `EXTEND_M` to its next vertex and then 1 m per vertex up to
    the common length P, so every segment has a direction and the sampling never runs out."""
    n, n_points = len(paths), max(len(p) for p in paths) + 1
    n_vertices_N = np.array([len(p) for p in paths])
    xy_NxPx2 = np.zeros((n, n_points, 2))
    for i, path_Px2 in enumerate(paths):  # ragged -> padded; the rest is vectorised
        xy_NxPx2[i, : len(path_Px2)] = path_Px2
    rows_N = np.arange(n)
    last_Nx2 = xy_NxPx2[rows_N, n_vertices_N - 1]
    step_Nx2 = last_Nx2 - xy_NxPx2[rows_N, n_vertices_N - 2]
    dir_Nx2 = step_Nx2 / np.linalg.norm(step_Nx2, axis=-1, keepdims=True)
    beyond_NxP = np.arange(n_points)[None, :] - n_vertices_N[:, None]  # >= 0 on the extension
    ext_NxP = EXTEND_M + beyond_NxP
    tail_NxPx2 = last_Nx2[:, None, :] + ext_NxP[..., None] * dir_Nx2[:, None, :]
    xy_NxPx2 = np.where((beyond_NxP >= 0)[..., None], tail_NxPx2, xy_NxPx2)
    seg_NxPm1x2 = np.diff(xy_NxPx2, axis=1)
    seg_h_NxPm1 = np.unwrap(np.arctan2(seg_NxPm1x2[..., 1], seg_NxPm1x2[..., 0]), axis=1)
    vertex_h_NxP = np.concatenate(
        [seg_h_NxPm1[:, :1], 0.5 * (seg_h_NxPm1[:, :-1] + seg_h_NxPm1[:, 1:]), seg_h_NxPm1[:, -1:]],
        axis=1,
    )
    return np.concatenate([xy_NxPx2, vertex_h_NxP[..., None]], axis=-1)


def _project_origin(path_NxPx2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length s0 [N] and point [N, 2] of the origin's projection onto the first two segments
    of each path (the ones around the nearest vertex, see `_route_paths`)."""
    a_Nx2x2, b_Nx2x2 = path_NxPx2[:, 0:2], path_NxPx2[:, 1:3]
    seg_Nx2x2 = b_Nx2x2 - a_Nx2x2
    len2_Nx2 = np.maximum((seg_Nx2x2**2).sum(-1), 1e-12)
    u_Nx2 = np.clip((-a_Nx2x2 * seg_Nx2x2).sum(-1) / len2_Nx2, 0.0, 1.0)
    foot_Nx2x2 = a_Nx2x2 + u_Nx2[..., None] * seg_Nx2x2
    best_N = np.argmin(np.linalg.norm(foot_Nx2x2, axis=-1), axis=1)
    i = np.arange(len(path_NxPx2))
    seg_len_Nx2 = np.sqrt(len2_Nx2)
    s0_N = np.where(best_N == 1, seg_len_Nx2[:, 0], 0.0) + u_Nx2[i, best_N] * seg_len_Nx2[i, best_N]
    return s0_N, foot_Nx2x2[i, best_N]


def planning_metrics(plan_NxTx3: np.ndarray, data: ScenarioSet) -> dict[str, float]:
    """Planning ADE / FDE / AHE / FHE of given plans on a ScenarioSet (means over scenarios)."""
    n = len(data)
    no_pred = np.zeros((n, 1, FUTURE_STEPS, 2), np.float32)
    no_nb = np.zeros((n, 1, FUTURE_STEPS, 3), np.float32)
    per = metrics.per_example_from_arrays(
        plan_NxTx3, no_pred, data.arrays["ego_agent_future"], no_nb
    )
    return {k: float(np.mean(per[k])) for k in ("plan_ade", "plan_fde", "plan_ahe", "plan_fhe")}


def evaluate(data: ScenarioSet, neighbors: int = 10) -> dict[str, dict[str, float]]:
    """Metrics of every baseline on a split: {planner name: {metric name: value}}.

    Each planner's plan is paired with the constant-velocity neighbour prediction and scored
    exactly as `train.evaluate` scores a model (`metrics.per_example_from_arrays` over all
    scenarios, then `metrics.aggregate`), against the first `neighbors` neighbour slots.
    """
    ego_future_NxTx3 = np.asarray(data.arrays["ego_agent_future"])
    neighbor_future_NxAxTx3 = np.asarray(data.arrays["neighbor_agents_future"])[:, :neighbors]
    neighbor_pred_NxAxTx2 = constant_velocity_prediction(
        data.arrays["neighbor_agents_past"], neighbors
    )
    plans = {
        "constant_velocity": constant_velocity(data.arrays["ego_agent_past"]),
        "route_following": route_following(data),
    }
    out = {}
    for name, plan_NxTx3 in plans.items():
        per = metrics.per_example_from_arrays(
            plan_NxTx3, neighbor_pred_NxAxTx2, ego_future_NxTx3, neighbor_future_NxAxTx3
        )
        out[name] = {k: float(v) for k, v in metrics.aggregate(per).items()}
    return out
