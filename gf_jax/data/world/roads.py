"""Road layouts as lane graphs: lane pieces for the map, routes for the traffic, crosswalks.

All four layouts are one junction model in a flat frame (bending comes later, in `features`): up to
four arms leaving the origin, each with `lanes` lanes per direction, a stop line at distance `r`,
a crosswalk band just inside it, and Bezier lane connectors through the junction for every allowed
movement. A straight road is a junction of two opposite arms without signals (its "connectors" are
short straight pieces and its crosswalk is mid-block); a merge is a straight road plus an on-ramp
with an acceleration lane. Scenarios with the same topology (`Plan.template_keys`) are built together.

A route is an inbound lane, a connector and an outbound lane, with arc length s = 0 at the far end
of the inbound arm: two straight lines and a table of the connector every CONN_DS metres (`pose`).
A vehicle lives on a route as an arc length s (its box centre).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import conflicts, road_map
from gf_jax.data.world.geometry import (
    bezier,
    cumulative_length,
    left_normal,
    resample_at,
    turn_controls,
    unit,
    wrap_angle,
)
from gf_jax.data.world.plan import CROSS, LEFT, RIGHT, STRAIGHT_ON, TEE, Plan
from gf_jax.data.world.templates import (
    ARM_LENGTH,
    MAX_ROUTES,
    Template,
    make_template,
)

CONN_DS = 1.0  # connector table spacing (m)
CONN_K = 80  # table length: connectors up to 80 m
CONN_SAMPLES = 12
LOOKAHEAD_DECEL = 1.2  # m/s^2 used to slow down ahead of curves
_TABLE_T = np.linspace(0.0, 1.0, 48)  # Bezier parameters of the arc-length tables


@dataclasses.dataclass
class Roads:
    """The lane graph of a chunk of scenarios, padded to common sizes (see module docstring)."""

    # Routes [N, R]
    p_start: np.ndarray  # [N, R, 2] far end of the approach (s = 0)
    d_in: np.ndarray  # [N, R, 2] approach direction
    h_in: np.ndarray
    l1: np.ndarray  # where the connector starts (the stop line at a junction)
    p3: np.ndarray  # [N, R, 2] connector end
    d_out: np.ndarray  # [N, R, 2] exit direction
    h_out: np.ndarray
    conn_xy: np.ndarray  # [N, R, CK, 2] float32 connector every CONN_DS metres from l1
    conn_h: np.ndarray  # [N, R, CK] float32
    lim_in: np.ndarray  # speed on the approach (limit, road bending)
    lim_out: np.ndarray
    conn_e: np.ndarray  # [N, R, CK] float32 look-ahead "energy" v^2 + 2 b s, suffix minimum
    s_exit_geo: np.ndarray  # end of the connector (also for the ramp's curve)
    route_len: np.ndarray
    move: np.ndarray
    arm_out: np.ndarray
    s_stop: np.ndarray  # stop line (inf without one)
    s_exit: np.ndarray  # end of the connector at a junction (inf for the ramp)
    group: np.ndarray  # signal group (0: arms 0/2, 1: arms 1/3), -1 none
    s_dead: np.ndarray  # end of an acceleration lane, inf elsewhere
    lc_tgt: np.ndarray  # [N, R, 2] route after a change to the left / right, -1 none
    lc_off: np.ndarray  # [N, R, 2] s offset onto that route
    lc_same: np.ndarray  # [N, R, 2] the target keeps the movement
    lc_sep: np.ndarray  # [N, R, 2] lateral distance between the lanes
    lc_lo: np.ndarray
    lc_hi: np.ndarray
    cw_s: np.ndarray  # [N, R, C] arc length where the route crosses each crosswalk, inf if not
    cw_u: np.ndarray  # [N, R, C] where along the crosswalk (from its side A curb)
    pair: np.ndarray  # [N, R, R, F] route-pair relations (see conflicts)
    in_route: np.ndarray  # [N, 4, 3, 3] route of (arm, inbound lane, movement), -1 none
    out_route: np.ndarray  # [N, 4, 3] a route ending in (arm, outbound lane), -1 none
    ramp_route: np.ndarray  # [N] (-1 without a ramp)
    # Crosswalks [N, C]
    cw_ok: np.ndarray
    cw_ring: np.ndarray  # [N, C, 5, 2] closed ring
    cw_tc: np.ndarray  # centre line distance from the junction along the arm
    cw_half_road: np.ndarray  # half-width of the road it crosses
    cw_phi: np.ndarray
    cw_band: np.ndarray  # band width
    cw_group: np.ndarray  # signal group of the crossed arm (-1 unsignalised)
    # Map pieces [N, L]
    map_xy: np.ndarray  # [N, L, RAW_POINTS, 2] float32, flat frame
    map_ok: np.ndarray
    map_rb: np.ndarray  # roadblock id
    map_group: np.ndarray  # signal group of a connector, -1 otherwise
    ego_rbs: np.ndarray  # [N, B] the ego route's roadblocks in driving order, -1 padded
    ego_route: np.ndarray  # [N] route slot of the ego's initial route


def _arm_frames(plan: Plan):
    u = unit(plan.phi)  # [G, 4, 2]
    n = left_normal(plan.phi)
    hw = plan.median[:, None] + plan.lanes * plan.lane_w[:, None]
    return u, n, hw


def _stop_distance(plan: Plan, hw: np.ndarray) -> np.ndarray:
    """Distance from the junction centre to each arm's stop line [G, 4]."""
    g = len(plan)
    need = np.zeros((g, 4))
    for k in range(4):
        for j in range(4):
            if j == k:
                continue
            d = plan.phi[:, j] - plan.phi[:, k]
            s, c = np.abs(np.sin(d)), np.abs(np.cos(d))
            crossing = plan.arms_on[:, j] & (s > 0.5)
            req = (hw[:, j] + hw[:, k] * c) / np.maximum(s, 0.5)
            need[:, k] = np.maximum(need[:, k], np.where(crossing, req, 0.0))
    junction = need > 0
    r = np.where(junction, need + plan.cw_w[:, None] + 3.0, plan.cw_w[:, None] / 2 + 1.5)
    return r


def build(plan: Plan) -> Roads:
    """Lane graphs of a chunk: groups of equal topology are built together, then padded."""
    keys = plan.template_keys()
    parts, rows = [], []
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        sub = plan.subset(sel)
        t = make_template(int(sub.kind[0]), sub.arms_on[0], sub.lanes[0])
        parts.append(_build_group(sub, t))
        rows.append(sel)
    return _assemble(parts, rows, len(plan))


def _build_group(plan: Plan, t: Template) -> dict[str, np.ndarray]:
    g = len(plan)
    u, n, hw = _arm_frames(plan)
    r = _stop_distance(plan, hw)
    parts, table, att, ctrl = _junction_routes(plan, t, u, n, r)
    nr = len(t.routes)
    idx = {(ra, ri, rm): k for k, (ra, ri, rm, _, _) in enumerate(t.routes)}
    lc_tgt, lc_same = _lane_change_targets(t, idx)
    lc_off = np.zeros((g, nr + int(t.ramp), 2))
    lc_sep = np.broadcast_to(plan.lane_w[:, None, None], (g, nr + int(t.ramp), 2)).copy()
    extra = {}
    if t.ramp:
        ramp_parts, extra = _ramp_route(plan, t)
        parts = [np.concatenate([x, y[:, None]], 1) for x, y in zip(parts, ramp_parts, strict=True)]
        table = np.concatenate([table, extra["ramp_table"][:, None]], 1)
        lc_tgt[nr, 0] = idx[(0, t.lanes[0] - 1, STRAIGHT_ON)]  # onto the main road's outer lane
        lc_same[nr, 0] = True
        lc_off[:, nr, 0] = extra["ramp_offset"]
        att = _with_ramp(plan, att, extra)
    p_start, l1, p0_, p1_, p2_, p3_, d_out = parts
    R = l1.shape[1]
    d_in = (p0_ - p_start) / l1[..., None]
    conn_xy, conn_h, conn_len = _connector_table(table, p0_, p1_, p2_, p3_)
    s_exit_geo = l1 + conn_len
    h_in = np.arctan2(d_in[..., 1], d_in[..., 0])
    h_out = np.arctan2(d_out[..., 1], d_out[..., 0])
    speed_in, speed_out = att.pop("speed_in"), att.pop("speed_out")
    lim_in, lim_out, conn_e = _speeds(
        plan, speed_in, speed_out, h_in, h_out, conn_h, l1, s_exit_geo
    )
    geo = dict(p_start=p_start, d_in=d_in, h_in=h_in, l1=l1, p3=p3_, d_out=d_out, h_out=h_out,
               conn_xy=conn_xy, conn_h=conn_h, lim_in=lim_in, lim_out=lim_out, conn_e=conn_e,
               s_exit_geo=s_exit_geo)  # fmt: skip

    # Connector samples: conflicts between routes and crosswalk crossings.
    s_stop, s_exit = att["s_stop"], att["s_exit"]
    ramp_lo = extra["ramp_conn_lo"][:, None] if t.ramp else 0.0
    lo = np.where(np.isfinite(s_stop), s_stop - 4.0, ramp_lo)
    hi = np.where(np.isfinite(s_exit), s_exit + 4.0, lo + 1.0)
    cs_s = lo[..., None] + (hi - lo)[..., None] * np.linspace(0, 1, CONN_SAMPLES)
    gi3 = np.arange(g)[:, None, None]
    ri3 = np.arange(R)[None, :, None]
    cs_xy, _ = pose(geo, gi3, ri3, cs_s)
    pair = conflicts.route_pairs(
        t, plan, cs_s, cs_xy, s_stop, s_exit, lambda rr, ss: pose(geo, gi3, rr, ss)[0]
    )
    cw = road_map.crosswalks(plan, t, u, n, hw, r)
    cw_s, cw_u = _crosswalk_crossings(cs_s, cs_xy, cw, u, n)
    in_route, out_route = _stream_routes(t)
    maps = road_map.map_pieces(
        plan, t, u, n, r, conn_route_ctrl=ctrl, group=att["group"], extra=extra
    )
    ego_route = road_map.ego_route(plan, t, idx)
    ego_rbs = road_map.ego_roadblocks(plan, t, ego_route, r)

    return dict(
        geo, conn_xy=conn_xy.astype(np.float32), conn_h=conn_h.astype(np.float32),
        conn_e=conn_e.astype(np.float32), route_len=att["route_len"], move=att["move"],
        arm_out=att["arm_out"], s_stop=s_stop, s_exit=s_exit, group=att["group"],
        s_dead=att["s_dead"], lc_tgt=np.broadcast_to(lc_tgt, (g, R, 2)), lc_off=lc_off,
        lc_same=np.broadcast_to(lc_same, (g, R, 2)), lc_sep=lc_sep,
        lc_lo=np.broadcast_to(att["lc_lo"], (g, R)), lc_hi=np.broadcast_to(att["lc_hi"], (g, R)),
        cw_s=cw_s, cw_u=cw_u, pair=pair, in_route=np.broadcast_to(in_route, (g, 4, 3, 3)),
        out_route=np.broadcast_to(out_route, (g, 4, 3)), ramp_route=np.full(g, nr if t.ramp else -1),
        cw_ok=cw["ok"], cw_ring=cw["ring"], cw_tc=cw["tc"], cw_half_road=cw["half_road"],
        cw_phi=plan.phi.copy(), cw_band=np.broadcast_to(plan.cw_w[:, None], (g, 4)),
        cw_group=np.where(plan.signalised[:, None], np.arange(4) % 2, -1), map_xy=maps["xy"],
        map_ok=maps["ok"], map_rb=maps["rb"], map_group=maps["group"], ego_rbs=ego_rbs,
        ego_route=ego_route,
    )  # fmt: skip


def _junction_routes(plan: Plan, t: Template, u, n, r):
    """Every junction route of the template (inbound lane, Bezier connector, outbound lane): its
    geometry parts (far end, approach length, connector controls p0-p3, exit direction), the
    connector's arc-length table, its attributes [G, R] (stop line, exit, length, signal group,
    lane-change range, speed limits, movement) and the connectors' controls for the map."""
    g = len(plan)
    w, med = plan.lane_w, plan.median
    rt = np.array(t.routes, dtype=int).reshape(-1, 5)
    a, i, m, b, j = rt.T
    nr = len(rt)
    gi = np.arange(g)[:, None]
    o_in = med[:, None] + (i + 0.5) * w[:, None]  # [G, R]
    o_out = -(med[:, None] + (j + 0.5) * w[:, None])
    ua, na, ub, nb = u[:, a], n[:, a], u[:, b], n[:, b]  # [G, R, 2]
    p_far_in = ARM_LENGTH * ua + o_in[..., None] * na
    p0 = r[gi, a][..., None] * ua + o_in[..., None] * na
    p3 = r[gi, b][..., None] * ub + o_out[..., None] * nb
    p1, p2 = turn_controls(p0, -ua, p3, ub)
    table = bezier(p0, p1, p2, p3, _TABLE_T)  # [G, R, 48, 2]
    conn_len = cumulative_length(table)[..., -1]
    parts = [p_far_in, ARM_LENGTH - r[gi, a], p0, p1, p2, p3, ub]
    s_stop = ARM_LENGTH - r[gi, a]
    s_exit = s_stop + conn_len
    route_len = s_exit + ARM_LENGTH - r[gi, b]
    junction = t.kind in (CROSS, TEE)
    att = dict(
        s_stop=s_stop, s_exit=s_exit, route_len=route_len,
        group=np.where(plan.signalised[:, None], np.broadcast_to(a % 2, (g, nr)), -1),
        s_dead=np.full((g, nr), np.inf), lc_lo=np.zeros((g, nr)),
        lc_hi=(s_stop - 30.0) if junction else (route_len - 30.0),
        speed_in=plan.speed_limit[gi, a], speed_out=plan.speed_limit[gi, b],
        move=np.broadcast_to(m, (g, nr)), arm_out=np.broadcast_to(b, (g, nr)),
    )  # fmt: skip
    return parts, table, att, (p0, p1, p2, p3)


def _with_ramp(plan: Plan, att: dict[str, np.ndarray], extra: dict) -> dict[str, np.ndarray]:
    """The route attributes with the on-ramp's column appended (no stop line, no junction exit,
    a dead end where the acceleration lane ends, eastbound at the main road's limit)."""
    g = len(plan)
    ramp = dict(
        s_stop=np.full(g, np.inf), s_exit=np.full(g, np.inf), route_len=extra["ramp_len"],
        group=-np.ones(g, int), s_dead=extra["ramp_dead"], lc_lo=extra["ramp_lc_lo"],
        lc_hi=extra["ramp_dead"] - 8.0, speed_in=plan.speed_limit[:, 0],
        speed_out=plan.speed_limit[:, 0], move=np.full(g, STRAIGHT_ON), arm_out=np.full(g, 2),
    )  # fmt: skip
    return {key: np.concatenate([att[key], ramp[key][:, None]], 1) for key in att}


def _lane_change_targets(t: Template, idx: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each route's target after a change to the left / right [R, 2] (-1 none) and whether the
    target keeps the movement: routes of neighbouring inbound lanes of the same arm (same s origin),
    preferring the same movement, then straight on, left, right. The ramp's row is filled later."""
    nr = len(t.routes)
    lc_tgt = -np.ones((nr + int(t.ramp), 2), int)
    lc_same = np.zeros((nr + int(t.ramp), 2), bool)
    for k, (ra, ri, rm, _, _) in enumerate(t.routes):
        for side, di in ((0, -1), (1, +1)):
            cand = [idx.get((ra, ri + di, mm)) for mm in (rm, STRAIGHT_ON, LEFT, RIGHT)]
            cand = [c for c in cand if c is not None]
            if cand:
                lc_tgt[k, side] = cand[0]
                lc_same[k, side] = t.routes[cand[0]][2] == rm
    return lc_tgt, lc_same


def _speeds(plan: Plan, speed_in, speed_out, h_in, h_out, conn_h, l1, s_exit_geo):
    """Speed on the approach and the exit [G, R], and the connector's look-ahead table conn_e
    [G, R, CONN_K]."""
    # Speeds: limits, curves (flat turns plus the road bending) and a look-ahead so that vehicles
    # slow down before a curve, not in it (suffix minimum of v^2 + 2 b s).
    kap = np.abs(plan.kappa)[:, None]
    lat = plan.lat_acc[:, None]
    bend_cap = lambda h: np.sqrt(lat / np.maximum(kap * np.cos(h) ** 2, 1e-6))  # noqa: E731
    lim_in = np.minimum(speed_in, bend_cap(h_in))
    lim_out = np.minimum(speed_out, bend_cap(h_out))
    dh = np.abs(wrap_angle(np.diff(conn_h, axis=2))) / CONN_DS
    curv = np.concatenate([dh, dh[..., -1:]], axis=2)
    curv = _smooth(curv, 4) + kap[..., None] * np.cos(conn_h) ** 2
    cap = np.minimum(
        np.minimum(lim_in, lim_out)[..., None], np.sqrt(lat[..., None] / np.maximum(curv, 1e-6))
    )
    s_conn = l1[..., None] + CONN_DS * np.arange(CONN_K)
    b2 = 2 * LOOKAHEAD_DECEL
    e = np.where(s_conn <= s_exit_geo[..., None], cap**2 + b2 * s_conn, np.inf)
    e = np.minimum(e, (lim_out**2 + b2 * s_exit_geo)[..., None])
    conn_e = np.minimum.accumulate(e[..., ::-1], axis=-1)[..., ::-1]
    return lim_in, lim_out, conn_e


def _crosswalk_crossings(cs_s, cs_xy, cw: dict, u, n):
    """Where each route first crosses each crosswalk: arc length [G, R, C] (inf if it does not)
    and the position along the crosswalk from its side-A curb."""
    tau = np.einsum("grkx,gcx->grck", cs_xy, u) - cw["tc"][:, None, :, None]
    lam = np.einsum("grkx,gcx->grck", cs_xy, n)
    sign_change = (tau[..., :-1] <= 0) != (tau[..., 1:] <= 0)
    frac = tau[..., :-1] / np.where(
        tau[..., :-1] == tau[..., 1:], 1.0, tau[..., :-1] - tau[..., 1:]
    )
    lam_x = lam[..., :-1] + frac * (lam[..., 1:] - lam[..., :-1])
    s_x = cs_s[:, :, None, :-1] + frac * np.diff(cs_s, axis=-1)[:, :, None]
    half = cw["half_road"][:, None, :, None]
    hit = sign_change & (np.abs(lam_x) <= half + 0.5) & cw["ok"][:, None, :, None]
    first = np.argmax(hit, axis=-1)
    any_hit = hit.any(-1)
    cw_s = np.where(any_hit, np.take_along_axis(s_x, first[..., None], -1)[..., 0], np.inf)
    cw_u = np.where(
        any_hit, np.take_along_axis(lam_x, first[..., None], -1)[..., 0] + half[..., 0] + 0.8, 0.0
    )
    return cw_s, cw_u


def _stream_routes(t: Template) -> tuple[np.ndarray, np.ndarray]:
    """The route of every (arm, inbound lane, movement) [4, 3, 3] and a route ending in every
    (arm, outbound lane) [4, 3], preferring straight on (-1 none): where `population` streams
    vehicles in and out."""
    in_route = -np.ones((4, 3, 3), int)
    out_route = -np.ones((4, 3), int)
    for k, (ra, ri, rm, rb, rj) in enumerate(t.routes):
        in_route[ra, ri, rm] = k
        if out_route[rb, rj] < 0 or rm == STRAIGHT_ON:
            out_route[rb, rj] = k
    return in_route, out_route


def _smooth(x: np.ndarray, half: int) -> np.ndarray:
    """Moving average along the last axis (edges use the available neighbours)."""
    c = np.cumsum(np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half + 1, half)], mode="edge"), axis=-1)
    return (c[..., 2 * half + 1 :] - c[..., : -2 * half - 1]) / (2 * half + 1)


def _ramp_route(plan: Plan, t: Template):
    """On-ramp from the south-west into an acceleration lane right of the eastbound lanes."""
    g = len(plan)
    n0 = t.lanes[0]
    y_acc = -(plan.median + (n0 + 0.5) * plan.lane_w)
    x0, x1 = plan.acc_x0, plan.acc_x0 + plan.acc_len
    beta = plan.ramp_beta
    d = np.stack([np.cos(beta), np.sin(beta)], -1)
    p3 = np.stack([x0, y_acc], -1)
    p0 = p3 - 30.0 * np.stack([np.ones(g), np.tan(beta)], -1)
    p_far = p0 - ARM_LENGTH * d
    east = np.tile([1.0, 0.0], (g, 1))
    p1, p2 = turn_controls(p0, d, p3, east)
    ramp_table = bezier(p0, p1, p2, p3, _TABLE_T)
    lb = cumulative_length(ramp_table)[:, -1]
    s_acc = ARM_LENGTH + lb  # ramp route s at x0
    # The main eastbound route has s = x + ARM_LENGTH along the whole straight road.
    extra = {
        "ramp_len": s_acc + (x1 - x0) + ARM_LENGTH,
        "ramp_dead": s_acc + (x1 - x0),
        "ramp_lc_lo": s_acc + 3.0,
        "ramp_offset": (x0 + ARM_LENGTH) - s_acc,
        "ramp_conn_lo": s_acc - 30.0,
        "ramp_ctrl": (p_far, p0, p1, p2, p3, np.stack([x1, y_acc], -1)),
        "ramp_table": ramp_table,
    }
    return [p_far, np.full(g, ARM_LENGTH), p0, p1, p2, p3, east], extra


def _connector_table(table, p0, p1, p2, p3):
    """Connector points and headings every CONN_DS metres of arc length [G, R, CK], and its length,
    from the Bezier sampled at _TABLE_T (`table` [G, R, 48, 2])."""
    g, nr = p0.shape[:2]
    tk = _TABLE_T
    length = cumulative_length(table)[..., -1]
    tab = np.concatenate([table, np.broadcast_to(tk[:, None], (*table.shape[:-1], 1))], -1)
    sc = np.broadcast_to(CONN_DS * np.arange(CONN_K), (g * nr, CONN_K))
    pt = resample_at(tab.reshape(g * nr, 48, 3), sc).reshape(g, nr, CONN_K, 3)
    tt = np.clip(pt[..., 2:3], 0.0, 1.0)
    der = (3 * (1 - tt) ** 2 * (p1 - p0)[:, :, None] + 6 * (1 - tt) * tt * (p2 - p1)[:, :, None]
           + 3 * tt**2 * (p3 - p2)[:, :, None])  # fmt: skip
    return pt[..., :2], np.arctan2(der[..., 1], der[..., 0]), length


def pose(geo, n_idx, r, s):
    """Position [..., 2] and heading [...] at arc length s on route r of scenario n_idx.

    `geo` is a Roads or a dict with its route-geometry fields; indices broadcast against s."""
    get = geo.__getitem__ if isinstance(geo, dict) else lambda k: getattr(geo, k)
    _n, nr = get("l1").shape
    flat = np.broadcast_to(np.asarray(n_idx) * nr + np.asarray(r), np.shape(s)).ravel()
    sv = np.asarray(s, dtype=float).ravel()
    l1 = get("l1").reshape(-1)[flat]
    se = get("s_exit_geo").reshape(-1)[flat]
    xy = np.empty((len(sv), 2))
    h = np.empty(len(sv))
    before, after = sv < l1, sv > se
    for sel, start, d, hh, s0 in (
        (before, "p_start", "d_in", "h_in", None),
        (after, "p3", "d_out", "h_out", se),
    ):
        idx = np.nonzero(sel)[0]
        if len(idx):
            fr = flat[idx]
            ds = sv[idx] if s0 is None else sv[idx] - s0[idx]
            xy[idx] = get(start).reshape(-1, 2)[fr] + ds[:, None] * get(d).reshape(-1, 2)[fr]
            h[idx] = get(hh).reshape(-1)[fr]
    idx = np.nonzero(~before & ~after)[0]
    if len(idx):
        k = (sv[idx] - l1[idx]) / CONN_DS
        k0 = np.clip(np.floor(k).astype(np.int64), 0, CONN_K - 2)
        f = np.clip(k - k0, 0.0, 1.0)
        ci = flat[idx] * CONN_K + k0
        cxy = get("conn_xy").reshape(-1, 2)
        ch = get("conn_h").reshape(-1)
        c0 = cxy[ci]
        xy[idx] = c0 + (cxy[ci + 1] - c0) * f[:, None]
        h0 = ch[ci]
        h[idx] = h0 + wrap_angle(ch[ci + 1] - h0) * f
    shape = np.shape(s)
    return xy.reshape((*shape, 2)), h.reshape(shape)


def allowed_speed(roads: Roads, n_idx, r, s):
    """Speed a driver may have at s: limit, curves ahead, look-ahead braking (same shape as s)."""
    b2 = 2 * LOOKAHEAD_DECEL
    l1 = roads.l1[n_idx, r]
    k = np.clip(((s - l1) / CONN_DS).astype(np.int64), 0, CONN_K - 1)
    e = np.where(s < l1, roads.conn_e[n_idx, r, 0], roads.conn_e[n_idx, r, k])
    v = np.sqrt(np.maximum(e - b2 * s, 0.0))
    v = np.where(s < l1, np.minimum(v, roads.lim_in[n_idx, r]), v)
    return np.where(s > roads.s_exit_geo[n_idx, r], roads.lim_out[n_idx, r], v)


_PAD = {  # padding of routes, crosswalks and map pieces that a scenario does not have
    "p_start": 0.0, "d_in": 0.0, "h_in": 0.0, "l1": 0.0, "p3": 0.0, "d_out": 0.0, "h_out": 0.0,
    "conn_xy": 0.0, "conn_h": 0.0, "lim_in": 1.0, "lim_out": 1.0, "conn_e": 1.0, "s_exit_geo": 1.0,
    "route_len": 0.0, "move": -1, "arm_out": -1, "s_stop": np.inf, "s_exit": np.inf, "group": -1,
    "s_dead": np.inf, "lc_tgt": -1, "lc_off": 0.0, "lc_same": False, "lc_sep": 0.0, "lc_lo": 0.0,
    "lc_hi": -1.0, "cw_s": np.inf, "cw_u": 0.0, "map_xy": 0.0, "map_ok": False, "map_rb": -2,
    "map_group": -1,
}  # fmt: skip
_ROUTE_KEYS = {key for key in _PAD if not key.startswith("map_")}  # padded along the route axis


def _assemble(parts: list[dict], rows: list[np.ndarray], n: int) -> Roads:
    lmax = max(p["map_xy"].shape[1] for p in parts)
    out = {}
    for key in parts[0]:
        first = parts[0][key]
        shape = list(first.shape[1:])
        if key in _ROUTE_KEYS:
            shape[0] = MAX_ROUTES
        elif key == "pair":
            shape[0] = shape[1] = MAX_ROUTES
        elif key.startswith("map_"):
            shape[0] = lmax
        fill = _PAD.get(key, 0)
        if key == "pair":
            fill = conflicts.PAIR_PAD
        arr = np.empty((n, *shape), dtype=first.dtype)
        arr[...] = fill
        for p, sel in zip(parts, rows, strict=True):
            v = p[key]
            sl = (sel, *tuple(slice(0, s) for s in v.shape[1:]))
            arr[sl] = v
        out[key] = arr
    return Roads(**out)
