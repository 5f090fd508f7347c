"""Pedestrians at crosswalks: where routes cross them, when they may walk, and how they move.

A walker waits back from the curb until its crosswalk (if signalised) shows walk and no vehicle
near it could still not stop, then crosses; it stops at the curb or between lanes while blocked.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world import signals
from gf_jax.data.world.pedestrians import Peds
from gf_jax.data.world.plan import Plan
from gf_jax.data.world.roads import Roads


class CrosswalkCache:
    """Where each vehicle's current route crosses each pedestrian's crosswalk, [N, P, A]."""

    def __init__(self, roads: Roads, route: np.ndarray, peds: Peds):
        self.ped_band = (np.take_along_axis(roads.cw_band, np.maximum(peds.cw, 0), 1) / 2).astype(
            np.float32
        )
        n, a = route.shape
        self.ped_s = np.empty((n, peds.cw.shape[1], a), np.float32)
        self.ped_u = np.empty_like(self.ped_s)
        self.update(roads, route, peds, np.arange(n))

    def update(self, roads: Roads, route: np.ndarray, peds: Peds, rows: np.ndarray):
        _, r, c = roads.cw_s.shape
        cw = peds.cw[rows]
        flat = ((rows[:, None] * r + route[rows]) * c)[:, None, :] + np.maximum(cw, 0)[:, :, None]
        self.ped_s[rows] = np.where((cw >= 0)[:, :, None], roads.cw_s.reshape(-1)[flat], np.inf)
        self.ped_u[rows] = roads.cw_u.reshape(-1)[flat]


class PedSignals:
    """'Walk' for each pedestrian's crosswalk at time t: the crossed arm has red and the other phase
    still has at least MIN_WALK_GREEN seconds of green (unsignalised crosswalks always walk)."""

    MIN_WALK_GREEN = 5.0

    def __init__(self, plan: Plan, roads: Roads, peds: Peds):
        n = len(plan)
        grp = np.take_along_axis(roads.cw_group, np.maximum(peds.cw, 0), 1)
        self.signalised = grp >= 0
        g = np.maximum(grp, 0)
        self.own = np.arange(n)[:, None] * 2 + g
        self.other = np.arange(n)[:, None] * 2 + (1 - g)
        self.has_cw = peds.cw >= 0
        self.green, self.offset = plan.green, plan.offset

    def __call__(self, t: float) -> np.ndarray:
        st, left = signals.states(self.green, self.offset, t)
        walk = (st.reshape(-1)[self.own] == signals.RED) & (
            left.reshape(-1)[self.other] > self.MIN_WALK_GREEN
        )
        return self.has_cw & (~self.signalised | walk)


def peds_blocked(peds, ps, cache, front, v, length, stop_s, active):
    """Pedestrians [N, P] that must not step forward: a vehicle in the lanes just ahead of them is
    on the crosswalk, or is less than two seconds away and could no longer stop (4 m/s^2). Only
    those at the curb or on the crosswalk are checked."""
    blocked = np.zeros(ps.shape, bool)
    at = peds.ok & (peds.cw >= 0) & (ps >= peds.s_hold - 0.1) & (ps < peds.s_wait + peds.cross_len)
    kn, kp = np.nonzero(at)
    if not len(kn):
        return blocked
    into = np.clip(ps[kn, kp] - peds.s_wait[kn, kp], 0.0, peds.cross_len[kn, kp])
    dirk = peds.dir[kn, kp]
    u_ped = np.where(dirk > 0, into, peds.cross_len[kn, kp] - into)
    cs, cu = cache.ped_s[kn, kp], cache.ped_u[kn, kp]  # [K, A]
    ahead = (cu - u_ped[:, None]) * dirk[:, None]
    dcw = cs - front[kn]
    bh = cache.ped_band[kn, kp][:, None]
    vv = v[kn]
    on_cw = (dcw < bh + 0.5) & (dcw > -(length[kn] + bh))
    coming = (
        (dcw > 0)
        & (dcw < vv * 2.0 + 1.0)
        & (dcw < vv * vv / 8.0 + 1.0)
        & (vv > 1.0)
        & (stop_s[kn] > cs - bh)
    )
    hit = (ahead > -1.5) & (ahead < 3.5) & (on_cw | coming) & active[kn]
    blocked[kn, kp] = hit.any(1)
    return blocked


def step_peds(peds, ps, t, walk, blocked, p_end, dt: float):
    """Moves pedestrians one step; returns positions and who is on (or stepping onto) a crosswalk.

    A walker crosses when the signal (if any) shows walk, and stops at the curb or between lanes
    while `blocked`; every vehicle that still can gives way to walkers on the crosswalk."""
    crossing = (ps >= peds.s_wait - 1e-3) & (ps < peds.s_wait + peds.cross_len)
    at_curb = ps <= peds.s_wait + 1e-3
    go = np.where(at_curb, walk & (t >= peds.not_before), True) & ~(blocked & (crossing | at_curb))
    nxt = ps + peds.v * dt
    holding = ~go & at_curb & (ps <= peds.s_hold + 1e-3)
    nxt = np.where(
        holding, np.minimum(nxt, peds.s_hold), np.where(~go & (crossing | at_curb), ps, nxt)
    )
    nxt = np.where(peds.ok, np.minimum(nxt, p_end), ps)
    on = (
        peds.ok
        & (peds.cw >= 0)
        & (nxt >= peds.s_wait - 0.3)
        & (nxt <= peds.s_wait + peds.cross_len)
        & (go | ~at_curb)
    )
    return nxt.astype(np.float32), on
