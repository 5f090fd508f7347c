"""What every driver does in one simulation step: find its leader and the obstacles it must stop
for, and choose an acceleration.

A vehicle takes the smallest acceleration of the ACC model (IDM with the constant-acceleration
heuristic, Kesting & Treiber) over its leader (any vehicle ahead on a shared run of the two routes,
including vehicles still leaving its lane, and while it changes lanes itself its old lane's leader)
and its nearest virtual stop: a red or yellow light it can still stop for, a conflict zone it must
yield at, pedestrians on a crosswalk ahead, the end of an acceleration lane, a scripted stop.
`Fleet` is the vehicles' state that `traffic.simulate` carries from step to step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import conflicts as C
from gf_jax.data.world import signals
from gf_jax.data.world.crossings import CrosswalkCache
from gf_jax.data.world.interactions import Links, RouteCache
from gf_jax.data.world.pedestrians import Peds
from gf_jax.data.world.plan import LEFT
from gf_jax.data.world.population import Vehicles

SCRIPT_HOLD = 6.0  # seconds a scripted stop lasts
BIND_FREE, BIND_LEAD, BIND_SIGNAL, BIND_YIELD, BIND_PED, BIND_DEAD, BIND_SCRIPT = range(7)


def acc_model(v, gap, v_l, a_l, free, veh, coolness: float = 0.99):
    """Kesting-Treiber ACC acceleration behind a leader (or a standing obstacle: v_l = a_l = 0).

    IDM, except where the constant-acceleration heuristic (CAH: the leader keeps its current
    acceleration) says the situation is less critical than IDM thinks; then it brakes about as
    hard as kinematically needed instead of emergency braking.
    """
    a, b, T, s0 = veh.a_max, veh.b, veh.T, veh.s0
    gap = np.maximum(gap, 0.2)
    dv = v - v_l
    ss = s0 + np.maximum(0.0, v * T + v * dv / (2 * np.sqrt(a * b)))
    r = ss / gap
    a_idm = free - a * r * r
    closing = np.maximum(dv, 0.0)
    a_cah = a_l - closing * closing / (2 * gap)
    out = a_idm.copy()
    m = a_idm < a_cah
    if m.any():
        ai, ac, bm = a_idm[m], a_cah[m], b[m]
        out[m] = (1 - coolness) * ai + coolness * (ac + bm * np.tanh((ai - ac) / bm))
    return out


@dataclasses.dataclass
class Fleet:
    """The vehicles' state carried from one simulation step to the next, [N, A] each."""

    s: np.ndarray  # arc length of the box centre along `route`
    v: np.ndarray
    acc: np.ndarray
    route: np.ndarray
    active: np.ndarray
    lc_tau: np.ndarray  # seconds into the current lane change (>= lc_T: none under way)
    lc_T: np.ndarray  # its duration
    lc_d0: np.ndarray  # its starting lateral offset from the new lane's centre
    lc_last: np.ndarray  # when the last one started
    sh_route: np.ndarray  # the lane left by the last change ("shadow"), and s there minus s here
    sh_off: np.ndarray
    stop_s: np.ndarray  # the nearest virtual stop ahead (inf: none)
    seek_until: np.ndarray  # a driver who must change lanes holds seek_v until then to find a gap
    seek_v: np.ndarray
    script_obs: np.ndarray  # a scripted stop's obstacle (inf: none) and when it starts
    script_t: np.ndarray

    @classmethod
    def start(cls, veh: Vehicles) -> Fleet:
        f32 = np.float32
        shape = veh.s.shape
        route = veh.route.copy()
        return cls(
            s=veh.s.astype(f32).copy(), v=veh.v.astype(f32).copy(), acc=np.zeros(shape, f32),
            route=route, active=veh.ok.copy(), lc_tau=np.full(shape, 1.0, f32),
            lc_T=np.full(shape, 1.0, f32), lc_d0=np.zeros(shape, f32),
            lc_last=np.full(shape, -1e9, f32), sh_route=route.copy(), sh_off=np.zeros(shape, f32),
            stop_s=np.full(shape, np.inf, f32), seek_until=np.full(shape, -1.0, f32),
            seek_v=np.zeros(shape, f32), script_obs=np.full(shape, np.inf, f32),
            script_t=veh.stop_time.astype(f32).copy(),
        )  # fmt: skip


@dataclasses.dataclass
class Leader:
    """Each vehicle's leader this step, [N, A]: bumper gap, index (0 where none), whether any."""

    gap: np.ndarray
    index: np.ndarray
    has: np.ndarray
    flat: np.ndarray  # index into the flattened [N * A] agents
    act_j: np.ndarray  # per link: the other agent is active and not oneself


def leaders(L: Links, f: Fleet, half: np.ndarray, sh_on: np.ndarray) -> Leader:
    """The nearest vehicle ahead on a shared run (links are flat over interacting pairs); while a
    vehicle changes lanes, also those still in its old lane and those behind it there."""
    n, A = f.s.shape
    inf = np.float32(np.inf)
    s, half_f = f.s, half.ravel()
    s_f = s.ravel()
    si, sj = s_f[L.fi], s_f[L.fj]
    act_j = f.active.ravel()[L.fj] & L.not_self
    sep = half_f[L.fi] + half_f[L.fj]
    pt = L.pt
    pos = sj + pt[C.F_OFF]
    gap = np.where(
        (sj >= pt[C.F_LO]) & (sj <= pt[C.F_HI]) & act_j & (pos > si), pos - si - sep, inf
    )
    if sh_on.any():
        sjs = (s - f.sh_off).ravel()[L.fj]
        pos_s = sjs + L.sh[C.F_OFF]
        on_s = (sjs >= L.sh[C.F_LO]) & (sjs <= L.sh[C.F_HI]) & act_j & sh_on.ravel()[L.fj]
        gap = np.minimum(gap, np.where(on_s & (pos_s > si), pos_s - si - sep, inf))
        # ... and while a vehicle is still half in its old lane, it keeps behind that lane's leader.
        sis = (s - f.sh_off).ravel()[L.fi]
        pos_o = sj + L.so[C.F_OFF]
        on_o = (sj >= L.so[C.F_LO]) & (sj <= L.so[C.F_HI]) & act_j & sh_on.ravel()[L.fi]
        gap = np.minimum(gap, np.where(on_o & (pos_o > sis), pos_o - sis - sep, inf))
    gap_lead = np.minimum.reduceat(gap, L.starts)
    hit = (gap == gap_lead[L.fi]) & (gap < inf)
    lead = np.maximum.reduceat(np.where(hit, L.j, -1.0), L.starts).astype(np.int64)
    lead = lead.reshape(n, A)
    index = np.maximum(lead, 0)
    return Leader(
        gap=gap_lead.reshape(n, A),
        index=index,
        has=lead >= 0,
        flat=index + A * np.arange(n)[:, None],
        act_j=act_j,
    )


def yield_obstacles(L, act_j, f: Fleet, front, half, veh, rc: RouteCache, sig) -> np.ndarray:
    """Where each vehicle must wait [N, A] (inf: nowhere) for another in a conflict zone: gap
    acceptance on the times to arrival, or first come first served, as the zone's rule says."""
    n, A = f.s.shape
    pt, half_f, v_f, front_f = L.pt, half.ravel(), f.v.ravel(), front.ravel()
    zlo_p = pt[C.F_ZLO_P]
    fi = front_f[L.fi]
    cand = L.has_conf & act_j & (fi < zlo_p + 0.5)
    yield_obs = np.full((n, A), np.inf, np.float32)
    if not cand.any():
        return yield_obs
    k = np.nonzero(cand)[0]
    ii, jj = L.fi[k], L.fj[k]
    zlo, zhi = zlo_p[k], pt[C.F_ZHI_P][k]
    zlo_q, zhi_q, yt = pt[C.F_ZLO_Q][k], pt[C.F_ZHI_Q][k], pt[C.F_YIELD][k]
    fi_k, fj = fi[k], front_f[jj]
    rj = fj - 2 * half_f[jj]
    vi, vj = v_f[ii], np.maximum(v_f[jj], 0.5)
    ai = veh.a_max.ravel()[ii]
    j_in = (fj > zlo_q) & (rj < zhi_q)
    j_clear = rj >= zhi_q
    t_j = (zlo_q - fj) / vj
    t_i = (zlo - fi_k) / np.maximum(vi, 0.5)
    dist_clear = np.maximum(zhi - (fi_k - 2 * half_f[ii]), 0.0)
    t_clear = (np.sqrt(vi * vi + 2 * ai * dist_clear) - vi) / ai
    j_stops = f.stop_s.ravel()[jj] <= zlo_q
    soon = ~j_stops & (t_j < t_clear + veh.gap_acc.ravel()[ii])
    first = (t_j < t_i) | ((t_j == t_i) & (L.j[k] < L.i[k]))
    rule = (yt == C.YIELD_GIVE) | ((yt == C.YIELD_FIRST) & first)
    can_stop = (zlo - fi_k) > vi * vi / 12.0
    need = ~j_clear & (j_in | (soon & rule & can_stop))
    if need.any():
        # Wait at the stop line, or inside the junction once past it (and for a left turn on
        # green, which pulls into the junction to wait for a gap).
        inside = (front > rc.s_stop + 0.5) | (
            (rc.move == LEFT) & (sig == signals.GREEN) & (rc.group >= 0)
        )
        wait_at = np.where(inside.ravel()[ii], zlo - 0.5, rc.s_stop.ravel()[ii] + 1.0)
        np.minimum.at(yield_obs.reshape(-1), ii[need], wait_at[need])
    return yield_obs


def crosswalk_obstacles(ped_on, ps, peds: Peds, cw: CrosswalkCache, f: Fleet, front):
    """Where each vehicle must stop [N, A] (inf: nowhere) for pedestrians on a crosswalk ahead."""
    n, A = f.s.shape
    ped_obs = np.full((n, A), np.inf, np.float32)
    if not ped_on.any():
        return ped_obs
    kn, kp = np.nonzero(ped_on)  # pedestrians on a crosswalk, [K]
    into = ps[kn, kp] - peds.s_wait[kn, kp]
    dirk = peds.dir[kn, kp]
    u_ped = np.where(dirk > 0, into, peds.cross_len[kn, kp] - into)
    cs, cu = cw.ped_s[kn, kp], cw.ped_u[kn, kp]  # [K, A]
    ahead = (cu - u_ped[:, None]) * dirk[:, None]
    p_band = cw.ped_band[kn, kp][:, None]
    p_obs = cs - p_band - 0.8
    fr = front[kn]
    ok = (
        (ahead > -2.5)
        & (ahead < 6.0)
        & (fr < cs - p_band + 0.3)
        & ((p_obs - fr) > f.v[kn] ** 2 / 12.0)
    )
    kk, aa = np.nonzero(ok)
    np.minimum.at(ped_obs.reshape(-1), kn[kk] * A + aa, p_obs[kk, aa])
    return ped_obs


def nearest_stop(f: Fleet, t, front, sig, rc: RouteCache, veh, yield_obs, ped_obs):
    """The nearest virtual obstacle [N, A] over signals, yielding, pedestrians, the end of an
    acceleration lane and scripted stops, and which one it is (0 signal, 1 yield, ...); it becomes
    `f.stop_s`, and scripted stops start or end."""
    inf = np.float32(np.inf)
    v = f.v
    d_stop = rc.s_stop - front
    hold = (d_stop > -0.5) & (
        ((sig == signals.RED) & (d_stop > v * v / 12.0))
        | ((sig == signals.YELLOW) & (d_stop > v * v / 6.0))
    )
    sig_obs = np.where(hold, rc.s_stop + veh.s0 - 1.0, inf)
    # The end of an acceleration lane counts only once a driver would need to start braking.
    dead_obs = np.where(rc.s_dead - front < v * v / 5.0 + 10.0, rc.s_dead + veh.s0 - 0.5, inf)
    trig = (t >= f.script_t) & (f.script_obs == inf)
    f.script_obs = np.where(trig, front + v * v / 5.0 + veh.s0 + 1.0, f.script_obs)
    release = t >= f.script_t + SCRIPT_HOLD
    f.script_obs = np.where(release, inf, f.script_obs)
    f.script_t = np.where(release, inf, f.script_t)

    obs, kind_obs = sig_obs, np.zeros(f.s.shape, np.int8)
    for k_o, o_k in enumerate((yield_obs, ped_obs, dead_obs, f.script_obs), start=1):
        closer = o_k < obs
        if closer.any():
            obs = np.minimum(obs, o_k)
            kind_obs[closer] = k_o
    f.stop_s = obs
    return obs, kind_obs


def command(f: Fleet, t, front, obs, kind_obs, lead: Leader, rc: RouteCache, veh):
    """The commanded acceleration [N, A] (ACC behind the leader and the nearest obstacle, or the
    speed a driver seeking a gap holds), the desired speed it used, and what bound it (BIND_*)."""
    v = f.v
    v0e = np.maximum(veh.v0 * rc.allowed(f.s), 0.5)
    rr = v / v0e
    rr = rr * rr
    free = np.maximum(veh.a_max * (1 - rr * rr), -3.0)
    a_lead = np.minimum(f.acc.reshape(-1)[lead.flat], veh.a_max)
    v_lead = v.reshape(-1)[lead.flat]
    acc_l = acc_model(v, lead.gap, v_lead, a_lead, free, veh)
    acc_o = acc_model(v, obs - front, 0.0, 0.0, free, veh)
    acc_l = np.where(lead.has, acc_l, free)
    acc_cmd = np.clip(np.minimum(acc_l, acc_o), -veh.b_max, veh.a_max)
    limited = np.minimum(acc_l, acc_o) < free - 0.05
    bind = np.where(~limited, BIND_FREE, np.where(acc_l <= acc_o, BIND_LEAD, 2 + kind_obs))
    seeking = t < f.seek_until
    seek_acc = np.clip(f.seek_v - v, -2.0, 1.5)
    acc_cmd = np.where(
        seeking,
        np.minimum(np.where(seek_acc > 0, acc_cmd, seek_acc), np.maximum(acc_cmd, seek_acc)),
        acc_cmd,
    )
    return acc_cmd, v0e, bind
