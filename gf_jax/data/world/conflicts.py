"""Route-pair relations: who follows whom, where paths cross or merge, and who yields.

For a follower on route p and another vehicle on route q the table gives
- a shared run: where q coincides with p (same inbound lane before the paths diverge, same outbound
  lane after they merge) and the offset that maps q's arc length onto p's;
- a conflict zone on each route, where the two paths come closer than two half vehicle widths;
- the yield type of p towards q: 0 p has priority, 1 p yields, 2 first come first served.
Priorities: at signals, turning left yields to oncoming traffic of the same phase (different
phases never have green together, so first-come only protects vehicles still clearing); without
signals the minor road yields, then the same left-turn rule.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world.plan import LEFT, STRAIGHT_ON, TEE, Plan

F_OFF, F_LO, F_HI, F_ZLO_P, F_ZHI_P, F_ZLO_Q, F_ZHI_Q, F_YIELD = range(8)
N_FIELDS = 8
PAIR_PAD = np.array([0.0, np.inf, -np.inf, np.inf, -np.inf, np.inf, -np.inf, 2.0])
CLOSE = 2.5  # centre-line distance below which two vehicles' bodies would touch
DIVERGE = 1.6  # same-lane paths stop sharing once this far apart
YIELD_PRIORITY, YIELD_GIVE, YIELD_FIRST = 0, 1, 2


def route_pairs(t, plan: Plan, cs_s, cs_xy, s_stop, s_exit, point_at) -> np.ndarray:
    """The pair table [G, R, R, N_FIELDS] of a template group (see module docstring).

    cs_s, cs_xy: connector samples [G, R, K] and their points; point_at(route [1, P, 1], s [G, P, K])
    gives route points."""
    g, nr = cs_s.shape[:2]
    tab = np.broadcast_to(PAIR_PAD, (g, nr, nr, N_FIELDS)).copy()
    routes = list(t.routes) + ([(4, 0, STRAIGHT_ON, 4, 0)] if t.ramp else [])
    a = np.array([x[0] for x in routes])
    i = np.array([x[1] for x in routes])
    m = np.array([x[2] for x in routes])
    b = np.array([x[3] for x in routes])
    j = np.array([x[4] for x in routes])

    diag = np.arange(nr)
    tab[:, diag, diag, F_LO] = -np.inf
    tab[:, diag, diag, F_HI] = np.inf

    p_idx, q_idx = np.nonzero(np.triu(np.ones((nr, nr), bool), 1))
    same_in = (a[p_idx] == a[q_idx]) & (i[p_idx] == i[q_idx]) & (a[p_idx] < 4)
    same_out = (b[p_idx] == b[q_idx]) & (j[p_idx] == j[q_idx]) & ~same_in & (a[p_idx] < 4)

    # Same inbound lane: shared from the start until the paths part (s is aligned on both).
    if same_in.any():
        pp, qq = p_idx[same_in], q_idx[same_in]
        s0 = s_stop[:, pp]
        sg = s0[..., None] + np.arange(41.0)  # [G, P, 41]
        diff = point_at(pp[None, :, None], sg) - point_at(qq[None, :, None], sg)
        apart = diff[..., 0] ** 2 + diff[..., 1] ** 2 > DIVERGE**2
        k_div = np.where(apart.any(-1), np.argmax(apart, -1), 40)
        for x, y in ((pp, qq), (qq, pp)):
            tab[:, x, y, F_OFF] = 0.0
            tab[:, x, y, F_LO] = -np.inf
            tab[:, x, y, F_HI] = s0 + k_div

    # Everything else that comes close inside the junction: crossings and merges.
    # Routes from the same arm run side by side (they only meet through a shared lane, above).
    other = ~same_in & (a[p_idx] != a[q_idx])
    pp, qq = p_idx[other], q_idx[other]
    cx, cy = cs_xy[..., 0].astype(np.float32), cs_xy[..., 1].astype(np.float32)
    dx = cx[:, pp, :, None] - cx[:, qq, None, :]
    dy = cy[:, pp, :, None] - cy[:, qq, None, :]
    close = dx * dx + dy * dy < CLOSE**2  # [G, P, K, K]
    any_p = close.any(-1)  # samples of p close to q
    any_q = close.any(-2)
    sp, sq = cs_s[:, pp], cs_s[:, qq]
    zlo_p = np.where(any_p, sp, np.inf).min(-1) - 1.0
    zhi_p = np.where(any_p, sp, -np.inf).max(-1) + 1.0
    zlo_q = np.where(any_q, sq, np.inf).min(-1) - 1.0
    zhi_q = np.where(any_q, sq, -np.inf).max(-1) + 1.0
    mo = same_out[other]
    # A merge's zone ends where the paths have become one lane; from there on it is following.
    zhi_p = np.where(mo, s_exit[:, pp] + 1.0, zhi_p)
    zhi_q = np.where(mo, s_exit[:, qq] + 1.0, zhi_q)
    has = any_p.any(-1)
    zlo_p, zhi_p = np.where(has, zlo_p, np.inf), np.where(has, zhi_p, -np.inf)
    zlo_q, zhi_q = np.where(has, zlo_q, np.inf), np.where(has, zhi_q, -np.inf)
    tab[:, pp, qq, F_ZLO_P], tab[:, pp, qq, F_ZHI_P] = zlo_p, zhi_p
    tab[:, pp, qq, F_ZLO_Q], tab[:, pp, qq, F_ZHI_Q] = zlo_q, zhi_q
    tab[:, qq, pp, F_ZLO_P], tab[:, qq, pp, F_ZHI_P] = zlo_q, zhi_q
    tab[:, qq, pp, F_ZLO_Q], tab[:, qq, pp, F_ZHI_Q] = zlo_p, zhi_p
    if mo.any():
        pm, qm = pp[mo], qq[mo]
        for x, y in ((pm, qm), (qm, pm)):
            tab[:, x, y, F_OFF] = s_exit[:, x] - s_exit[:, y]
            tab[:, x, y, F_LO] = s_exit[:, y] - 2.0
            tab[:, x, y, F_HI] = np.inf

    tab[..., F_YIELD] = _yield_types(t, plan, a, m)
    return tab


def _yield_types(t, plan: Plan, a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[G, R, R] yield type of route p (rows) towards q (columns)."""
    ap, aq = a[:, None], a[None, :]
    mp, mq = m[:, None], m[None, :]
    opposite = (aq == (ap + 2) % 4) & (ap < 4) & (aq < 4)
    p_turns_across = (mp == LEFT) & opposite & (mq != LEFT)
    q_turns_across = (mq == LEFT) & opposite & (mp != LEFT)
    left_rule = np.where(
        p_turns_across, YIELD_GIVE, np.where(q_turns_across, YIELD_PRIORITY, YIELD_FIRST)
    )
    same_phase = (ap % 2) == (aq % 2)
    signal = np.where(same_phase, left_rule, YIELD_FIRST)
    # Without signals the road with both of its arms present is the major road.
    major = 0 if (t.arms_on[0] and t.arms_on[2]) else 1
    minor_p = (ap % 2 != major) & (ap < 4)
    minor_q = (aq % 2 != major) & (aq < 4)
    if t.kind != TEE and not (t.arms_on[1] or t.arms_on[3]):
        minor_p = minor_q = np.zeros_like(minor_p)
    unsig = np.where(
        minor_p & ~minor_q, YIELD_GIVE, np.where(minor_q & ~minor_p, YIELD_PRIORITY, left_rule)
    )
    return np.where(plan.signalised[:, None, None], signal[None], unsig[None]).astype(float)
