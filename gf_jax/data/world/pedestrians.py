"""Pedestrians at the start: who walks where, and when a crosswalk shows walk.

Pedestrians either cross at a crosswalk (approach on the sidewalk, wait at the curb, cross) or walk
along a sidewalk; the recipe's focus pedestrians cross the ego's exit arm (or the mid-block
crosswalk) on cue. Their movement during the simulation is `crossings`'.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import signals
from gf_jax.data.world.draws import Draws
from gf_jax.data.world.geometry import cumulative_length
from gf_jax.data.world.plan import Plan
from gf_jax.data.world.roads import Roads

N_PEDS = 8


@dataclasses.dataclass
class Peds:
    """Pedestrians [N, P]: a path each (a polyline), where they wait and cross."""

    ok: np.ndarray
    path: np.ndarray  # [N, P, 6, 2] vertices
    path_len: np.ndarray
    s: np.ndarray
    v: np.ndarray
    size: np.ndarray
    cw: np.ndarray  # crosswalk slot, -1 for sidewalk walkers
    s_wait: np.ndarray  # curb point (inf for walkers)
    s_hold: np.ndarray  # where they stand while waiting, a little back from the curb
    cross_len: np.ndarray
    dir: np.ndarray  # +1 crosses from side A to B
    not_before: np.ndarray  # earliest start of the crossing (s)


def place_peds(plan: Plan, roads: Roads, d: Draws) -> Peds:
    """N_PEDS pedestrians per scenario: crossers (the recipe's focus walkers first) on their
    crosswalk's path, the others on a sidewalk; one draw of uniforms [N, P, 14]."""
    p = N_PEDS
    u = d.uniform(shape=(p, 14))
    ar = np.arange(p)
    active = u[..., 0] < np.clip(plan.peds / p, 0.0, 1.0)[:, None]
    focus = ar < plan.ped_focus[:, None]
    active |= focus
    cw = _crosswalk_choice(plan, roads, u, focus)
    cross_pts, direction, d_app, lam_c, lam_s = _crossing_paths(plan, roads, u, focus, cw)
    path = np.where((cw >= 0)[..., None, None], cross_pts, _sidewalk_paths(plan, roads, u))
    path_len = cumulative_length(path)[..., -1]
    s_wait = np.where(cw >= 0, d_app + (lam_s - lam_c), np.inf)
    s_hold = s_wait - np.where(focus, 0.1, 0.1 + 1.4 * u[..., 10])  # waiting walkers stand apart
    cross_len = 2 * lam_c
    speed = 1.0 + 0.6 * u[..., 11]
    # Mid-crossing at the start only where the signal says walk; elsewhere they start on the sidewalk.
    signalised = np.take_along_axis(roads.cw_group, np.maximum(cw, 0), 1) >= 0
    walkable0 = walk_allowed(plan, roads, cw, 0.0) & signalised
    s0 = np.where(walkable0, (s_wait + 0.7 * cross_len) * u[..., 12], s_hold * u[..., 12])
    s0 = np.where(cw >= 0, s0, 0.0)
    ft = plan.ped_focus_time[:, None]
    s_focus = np.where(
        ft >= 0, s_wait - speed * ft, s_wait + speed * np.minimum(-ft, 0.6 * cross_len / speed)
    )
    s0 = np.where(focus & (cw >= 0), np.maximum(s_focus, 0.0), s0)
    not_before = np.where(focus, ft, -np.inf)
    f32 = np.float32
    return Peds(
        ok=active,
        path=path,
        path_len=path_len.astype(f32),
        s=s0.astype(f32),
        v=speed.astype(f32),
        size=(0.5 + 0.2 * u[..., 13]).astype(f32),
        cw=cw,
        s_wait=s_wait.astype(f32),
        s_hold=s_hold.astype(f32),
        cross_len=cross_len.astype(f32),
        dir=direction.astype(f32),
        not_before=not_before.astype(f32),
    )


def _crosswalk_choice(plan: Plan, roads: Roads, u: np.ndarray, focus: np.ndarray) -> np.ndarray:
    """Crosswalk slot per pedestrian [N, P], -1 for sidewalk walkers: the focus crosswalk (the
    ego's exit arm, or the mid-block one), otherwise any existing crosswalk."""
    gi = np.arange(len(plan))[:, None]
    cw_ok = roads.cw_ok
    exit_arm = np.where(
        plan.kind == 0, 0, np.take_along_axis(roads.arm_out, roads.ego_route[:, None], 1)[:, 0]
    )
    exit_arm = np.clip(exit_arm, 0, 3)
    cum = np.cumsum(cw_ok.astype(float), 1)
    pick = np.minimum((u[..., 1:2] * cum[:, None, -1:] >= cum[:, None, :]).sum(-1), 3)
    cw = np.where(focus, exit_arm[:, None], pick)
    # Mid-block crossings see fewer walkers than junctions (and no signal to bunch them).
    p_cross = np.where(plan.kind == 0, 0.25, 0.75)[:, None]
    has_cw = cw_ok[gi, cw] & ((u[..., 2] < p_cross) | focus)
    return np.where(has_cw, cw, -1)


def _crossing_paths(plan: Plan, roads: Roads, u: np.ndarray, focus: np.ndarray, cw: np.ndarray):
    """Six-vertex paths [N, P, 6, 2] along the sidewalk to the curb, across, and away; the
    crossing direction, the approach length and the curb / sidewalk offsets from the road's centre."""
    n, p = cw.shape
    ar = np.arange(p)
    gi = np.arange(n)[:, None]
    c = np.maximum(cw, 0)
    tc = roads.cw_tc[gi, c]
    hw = roads.cw_half_road[gi, c]
    band = roads.cw_band[gi, c]
    phi = roads.cw_phi[gi, c]
    ux, uy = np.cos(phi), np.sin(phi)
    nx, ny = -uy, ux
    direction = np.where(u[..., 3] < 0.5, 1.0, -1.0)
    # Pedestrians timed for the ego start from the curb on the ego's side of the road.
    ego_u = np.take_along_axis(roads.cw_u[np.arange(n), roads.ego_route], c, 1)
    ego_side = np.where(ego_u < hw + 0.8, 1.0, -1.0)
    direction = np.where(focus, ego_side, direction)
    # Spread walkers over the crosswalk band (those timed for the ego side by side, 0.8 m apart).
    spread = np.where(focus, (ar - (plan.ped_focus[:, None] - 1) / 2) * 0.8 + 0.2 * (u[..., 4] - 0.5),
                      (u[..., 4] - 0.5) * np.maximum(band - 1.0, 0.2))  # fmt: skip
    spread = spread + 0.35 * direction  # opposite streams pass side by side
    tp = tc + np.clip(spread, -(band - 1.0) / 2, (band - 1.0) / 2)
    lam_c, lam_s = hw + 0.8, hw + 2.5
    d_app = 1.0 + 29.0 * u[..., 5]
    ts = [tp + d_app, tp, tp, tp, tp, tp + 60.0]
    ls = [-lam_s, -lam_s, -lam_c, lam_c, lam_s, lam_s]
    cross_pts = np.stack(
        [
            np.stack([t * ux + direction * lam * nx, t * uy + direction * lam * ny], -1)
            for t, lam in zip(ts, ls, strict=True)
        ],
        2,
    )
    return cross_pts, direction, d_app, lam_c, lam_s


def _sidewalk_paths(plan: Plan, roads: Roads, u: np.ndarray) -> np.ndarray:
    """Paths [N, P, 6, 2] along a random existing arm, either side, towards or away from the
    junction, keeping right."""
    gi = np.arange(len(plan))[:, None]
    arm_w = np.where(plan.arms_on, 1.0, 0.0)
    cum = np.cumsum(arm_w, 1)
    arm = np.minimum((u[..., 6:7] * cum[:, None, -1:] >= cum[:, None, :]).sum(-1), 3)
    phw = plan.phi[gi, arm]
    hww = plan.median[:, None] + plan.lanes[gi, arm] * plan.lane_w[:, None]
    straight_road = (plan.kind == 0)[:, None] | (plan.kind == 3)[:, None]
    t_lo = np.where(straight_road, -90.0, roads.cw_tc[gi, arm] + 4.0)
    t0 = t_lo + (70.0 + 20.0 * straight_road) * u[..., 7]
    t1 = np.where(u[..., 8] < 0.5, t0 + 100.0, np.maximum(t0 - 100.0, t_lo))
    side = np.where(u[..., 9] < 0.5, 1.0, -1.0)
    # Merges: walkers stay on the north side, away from the on-ramp (arm 0's normal points south).
    side = np.where((plan.kind == 3)[:, None], np.where(arm == 0, -1.0, 1.0), side)
    outward = np.where(t1 > t0, 1.0, -1.0)
    lw = side * (hww + 2.5 + 0.8 * (u[..., 10] - 0.5) + 0.4 * outward * side)  # keep right
    wx, wy = np.cos(phw), np.sin(phw)
    # Six vertices like the crossing paths; the last short steps keep the walking direction
    # defined for someone standing at the end.
    ts = [t0, t0 + 0.5 * (t1 - t0), t1] + [t1 + outward * e for e in (0.01, 0.02, 0.03)]
    return np.stack([np.stack([t * wx - lw * wy, t * wy + lw * wx], -1) for t in ts], 2)


def walk_allowed(
    plan: Plan, roads: Roads, cw: np.ndarray, t: float, min_green: float = 0.0
) -> np.ndarray:
    """Whether the crosswalk slots cw [N, P] show 'walk' at time t: signalised crosswalks walk while
    the crossed arm has red and the other phase still has `min_green` seconds of green."""
    st, left = signals.states(plan.green, plan.offset, t)
    c = np.maximum(cw, 0)
    grp = np.take_along_axis(roads.cw_group, c, 1)
    g = np.maximum(grp, 0)
    other = 1 - g
    own_red = np.take_along_axis(st, g, 1) == signals.RED
    other_green = np.take_along_axis(left, other, 1) > min_green
    return (cw >= 0) & ((grp < 0) | (own_red & other_green))
