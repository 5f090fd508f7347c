"""The map as the model reads it: lane pieces and connectors, crosswalk rings, the ego's route.

Lane pieces run along each arm (split every `seg_len` m, MAX_PIECES per lane) plus one Bezier
connector per route, RAW_POINTS vertices each; roadblock ids group them the way nuPlan's map does
(arm pieces, connectors 100 + 4 a + b, the ramp's 200-203), and the ego's route is the sequence of
roadblocks it drives through.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world.geometry import bezier
from gf_jax.data.world.plan import MERGE, STRAIGHT, Plan
from gf_jax.data.world.templates import (
    ARM_LENGTH,
    MAP_EXTENT,
    MAX_PIECES,
    MAX_ROUTE_BLOCKS,
    RAW_POINTS,
    Template,
)


def crosswalks(plan: Plan, t: Template, u, n, hw, r):
    g = len(plan)
    ok = plan.cw_on & plan.arms_on
    if t.kind == MERGE:
        ok = np.zeros_like(ok)
    if t.kind == STRAIGHT:
        ok = ok & (np.arange(4) == 0)
        tc = np.zeros((g, 4))
    else:
        tc = r - 1.0 - plan.cw_w[:, None] / 2
    hb = plan.cw_w[:, None] / 2
    lat = hw + 0.5
    corners = [(-hb, -lat), (hb, -lat), (hb, lat), (-hb, lat), (-hb, -lat)]
    ring = np.stack([(tc + dt)[..., None] * u + dl[..., None] * n for dt, dl in corners], axis=2)
    return {"ok": ok, "tc": tc, "half_road": hw, "ring": ring}


def map_pieces(plan: Plan, t: Template, u, n, r, conn_route_ctrl, group, extra):
    """Lane pieces (inbound and outbound, split every `seg_len` m) and connectors, RAW_POINTS
    vertices each."""
    g = len(plan)
    w, med, seg = plan.lane_w, plan.median, plan.seg_len
    q = np.arange(MAX_PIECES)
    lin = np.linspace(0.0, 1.0, RAW_POINTS)
    # Every (arm, direction, lane) of the template at once: [G, K, Q, P] pieces.
    lanes = [(a, d, i) for a in range(4) if t.arms_on[a] for d in (0, 1) for i in range(t.lanes[a])]
    la, ld, li = (np.array(x) for x in zip(*lanes, strict=True))
    inbound = ld == 0
    t0 = (r[:, la, None] + q * seg[:, None, None]).astype(np.float32)  # [G, K, Q]
    t1 = t0 + seg[:, None, None].astype(np.float32)
    ta, tb = np.where(inbound[:, None], t1, t0), np.where(inbound[:, None], t0, t1)
    tt = ta[..., None] + (tb - ta)[..., None] * lin.astype(np.float32)  # [G, K, Q, P]
    off = (med[:, None] + (li + 0.5) * w[:, None]) * np.where(inbound, 1.0, -1.0)  # [G, K]
    ua, na = u[:, la].astype(np.float32), n[:, la].astype(np.float32)  # [G, K, 2]
    pts = tt[..., None] * ua[:, :, None, None] + (off[..., None] * na)[:, :, None, None].astype(
        np.float32
    )
    xy = [pts.reshape(g, -1, RAW_POINTS, 2)]
    ok = [(t0 < MAP_EXTENT).reshape(g, -1)]
    rb = [
        np.broadcast_to(
            ((la * 2 + ld) * MAX_PIECES)[:, None] + q, (g, len(lanes), MAX_PIECES)
        ).reshape(g, -1)
    ]
    grp = [-np.ones((g, len(lanes) * MAX_PIECES), int)]
    p0, p1, p2, p3 = conn_route_ctrl
    conn = bezier(p0, p1, p2, p3, lin)  # [G, R, P, 2]
    nr = len(t.routes)
    xy.append(conn)
    ok.append(np.ones((g, nr), bool))
    ab = np.array([(ra, rb_) for ra, _, _, rb_, _ in t.routes]).reshape(-1, 2)
    rb.append(np.broadcast_to(100 + ab[:, 0] * 4 + ab[:, 1], (g, nr)))
    grp.append(group[:, :nr])
    if t.ramp:
        p_far, q0, q1, q2, q3, p_end = extra["ramp_ctrl"]
        # Ramp lane in two pieces, the curve as a connector, the acceleration lane.
        mid = q0 + 0.5 * (p_far - q0) * (MAP_EXTENT / ARM_LENGTH)
        far = q0 + (p_far - q0) * (MAP_EXTENT / ARM_LENGTH)
        for k, (pa, pb) in enumerate(((far, mid), (mid, q0))):
            xy.append((pa[:, None] + (pb - pa)[:, None] * lin[:, None])[:, None])
            ok.append(np.ones((g, 1), bool))
            rb.append(np.full((g, 1), 200 + k))
            grp.append(-np.ones((g, 1), int))
        xy.append(bezier(q0, q1, q2, q3, lin)[:, None])
        ok.append(np.ones((g, 1), bool))
        rb.append(np.full((g, 1), 202))
        grp.append(-np.ones((g, 1), int))
        xy.append((q3[:, None] + (p_end - q3)[:, None] * lin[:, None])[:, None])
        ok.append(np.ones((g, 1), bool))
        rb.append(np.full((g, 1), 203))
        grp.append(-np.ones((g, 1), int))
    return {
        "xy": np.concatenate(xy, 1).astype(np.float32),
        "ok": np.concatenate(ok, 1),
        "rb": np.concatenate(rb, 1),
        "group": np.concatenate(grp, 1),
    }


def ego_route(plan: Plan, t: Template, idx: dict) -> np.ndarray:
    """The ego's starting route slot: arm 0, its lane and movement (or the ramp)."""
    g = len(plan)
    out = np.zeros(g, int)
    for k in range(g):
        if t.ramp and plan.ego_on_ramp[k]:
            out[k] = len(t.routes)
            continue
        lane = int(min(plan.ego_lane[k], t.lanes[0] - 1))
        m = int(plan.ego_move[k])
        key = (0, lane, m)
        if key not in idx:  # fall back to any movement from that lane, then any lane
            key = next((kk for kk in idx if kk[0] == 0 and kk[1] == lane), None) or next(
                kk for kk in idx if kk[0] == 0
            )
        out[k] = idx[key]
    return out


def ego_roadblocks(plan: Plan, t: Template, ego_route: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Roadblock ids along the ego's route, in driving order, -1 padded [G, B]."""
    g = len(plan)
    out = -np.ones((g, MAX_ROUTE_BLOCKS), int)
    far_to_near = list(range(MAX_PIECES - 1, -1, -1))
    for k in range(g):
        er = int(ego_route[k])
        if er >= len(t.routes):
            # Ramp pieces, the acceleration lane, then the eastbound pieces from where it starts
            # (arm 0 piece q ends at x = -(r + q seg)).
            seq = [200, 201, 202, 203] + [
                q for q in far_to_near
                if -(r[k, 0] + q * plan.seg_len[k]) >= plan.acc_x0[k]
            ]  # fmt: skip
            b = 2
        else:
            b = t.routes[er][3]
            seq = list(far_to_near)
        seq = seq + [100 + b] + [(b * 2 + 1) * MAX_PIECES + q for q in range(MAX_PIECES)]
        out[k, : len(seq)] = seq[:MAX_ROUTE_BLOCKS]
    return out
