"""Lane changes: the lateral path of a change in progress, and MOBIL's decision who changes now.

A change moves the vehicle across by the lane separation along a quintic smoothstep of its progress
x in [0, 1]; MOBIL (Kesting, Treiber & Helbing) changes a driver whose gain in acceleration, plus
politeness times its new follower's, exceeds a threshold, when the gap is safe for both. Drivers who
must change (the ego's scripted manoeuvre, the end of an acceleration lane) adapt their speed until
a gap opens.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world import conflicts as C

RATE_SPEED = 6.0  # m/s below which lane changes progress proportionally slower


def lateral(d0, x, T, v, bias):
    """Lateral offset and its slope d(offset)/ds during a lane change at progress x in [0, 1].

    Progress runs at 1/T per second above RATE_SPEED and proportionally slower below it, so the
    slope (hence the vehicle's yaw relative to the lane) depends on x only at low speed."""
    return d0 * (1 - _smooth5(x)) + bias, -d0 * _dsmooth5(x) / (T * np.maximum(v, RATE_SPEED))


def _smooth5(x):
    return x * x * x * (10 - 15 * x + 6 * x * x)


def _dsmooth5(x):
    return 30 * x * x * (1 - x) ** 2


def mobil(side, t, plan, roads, veh, pairs, route, s, v, acc_cmd, v0e, active, elig, tgt):
    """Which eligible vehicles change lanes to `side` now [N, A], and the speed [N, A] that those
    who must change but cannot should hold to find a gap (inf for the others).

    MOBIL: the incentive is the mover's gain plus politeness times the new follower's gain; safety
    needs room ahead and behind and neither the mover nor its new follower braking hard."""
    n, A = s.shape
    en, ei = np.nonzero(elig)  # [E]
    r = pairs.r
    idx = ((en * r + tgt[en, ei])[:, None] * r) + route[en]  # [E, A] pair (target route, j's route)
    tab = pairs.flat[idx][..., :3]
    sj = s[en]
    on = (sj >= tab[..., C.F_LO]) & (sj <= tab[..., C.F_HI]) & active[en]
    on[np.arange(len(en)), ei] = False
    s_t = s[en, ei] + roads.lc_off[en, route[en, ei], side]
    dpos = sj + tab[..., C.F_OFF] - s_t[:, None]
    half = veh.length / 2
    sep = half[en, ei][:, None] + half[en]
    gap_a = np.where(on & (dpos > 0), dpos - sep, np.inf)
    gap_b = np.where(on & (dpos <= 0), -dpos - sep, np.inf)
    la = np.argmin(gap_a, 1)
    fb = np.argmin(gap_b, 1)
    e = np.arange(len(en))
    g_lead, g_fol = gap_a[e, la], gap_b[e, fb]
    vi = v[en, ei]

    def idm(vv, gap, vl, n_, i_):
        a, b, T, s0 = veh.a_max[n_, i_], veh.b[n_, i_], veh.T[n_, i_], veh.s0[n_, i_]
        rr = vv / v0e[n_, i_]
        rr = rr * rr
        free = np.maximum(a * (1 - rr * rr), -3.0)
        ss = s0 + np.maximum(0.0, vv * T + vv * (vv - vl) / (2 * np.sqrt(a * b)))
        return free - a * (ss / np.maximum(gap, 0.2)) ** 2

    a_new = idm(vi, g_lead, v[en, la], en, ei)
    v_f = v[en, fb]
    fol = np.isfinite(g_fol)
    a_fol_new = np.where(fol, idm(v_f, g_fol, vi, en, fb), 0.0)
    a_fol_cur = np.where(fol, acc_cmd[en, fb], 0.0)
    # Safe: room ahead and behind, the new follower need not brake hard, and neither need the mover
    # (judged with the less alarmist ACC model, as a driver who sees the gap would).
    a_cah = -(np.maximum(vi - v[en, la], 0.0) ** 2) / (2 * np.maximum(g_lead, 0.2))
    a_cah_fol = -(np.maximum(v_f - vi, 0.0) ** 2) / (2 * np.maximum(g_fol, 0.2))
    room_ahead = g_lead > 2.0 + 0.3 * vi
    room_behind = ~fol | ((g_fol > 1.0 + 0.1 * v_f) & (np.maximum(a_fol_new, a_cah_fol) > -3.0))
    safe = room_ahead & room_behind & (np.maximum(a_new, a_cah) > -4.0)
    gain = a_new - acc_cmd[en, ei] + veh.polite[en, ei] * (a_fol_new - a_fol_cur)
    want = gain > veh.lc_thr[en, ei]
    want_dir = 1 if side == 0 else -1
    forced = (ei == 0) & (plan.force_dir[en] == want_dir) & (t >= plan.force_time[en])
    forced |= np.isfinite(roads.s_dead[en, route[en, ei]]) & (side == 0)  # acceleration lane
    changed = np.zeros((n, A), bool)
    changed[en, ei] = safe & (want | forced)
    # A driver who must change but finds no gap drops back a little below the target lane's speed,
    # so that a gap opens beside it; blocked only from behind (or alongside) with room ahead, it
    # speeds up to get in front instead.
    seek_v = np.full((n, A), np.inf, np.float32)
    lane_v = np.maximum(np.where(fol, v_f, 0.0), np.where(np.isfinite(g_lead), v[en, la], 0.0))
    ahead_open = room_ahead & (g_lead > 15.0 + vi)
    target_v = np.where(
        ahead_open & ~room_behind, np.minimum(1.15 * lane_v + 1.0, v0e[en, ei]), 0.8 * lane_v
    )
    seek_v[en, ei] = np.where(forced & ~safe, np.maximum(target_v, 2.0), np.inf)
    return changed, seek_v
