"""Who is on the road at the start: vehicles in lane streams, the ego among them.

Every lane is a stream of candidate vehicles placed bumper to bumper from its stop line (inbound),
from the junction exit (outbound) or from the end of the acceleration lane (ramp): queued at a red
light, otherwise at car-following headways for the city's density. The ego takes a given place in
its stream. The candidates nearest the ego fill the fixed number of vehicle slots (slot 0 = ego).
Pedestrians are placed by `pedestrians`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import signals
from gf_jax.data.world.cities import city_table
from gf_jax.data.world.draws import Draws
from gf_jax.data.world.plan import Plan
from gf_jax.data.world.roads import Roads, allowed_speed, pose

N_VEHICLES = 32
K_IN, K_OUT, K_RAMP = 8, 4, 4
EGO_LENGTH, EGO_WIDTH = 5.176, 2.297  # Chrysler Pacifica, nuPlan's ego
EGO_MAX_START = 150.0  # farthest start of the ego from its lane's reference point (m)
EGO_REAR_AXLE_TO_CENTER = EGO_LENGTH / 2 - 1.127
CAR, PEDESTRIAN, BICYCLE = 0, 1, 2


@dataclasses.dataclass
class Vehicles:
    """Initial state and driver parameters [N, A]; slot 0 is the ego."""

    ok: np.ndarray
    route: np.ndarray
    s: np.ndarray
    v: np.ndarray
    length: np.ndarray
    width: np.ndarray
    kind: np.ndarray  # CAR or BICYCLE
    v0: np.ndarray  # desired speed as a factor of the allowed speed
    T: np.ndarray
    a_max: np.ndarray
    b: np.ndarray
    s0: np.ndarray
    polite: np.ndarray
    lc_thr: np.ndarray
    gap_acc: np.ndarray
    b_max: np.ndarray
    lc_ok: np.ndarray
    stop_time: np.ndarray  # scripted stop (s), inf = never
    d_bias: np.ndarray  # lateral offset within the lane (cyclists keep right)


def place_vehicles(plan: Plan, roads: Roads, d: Draws) -> Vehicles:
    """Every lane's candidate stream (inbound, outbound, the ramp), then the N_VEHICLES nearest the
    ego; draws in a fixed order (the stream uniforms, then the queue lengths)."""
    u = d.uniform(shape=(4 * 3 * K_IN + 4 * 3 * K_OUT + K_RAMP, 16))
    u_q = d.uniform(shape=(12,))
    dens = city_table("density")[plan.city] * plan.density  # veh/km/lane
    spacing = 1000.0 / np.maximum(dens, 1.0)
    u_in, u_out, u_ramp = np.split(u, [4 * 3 * K_IN, 4 * 3 * (K_IN + K_OUT)], axis=1)
    cands = _inbound(plan, roads, u_in, u_q, spacing)
    cands += _outbound(plan, roads, u_out, spacing)
    cands.append(_ramp(plan, roads, u_ramp, spacing))
    c = {key: np.concatenate([x[key] for x in cands], 1) for key in cands[0]}
    return _as_vehicles(plan, _nearest_to_ego(roads, c))


def _drivers(plan: Plan, uu: np.ndarray, lanes_right: np.ndarray) -> dict[str, np.ndarray]:
    """Kind, size and driver parameters of a lane's candidates [N, K] from their uniforms
    uu [N, K, 16]; cyclists only in the rightmost lane."""
    ci = plan.city
    cyc_share = city_table("cyclist_share")[ci]
    long_share = city_table("long_vehicle_share")[ci]
    kind = np.where(lanes_right & (uu[..., 0] < 2 * cyc_share[:, None]), BICYCLE, CAR)
    long = (kind == CAR) & (uu[..., 0] > 1 - long_share[:, None])
    length = np.where(
        kind == BICYCLE,
        1.6 + 0.3 * uu[..., 1],
        np.where(long, 8.0 + 4.5 * uu[..., 1], 4.2 + 0.8 * uu[..., 1]),
    )
    width = np.where(
        kind == BICYCLE,
        0.5 + 0.2 * uu[..., 2],
        np.where(long, 2.4 + 0.2 * uu[..., 2], 1.75 + 0.25 * uu[..., 2]),
    )
    T = city_table("time_gap")[ci][:, None] * (0.8 + 0.45 * uu[..., 3])
    a = city_table("max_accel")[ci][:, None] * (0.8 + 0.4 * uu[..., 4]) * np.where(long, 0.6, 1.0)
    b = city_table("comfort_decel")[ci][:, None] * (0.85 + 0.3 * uu[..., 5])
    s0 = 1.5 + 1.0 * uu[..., 6]
    v0 = np.where(kind == BICYCLE, 0.3 + 0.15 * uu[..., 7], 0.88 + 0.22 * uu[..., 7]) * np.where(
        long, 0.9, 1.0
    )
    return dict(kind=kind, long=long, length=length, width=width, T=T, a_max=a, b=b, s0=s0, v0=v0,
                polite=city_table("politeness")[ci][:, None] * (0.5 + uu[..., 8]),
                lc_thr=0.1 + 0.3 * uu[..., 9],
                gap_acc=city_table("gap_acceptance")[ci][:, None] * (0.8 + 0.5 * uu[..., 10]))  # fmt: skip


def _inbound(plan: Plan, roads: Roads, u: np.ndarray, u_q: np.ndarray, spacing) -> list[dict]:
    """The streams towards the junction, K_IN per (arm, lane): queued at a red light (the ego's
    lane as its recipe says), movements drawn among those the lane allows."""
    n = len(plan)
    gi = np.arange(n)[:, None]
    st0, _ = signals.states(plan.green, plan.offset, 0.0)
    out = []
    for a in range(4):
        for i in range(3):
            k = (a * 3 + i) * K_IN
            uu = u[:, k : k + K_IN]
            lanes_a = plan.lanes[:, a]
            exists = (i < lanes_a) & plan.arms_on[:, a]
            dr = _drivers(plan, uu, (i == lanes_a - 1)[:, None])
            # movement among those the lane allows (straight more likely)
            routes = roads.in_route[:, a, i, :]  # [N, 3] per movement
            w = np.where(routes >= 0, np.array([0.6, 0.2, 0.2]), 0.0)
            cw = np.cumsum(w, 1)
            pick = np.minimum((uu[..., 11:12] * cw[:, None, -1:] >= cw[:, None, :]).sum(-1), 2)
            route = np.take_along_axis(routes, pick, 1)
            grp = roads.group[gi, np.maximum(route[:, :1], 0)][:, 0]
            light = np.take_along_axis(st0, np.maximum(grp, 0)[:, None], 1)[:, 0]
            red = (grp >= 0) & (light != signals.GREEN)
            nq = np.where(red, np.floor(u_q[:, a * 3 + i] * (1 + 5 * plan.density)).astype(int), 0)
            ego_stream = (a == 0) & (plan.ego_lane == i) & ~plan.ego_on_ramp
            nq = np.where(ego_stream & (plan.queue_n >= 0), plan.queue_n, nq)
            s_stop = np.take_along_axis(roads.s_stop, np.maximum(route, 0), 1)
            out.append(_stream(plan, roads, dr, route, exists, s_stop, nq, spacing, uu, where="in",
                               ego_stream=ego_stream, stop_at_ref=red))  # fmt: skip
    return out


def _outbound(plan: Plan, roads: Roads, u: np.ndarray, spacing) -> list[dict]:
    """The streams leaving the junction, K_OUT per (arm, lane)."""
    n = len(plan)
    none = np.zeros(n, bool)
    out = []
    for b_ in range(4):
        for j in range(3):
            k = (b_ * 3 + j) * K_OUT
            uu = u[:, k : k + K_OUT]
            route = np.broadcast_to(roads.out_route[:, b_, j][:, None], (n, K_OUT))
            exists = (route[:, 0] >= 0) & (j < plan.lanes[:, b_])
            dr = _drivers(plan, uu, (j == plan.lanes[:, b_] - 1)[:, None])
            s_exit = np.take_along_axis(roads.s_exit, np.maximum(route, 0), 1)
            out.append(_stream(plan, roads, dr, route, exists, s_exit, np.zeros(n, int), spacing,
                               uu, where="out", ego_stream=none, stop_at_ref=none))  # fmt: skip
    return out


def _ramp(plan: Plan, roads: Roads, uu: np.ndarray, spacing) -> dict:
    """The on-ramp's stream (K_RAMP), which must be able to stop at the acceleration lane's end."""
    n = len(plan)
    route = np.broadcast_to(roads.ramp_route[:, None], (n, K_RAMP))
    dr = _drivers(plan, uu, np.zeros((n, 1), bool))
    s_dead = np.take_along_axis(roads.s_dead, np.maximum(route, 0), 1)
    ramp_ok = route[:, 0] >= 0
    return _stream(plan, roads, dr, route, ramp_ok, s_dead, np.zeros(n, int), spacing, uu,
                   where="ramp", ego_stream=plan.ego_on_ramp & ramp_ok, stop_at_ref=ramp_ok)  # fmt: skip


def _nearest_to_ego(roads: Roads, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The N_VEHICLES candidates nearest to where the ego will be around the present, the ego
    first; `ok` marks the real ones."""
    n = len(c["ok"])
    ego_col = np.argmax(c["is_ego"], 1)
    e_route = c["route"][np.arange(n), ego_col]
    e_s = c["s"][np.arange(n), ego_col] + 3.0 * c["v"][np.arange(n), ego_col]
    e_xy = _route_point(roads, e_route[:, None], e_s[:, None])[:, 0]
    xy = _route_point(roads, np.maximum(c["route"], 0), c["s"])
    dist = np.linalg.norm(xy - e_xy[:, None], axis=-1)
    dist = np.where(c["ok"], dist, np.inf)
    dist = np.where(c["is_ego"], -1.0, dist)
    order = np.argsort(dist, axis=1, kind="stable")[:, :N_VEHICLES]
    take = {key: np.take_along_axis(val, order, 1) for key, val in c.items()}
    take["ok"] = take["ok"] & np.isfinite(np.take_along_axis(dist, order, 1))
    return take


def _as_vehicles(plan: Plan, take: dict[str, np.ndarray]) -> Vehicles:
    ok, is_ego, f32 = take["ok"], take["is_ego"], np.float32
    return Vehicles(
        ok=ok, route=np.where(ok, take["route"], 0), s=take["s"].astype(f32), v=take["v"].astype(f32),
        length=take["length"].astype(f32), width=take["width"].astype(f32), kind=take["kind"],
        v0=take["v0"].astype(f32), T=take["T"].astype(f32), a_max=take["a_max"].astype(f32),
        b=take["b"].astype(f32), s0=take["s0"].astype(f32),
        # The expert ego changes lanes when it has to, rarely on a whim.
        polite=np.where(is_ego, 0.5, take["polite"]).astype(f32),
        lc_thr=np.where(is_ego, 1.0, take["lc_thr"]).astype(f32), gap_acc=take["gap_acc"].astype(f32),
        b_max=np.where(is_ego, 7.0, 8.0).astype(f32),
        lc_ok=(take["kind"] == CAR) & ~take["long"] | is_ego,
        stop_time=take["stop_time"].astype(f32),
        d_bias=np.where(take["kind"] == BICYCLE, 0.6 - plan.lane_w[:, None] / 2, 0.0).astype(f32),
    )  # fmt: skip


def _stream(
    plan, roads, dr, route, exists, s_ref, nq, spacing, uu, *, where, ego_stream, stop_at_ref
):
    """Positions and speeds of one lane's K candidates [N, K] (see module docstring).

    Args:
      dr: their drawn sizes and driver parameters; route, exists: their routes and whether the
        lane exists; s_ref: the reference arc length (stop line, junction exit, end of the
        acceleration lane); nq: how many stand queued at it; spacing: mean metres per vehicle;
      where: "in" (towards the junction), "out" (away from it) or "ramp"; ego_stream: the ego is
        in this lane (at `plan.ego_slot`); stop_at_ref: the first must be able to stop at s_ref.
    """
    n, k = route.shape
    ar = np.arange(k)
    is_ego = np.zeros((n, k), bool)
    is_lead = np.zeros((n, k), bool)
    if where in ("in", "ramp"):
        ke = np.clip(plan.ego_slot, 0, k - 1)
        is_ego = ego_stream[:, None] & (ar == ke[:, None])
        is_lead = ego_stream[:, None] & (ar == ke[:, None] - 1)
    c = _cast(plan, dr, uu, is_ego, is_lead)
    c["route"] = np.where(is_ego, roads.ego_route[:, None], route)
    c["is_ego"] = is_ego
    # Speeds wanted at the reference point (a fraction of the allowed speed there).
    s_guess = s_ref + (1 if where == "out" else -1) * 20.0
    v_des = c["v0"] * _allowed(roads, np.maximum(c["route"], 0), s_guess)
    queued = (ar < nq[:, None]) & ~is_ego
    gap, c["s"] = _positions(plan, c, s_ref, spacing, uu, v_des, queued, where, ego_stream)
    c["v"] = _speeds(plan, c, gap, uu, v_des, queued, where, stop_at_ref)
    route_len = np.take_along_axis(roads.route_len, np.maximum(c["route"], 0), 1)
    ok = exists[:, None] & (c["route"] >= 0) & (c["s"] > 5.0) & (c["s"] < route_len - 10.0)
    c["ok"] = ok | is_ego
    return c


def _cast(plan: Plan, dr: dict, uu: np.ndarray, is_ego, is_lead) -> dict[str, np.ndarray]:
    """The drawn drivers with the ego (its size, a calm driver) and the recipe's lead (a long
    vehicle, a car, a slow or a stopping one) put in their places."""
    lead_kind = plan.lead_kind[:, None]
    kind = np.where(is_ego | is_lead & (lead_kind > 0), CAR, dr["kind"])
    long = np.where(is_lead & (lead_kind > 0), lead_kind == 1, dr["long"] & ~is_ego)
    length = np.where(is_ego, EGO_LENGTH, dr["length"])
    width = np.where(is_ego, EGO_WIDTH, dr["width"])
    length = np.where(
        is_lead & (lead_kind == 1),
        10.0 + 2.5 * uu[..., 12],
        np.where(is_lead & (lead_kind > 1), 4.2 + 0.8 * uu[..., 1], length),
    )
    width = np.where(
        is_lead & (lead_kind == 1),
        2.5,
        np.where(is_lead & (lead_kind > 1), 1.8 + 0.2 * uu[..., 2], width),
    )
    v0 = np.where(is_ego, plan.ego_v0[:, None], dr["v0"])
    v0 = np.where(is_lead & (lead_kind >= 2), plan.lead_v0[:, None], v0)
    v0 = np.where(is_lead & (lead_kind == 1), np.minimum(v0, 0.85), v0)
    return dict(kind=kind, long=long, length=length, width=width, v0=v0,
                T=np.where(is_ego, 1.4, dr["T"]), a_max=np.where(is_ego, 1.5, dr["a_max"]),
                b=np.where(is_ego, 2.0, dr["b"]), s0=np.where(is_ego, 2.2, dr["s0"]),
                polite=dr["polite"], lc_thr=dr["lc_thr"], gap_acc=dr["gap_acc"],
                stop_time=np.where(is_lead, plan.lead_stop_time[:, None], np.inf))  # fmt: skip


def _positions(plan: Plan, c: dict, s_ref, spacing, uu, v_des, queued, where, ego_stream):
    """Each candidate's gap to the one ahead (or to the reference point) [N, K] and its arc
    length: car-following headways, standing gaps in a queue, the recipe's gap for the ego."""
    n, k = v_des.shape
    ar = np.arange(k)
    length, s0, T = c["length"], c["s0"], c["T"]
    slack = np.maximum(spacing[:, None] - length - s0 - v_des * T, 2.0)
    free_gap = s0 + v_des * T + slack * -np.log(np.maximum(uu[..., 13], 1e-6))
    if where == "out":
        first = 2.0 + 25.0 * uu[..., 14]
    elif where == "ramp":
        first = plan.acc_len[:, None] * (0.4 + 1.2 * uu[..., 14])
    else:
        first = free_gap
    gap = np.where(ar == 0, first, free_gap)
    standing = np.where(ar == 0, 0.8 + 1.5 * uu[..., 14], s0 + 0.4 * uu[..., 14])
    gap = np.where(queued, standing, gap)
    gap = np.where(c["is_ego"], plan.ego_gap[:, None], gap)
    prev_len = np.concatenate([np.zeros((n, 1)), length[:, :-1]], 1)
    x_near = np.cumsum(gap + prev_len, axis=1)  # distance of the near end from the reference
    # Keep the ego within the mapped part of the road: shorten its own gap if it started too far out.
    x_ego = np.where(c["is_ego"], x_near, 0.0).max(1)
    excess = np.clip(x_ego - EGO_MAX_START, 0.0, np.maximum(plan.ego_gap - 1.5, 0.0))
    behind_ego = ar >= np.clip(plan.ego_slot, 0, k - 1)[:, None]
    x_near = x_near - np.where(behind_ego, excess[:, None], 0.0) * ego_stream[:, None]
    s = s_ref + x_near + length / 2 if where == "out" else s_ref - x_near - length / 2
    return gap, s


def _speeds(plan: Plan, c: dict, gap, uu, v_des, queued, where, stop_at_ref) -> np.ndarray:
    """Speeds [N, K]: the wanted speed, capped so that each can still stop behind the one ahead
    (or at the reference point: a red light, the end of the acceleration lane)."""
    n, k = v_des.shape
    s0, is_ego = c["s0"], c["is_ego"]
    v = np.zeros((n, k))
    for kk in range(k):
        room = np.maximum(gap[:, kk] - s0[:, kk], 0.0)
        if where == "out":
            cap = np.full(n, np.inf)
            cap_ego = cap
        elif kk == 0:
            cap = np.where(stop_at_ref, np.sqrt(4.0 * room), np.inf)
            cap_ego = np.where(stop_at_ref, np.sqrt(6.0 * room), np.inf)
        else:
            cap = np.sqrt(v[:, kk - 1] ** 2 + 4.0 * room)
            cap_ego = np.sqrt(v[:, kk - 1] ** 2 + 6.0 * room)
        vk = np.minimum(v_des[:, kk] * (0.9 + 0.1 * uu[:, kk, 15]), cap)
        vk = np.where(queued[:, kk], 0.0, vk)
        vk = np.where(is_ego[:, kk], np.minimum(plan.ego_speed, cap_ego), vk)
        v[:, kk] = vk
    return v


def _route_point(roads: Roads, route: np.ndarray, s: np.ndarray) -> np.ndarray:
    s = np.nan_to_num(s, posinf=0.0, neginf=0.0)
    return pose(roads, np.arange(route.shape[0])[:, None], route, s)[0]


def _allowed(roads: Roads, route: np.ndarray, s: np.ndarray) -> np.ndarray:
    s = np.nan_to_num(s, posinf=0.0, neginf=0.0)
    return allowed_speed(roads, np.arange(route.shape[0])[:, None], route, s)
