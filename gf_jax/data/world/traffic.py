"""The traffic simulation: car following, MOBIL lane changes, signals, yielding, pedestrians.

All scenarios of a chunk and all their agents step together; the models step at 5 Hz and the 10 Hz
frames in between are the exact constant-acceleration motion of the step. A vehicle is a point on a
route (arc length s of its box centre) plus a lateral offset while it changes lanes. Each step it
takes the smallest acceleration of the ACC model (IDM with the constant-acceleration heuristic,
Kesting & Treiber) over its leader (any vehicle ahead on a shared run of the two routes, including
vehicles still leaving its lane, and while it changes lanes itself its old lane's leader) and its
virtual stops: a red or yellow light it can still stop for, a conflict zone it must yield at (gap
acceptance on time to arrival, or first come first served), pedestrians on a crosswalk ahead, the end
of an acceleration lane, a scripted stop. Lane changes (MOBIL: incentive, and safety for the mover
and its new follower) are decided every second, left and right alternately so that two vehicles
never take the same gap from both sides; a driver who must change (the end of an acceleration lane,
the ego's scripted manoeuvre) tries every second and adapts its speed to find a gap. Pedestrians walk
their path, wait back from the curb until the signal shows walk and no vehicle near them could still
not stop, and cross. The ego is vehicle 0 and uses the same models with smooth, moderate settings.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import conflicts as C
from gf_jax.data.world import signals
from gf_jax.data.world.plan import LEFT, Plan
from gf_jax.data.world.population import Peds, Vehicles
from gf_jax.data.world.roads import CONN_DS, LOOKAHEAD_DECEL, Roads

DT = 0.1  # output frames (10 Hz)
SUBSTEPS = 2  # frames per simulation step
SIM_DT = DT * SUBSTEPS  # the models step at 5 Hz; frames between are exact ballistic motion
WARMUP_STEPS = 20  # frames simulated before the first past frame (lets the start settle)
PRESENT_STEP = WARMUP_STEPS + 20  # frame of the present (the scenario's t = 0)
N_STEPS = PRESENT_STEP + 80 + 2  # frames recorded: one past the last future frame, for differences
LC_EVERY = 5  # simulation steps between lane-change decisions (left and right alternate)
LC_MIN_SPEED = 3.0
LC_COOLDOWN = 6.0
SCRIPT_HOLD = 6.0
RATE_SPEED = 6.0  # m/s below which lane changes progress proportionally slower
LINK_RANGE = 130.0  # metres beyond which two vehicles do not interact before links are rebuilt
BIND_FREE, BIND_LEAD, BIND_SIGNAL, BIND_YIELD, BIND_PED, BIND_DEAD, BIND_SCRIPT = range(7)


@dataclasses.dataclass
class Record:
    """States at every 10 Hz frame [T, N, A] (vehicles) and [T, N, P] (pedestrians)."""

    route: np.ndarray
    s: np.ndarray
    d: np.ndarray  # lateral offset from the route centre line (left positive)
    slope: np.ndarray  # its derivative along the route (the yaw relative to the lane is atan)
    v: np.ndarray
    acc: np.ndarray
    active: np.ndarray
    lead: np.ndarray  # leader index, -1 none
    gap: np.ndarray  # bumper gap to the leader
    bind: np.ndarray  # what limited the acceleration (BIND_*)
    lc_start: np.ndarray  # +1 / -1 when a lane change to the left / right starts
    ped_s: np.ndarray


def _acc_model(v, gap, v_l, a_l, free, veh, coolness: float = 0.99):
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


def _lateral(d0, x, T, v, bias):
    """Lateral offset and its slope d(offset)/ds during a lane change at progress x in [0, 1].

    Progress runs at 1/T per second above RATE_SPEED and proportionally slower below it, so the
    slope (hence the vehicle's yaw relative to the lane) depends on x only at low speed."""
    return d0 * (1 - _smooth5(x)) + bias, -d0 * _dsmooth5(x) / (T * np.maximum(v, RATE_SPEED))


def _smooth5(x):
    return x * x * x * (10 - 15 * x + 6 * x * x)


def _dsmooth5(x):
    return 30 * x * x * (1 - x) ** 2


class _Pairs:
    """Route-pair table gathered for the agents' current routes, [F, N, A, A] float32."""

    def __init__(self, roads: Roads):
        self.n, self.r = roads.pair.shape[:2]
        self.flat = roads.pair.reshape(-1, roads.pair.shape[-1]).astype(np.float32)
        self.ar = np.arange(self.n)

    def gather(self, route_i, route_j, rows=None, fields=slice(None)):
        ar = self.ar if rows is None else rows
        idx = (ar[:, None, None] * self.r + route_i[:, :, None]) * self.r + route_j[:, None, :]
        return np.ascontiguousarray(np.moveaxis(self.flat[idx][..., fields], -1, 0))


class _Links:
    """The agent pairs that can interact before the next rebuild: a shared run (the other is within
    LINK_RANGE along it), a conflict zone neither has passed, a shared run with the other's previous
    lane or with one's own previous lane. Flattened and sorted by (scenario, agent i, agent j) so
    that per-agent minima are `reduceat`s over contiguous segments; every agent is paired with
    itself so that no segment is empty. Rebuilt every LC_EVERY steps, right after lane changes."""

    def __init__(self, PT, SH, SO, s, front, sh_off, active):
        _, _n, A, _ = PT.shape
        si = s[:, :, None]
        sj = s[:, None, :]
        share = (PT[C.F_LO] <= PT[C.F_HI]) & (np.abs(sj + PT[C.F_OFF] - si) < LINK_RANGE)
        fi = front[:, :, None]
        fj = front[:, None, :]
        conf = (
            (fi < PT[C.F_ZHI_P] + 5.0)
            & (fj < PT[C.F_ZHI_Q] + 5.0)
            & (PT[C.F_ZLO_P] - fi < LINK_RANGE)
        )
        shadow = (SH[C.F_LO] <= SH[C.F_HI]) & (
            np.abs((s - sh_off)[:, None, :] + SH[C.F_OFF] - si) < LINK_RANGE
        )
        own_old = (SO[C.F_LO] <= SO[C.F_HI]) & (
            np.abs(sj + SO[C.F_OFF] - (s - sh_off)[:, :, None]) < LINK_RANGE
        )
        rel = (share | conf | shadow | own_old) & active[:, None, :] & active[:, :, None]
        rel |= np.eye(A, dtype=bool)[None]
        flat = np.flatnonzero(rel)
        ii = (flat // A) % A
        jj = flat % A
        base = flat // (A * A) * A
        self.fi = base + ii
        self.fj = base + jj
        self.starts = np.concatenate([[0], np.cumsum(rel.sum(2).ravel())[:-1]])
        self.not_self = ii != jj
        self.j = jj.astype(np.float32)
        self.i = ii.astype(np.float32)
        self.pt = np.take(PT.reshape(PT.shape[0], -1), flat, axis=1)
        self.sh = np.take(SH.reshape(SH.shape[0], -1), flat, axis=1)
        self.so = np.take(SO.reshape(SO.shape[0], -1), flat, axis=1)
        self.has_conf = np.isfinite(self.pt[C.F_ZLO_P])


def simulate(plan: Plan, roads: Roads, veh: Vehicles, peds: Peds, lc_u: np.ndarray) -> Record:
    """Records N_STEPS frames at 10 Hz (models step at 5 Hz). `lc_u` [N, A] uniforms give each
    driver's lane-change duration."""
    f32 = np.float32
    n, A = veh.s.shape
    P = peds.s.shape[1]
    ar = np.arange(n)[:, None]
    ar2 = 2 * ar
    arA = A * ar

    s = veh.s.astype(f32).copy()
    v = veh.v.astype(f32).copy()
    route = veh.route.copy()
    active = veh.ok.copy()
    acc = np.zeros((n, A), f32)
    half = (veh.length / 2).astype(f32)
    half_f = half.ravel()
    lc_tau = np.full((n, A), 1.0, f32)
    lc_T = np.full((n, A), 1.0, f32)
    lc_d0 = np.zeros((n, A), f32)
    lc_last = np.full((n, A), -1e9, f32)
    lc_T_draw = (3.5 + 1.5 * lc_u).astype(f32)
    sh_route = route.copy()
    sh_off = np.zeros((n, A), f32)
    stop_s = np.full((n, A), np.inf, f32)
    seek_until = np.full((n, A), -1.0, f32)
    seek_v = np.zeros((n, A), f32)
    script_obs = np.full((n, A), np.inf, f32)
    script_t = veh.stop_time.astype(f32).copy()
    is_ego = np.zeros((n, A), bool)
    is_ego[:, 0] = True
    jerk_up = (np.where(is_ego, 12.0, 10.0) * SIM_DT).astype(f32)  # jerk limits, per step
    jerk_down = (np.where(is_ego, 15.0, 40.0) * SIM_DT).astype(f32)
    a_max_f = veh.a_max.ravel()
    gap_acc_f = veh.gap_acc.ravel()

    pairs = _Pairs(roads)
    PT = pairs.gather(route, route)
    SH = pairs.gather(route, sh_route, fields=slice(0, 3))  # others' previous lanes
    SO = pairs.gather(sh_route, route, fields=slice(0, 3))  # one's own previous lane
    links = _Links(PT, SH, SO, s, s + half, sh_off, active)
    cw_cache = _CrosswalkCache(roads, route, peds)

    ps = peds.s.astype(f32).copy()
    p_end = (peds.path_len - 0.01).astype(f32)
    ped_on = np.zeros((n, P), bool)
    ped_blocked = np.zeros((n, P), bool)
    ped_walk = _PedSignals(plan, roads, peds)

    T = N_STEPS
    rec = Record(
        route=np.zeros((T, n, A), np.int8), s=np.zeros((T, n, A), f32), d=np.zeros((T, n, A), f32),
        slope=np.zeros((T, n, A), f32), v=np.zeros((T, n, A), f32), acc=np.zeros((T, n, A), f32),
        active=np.zeros((T, n, A), bool), lead=np.zeros((T, n, A), np.int8),
        gap=np.zeros((T, n, A), f32), bind=np.zeros((T, n, A), np.int8),
        lc_start=np.zeros((T, n, A), np.int8), ped_s=np.zeros((T, n, P), f32),
    )  # fmt: skip

    rc = _RouteCache(roads, route)
    inf = f32(np.inf)

    for step in range(T // SUBSTEPS):
        frame = step * SUBSTEPS
        t = frame * DT
        # ---- lateral offset of lane changes ------------------------------------------------------
        x = np.clip(lc_tau / lc_T, 0.0, 1.0)
        rate = np.minimum(v / RATE_SPEED, 1.0)  # lateral progress slows with speed (no sliding)
        d_lat, slope = _lateral(lc_d0, x, lc_T, v, veh.d_bias)
        sh_on = (x < 0.5) & active
        rec.route[frame], rec.s[frame], rec.d[frame], rec.slope[frame] = route, s, d_lat, slope
        rec.v[frame], rec.active[frame] = v, active
        rec.ped_s[frame] = ps

        st, _ = signals.states(plan.green, plan.offset, t)
        grp = rc.group
        sig = np.where(grp >= 0, st.reshape(-1)[ar2 + np.maximum(grp, 0)], signals.GREEN)
        s_stop = rc.s_stop
        front = s + half

        # ---- leaders: vehicles ahead on a shared run (links are flat over interacting pairs) ------
        L = links
        s_f, v_f, front_f = s.ravel(), v.ravel(), front.ravel()
        si, sj = s_f[L.fi], s_f[L.fj]
        act_j = active.ravel()[L.fj] & L.not_self
        sep = half_f[L.fi] + half_f[L.fj]
        pt = L.pt
        pos = sj + pt[C.F_OFF]
        gap = np.where(
            (sj >= pt[C.F_LO]) & (sj <= pt[C.F_HI]) & act_j & (pos > si), pos - si - sep, inf
        )
        if sh_on.any():
            sjs = (s - sh_off).ravel()[L.fj]
            pos_s = sjs + L.sh[C.F_OFF]
            on_s = (sjs >= L.sh[C.F_LO]) & (sjs <= L.sh[C.F_HI]) & act_j & sh_on.ravel()[L.fj]
            gap = np.minimum(gap, np.where(on_s & (pos_s > si), pos_s - si - sep, inf))
            # ... and while a vehicle is still half in its old lane, it keeps behind that lane's leader.
            sis = (s - sh_off).ravel()[L.fi]
            pos_o = sj + L.so[C.F_OFF]
            on_o = (sj >= L.so[C.F_LO]) & (sj <= L.so[C.F_HI]) & act_j & sh_on.ravel()[L.fi]
            gap = np.minimum(gap, np.where(on_o & (pos_o > sis), pos_o - sis - sep, inf))
        gap_lead = np.minimum.reduceat(gap, L.starts)
        hit = (gap == gap_lead[L.fi]) & (gap < inf)
        lead = np.maximum.reduceat(np.where(hit, L.j, -1.0), L.starts).astype(np.int64)
        gap_lead = gap_lead.reshape(n, A)
        lead = lead.reshape(n, A)
        has_lead = lead >= 0
        lead = np.maximum(lead, 0)
        lead_f = lead + arA
        v_lead = v.reshape(-1)[lead_f]

        # ---- yielding in conflict zones ------------------------------------------------------------
        zlo_p = pt[C.F_ZLO_P]
        fi = front_f[L.fi]
        cand = L.has_conf & act_j & (fi < zlo_p + 0.5)
        yield_obs = np.full((n, A), inf, f32)
        if cand.any():
            k = np.nonzero(cand)[0]
            ii, jj = L.fi[k], L.fj[k]
            zlo, zhi = zlo_p[k], pt[C.F_ZHI_P][k]
            zlo_q, zhi_q, yt = pt[C.F_ZLO_Q][k], pt[C.F_ZHI_Q][k], pt[C.F_YIELD][k]
            fi_k, fj = fi[k], front_f[jj]
            rj = fj - 2 * half_f[jj]
            vi, vj = v_f[ii], np.maximum(v_f[jj], 0.5)
            ai = a_max_f[ii]
            j_in = (fj > zlo_q) & (rj < zhi_q)
            j_clear = rj >= zhi_q
            t_j = (zlo_q - fj) / vj
            t_i = (zlo - fi_k) / np.maximum(vi, 0.5)
            dist_clear = np.maximum(zhi - (fi_k - 2 * half_f[ii]), 0.0)
            t_clear = (np.sqrt(vi * vi + 2 * ai * dist_clear) - vi) / ai
            j_stops = stop_s.ravel()[jj] <= zlo_q
            soon = ~j_stops & (t_j < t_clear + gap_acc_f[ii])
            first = (t_j < t_i) | ((t_j == t_i) & (L.j[k] < L.i[k]))
            rule = (yt == C.YIELD_GIVE) | ((yt == C.YIELD_FIRST) & first)
            can_stop = (zlo - fi_k) > vi * vi / 12.0
            need = ~j_clear & (j_in | (soon & rule & can_stop))
            if need.any():
                # Wait at the stop line, or inside the junction once past it (and for a left turn
                # on green, which pulls into the junction to wait for a gap).
                inside = (front > s_stop + 0.5) | (
                    (rc.move == LEFT) & (sig == signals.GREEN) & (grp >= 0)
                )
                wait_at = np.where(inside.ravel()[ii], zlo - 0.5, s_stop.ravel()[ii] + 1.0)
                yo = yield_obs.reshape(-1)
                np.minimum.at(yo, ii[need], wait_at[need])

        # ---- pedestrians on crosswalks ahead -------------------------------------------------------
        ped_obs = np.full((n, A), inf, f32)
        if ped_on.any():
            kn, kp = np.nonzero(ped_on)  # pedestrians on a crosswalk, [K]
            into = ps[kn, kp] - peds.s_wait[kn, kp]
            dirk = peds.dir[kn, kp]
            u_ped = np.where(dirk > 0, into, peds.cross_len[kn, kp] - into)
            cs, cu = cw_cache.ped_s[kn, kp], cw_cache.ped_u[kn, kp]  # [K, A]
            ahead = (cu - u_ped[:, None]) * dirk[:, None]
            p_band = cw_cache.ped_band[kn, kp][:, None]
            p_obs = cs - p_band - 0.8
            fr = front[kn]
            ok = (
                (ahead > -2.5)
                & (ahead < 6.0)
                & (fr < cs - p_band + 0.3)
                & ((p_obs - fr) > v[kn] ** 2 / 12.0)
            )
            kk, aa = np.nonzero(ok)
            np.minimum.at(ped_obs.reshape(-1), kn[kk] * A + aa, p_obs[kk, aa])

        # ---- signals, dead ends, scripted stops ----------------------------------------------------
        d_stop = s_stop - front
        hold = (d_stop > -0.5) & (
            ((sig == signals.RED) & (d_stop > v * v / 12.0))
            | ((sig == signals.YELLOW) & (d_stop > v * v / 6.0))
        )
        sig_obs = np.where(hold, s_stop + veh.s0 - 1.0, inf)
        # The end of an acceleration lane counts only once a driver would need to start braking.
        s_dead = rc.s_dead
        dead_obs = np.where(s_dead - front < v * v / 5.0 + 10.0, s_dead + veh.s0 - 0.5, inf)
        trig = (t >= script_t) & (script_obs == inf)
        script_obs = np.where(trig, front + v * v / 5.0 + veh.s0 + 1.0, script_obs)
        release = t >= script_t + SCRIPT_HOLD
        script_obs = np.where(release, inf, script_obs)
        script_t = np.where(release, inf, script_t)

        obs, kind_obs = sig_obs, np.zeros((n, A), np.int8)
        for k_o, o_k in enumerate((yield_obs, ped_obs, dead_obs, script_obs), start=1):
            closer = o_k < obs
            if closer.any():
                obs = np.minimum(obs, o_k)
                kind_obs[closer] = k_o
        stop_s = obs

        # ---- ACC model: IDM, with the constant-acceleration heuristic against over-braking ---
        v0e = np.maximum(veh.v0 * rc.allowed(s), 0.5)
        rr = v / v0e
        rr = rr * rr
        free = np.maximum(veh.a_max * (1 - rr * rr), -3.0)
        a_lead = np.minimum(acc.reshape(-1)[lead_f], veh.a_max)
        acc_l = _acc_model(v, gap_lead, v_lead, a_lead, free, veh)
        acc_o = _acc_model(v, obs - front, 0.0, 0.0, free, veh)
        acc_l = np.where(has_lead, acc_l, free)
        acc_cmd = np.clip(np.minimum(acc_l, acc_o), -veh.b_max, veh.a_max)
        limited = np.minimum(acc_l, acc_o) < free - 0.05
        bind = np.where(~limited, BIND_FREE, np.where(acc_l <= acc_o, BIND_LEAD, 2 + kind_obs))
        seeking = t < seek_until
        seek_acc = np.clip(seek_v - v, -2.0, 1.5)
        acc_cmd = np.where(
            seeking,
            np.minimum(np.where(seek_acc > 0, acc_cmd, seek_acc), np.maximum(acc_cmd, seek_acc)),
            acc_cmd,
        )
        acc_new = np.clip(acc_cmd, acc - jerk_down, acc + jerk_up)
        lead_rec = np.where(has_lead, lead, -1)
        gap_rec = np.where(has_lead, gap_lead, 1e3)
        both = slice(frame, frame + SUBSTEPS)
        rec.lead[both], rec.gap[both], rec.bind[both], rec.acc[both] = (
            lead_rec,
            gap_rec,
            bind,
            acc_new,
        )

        # ---- lane changes (MOBIL) ----------------------------------------------------------------
        if step % LC_EVERY == 0 and step > 0:
            # Discretionary changes alternate sides each decision; drivers who must change (the
            # ego's scripted manoeuvre, the end of an acceleration lane) try their side every time.
            forced_now = is_ego & (plan.force_dir[:, None] != 0) & (t >= plan.force_time[:, None])
            must = np.where(forced_now, plan.force_dir[:, None], 0)
            must = np.where(rc.s_dead < inf, 1, must)
            turn = (step // LC_EVERY) % 2
            moved = np.zeros((n, A), bool)
            for side in (turn, 1 - turn):
                tgt = rc.lc_tgt[..., side]
                x = np.clip(lc_tau / lc_T, 0.0, 1.0)
                elig = (
                    active & veh.lc_ok & (tgt >= 0) & (x >= 1.0) & (t - lc_last > LC_COOLDOWN)
                    & (v > LC_MIN_SPEED) & (s >= rc.lc_lo) & (s <= rc.lc_hi)
                )  # fmt: skip
                elig &= ~is_ego | rc.lc_same[..., side]
                own = must == (1 if side == 0 else -1)
                elig &= ((side == turn) & (must == 0)) | own
                if not elig.any():
                    continue
                changed, sv = _mobil(
                    side, t, plan, roads, veh, pairs, route, s, v, acc_cmd, v0e, active, elig, tgt
                )
                seek_v = np.where(np.isfinite(sv), sv, seek_v)
                seek_until = np.where(np.isfinite(sv), t + 2 * LC_EVERY * SIM_DT, seek_until)
                if not changed.any():
                    continue
                off = rc.lc_off[..., side].astype(f32)
                sh_route = np.where(changed, route, sh_route)
                sh_off = np.where(changed, off, sh_off)
                s = np.where(changed, s + off, s)
                sign = -1.0 if side == 0 else 1.0
                lc_d0 = np.where(changed, sign * rc.lc_sep[..., side], lc_d0).astype(f32)
                route = np.where(changed, tgt, route)
                lc_tau = np.where(changed, 0.0, lc_tau).astype(f32)
                lc_T = np.where(changed, lc_T_draw, lc_T).astype(f32)
                lc_last = np.where(changed, t, lc_last).astype(f32)
                rec.lc_start[frame] = np.where(changed, 1 if side == 0 else -1, rec.lc_start[frame])
                moved |= changed
            if moved.any():
                rws = np.nonzero(moved.any(1))[0]
                PT[:, rws] = pairs.gather(route[rws], route[rws], rows=rws)
                SH[:, rws] = pairs.gather(route[rws], sh_route[rws], rows=rws, fields=slice(0, 3))
                SO[:, rws] = pairs.gather(sh_route[rws], route[rws], rows=rws, fields=slice(0, 3))
                cw_cache.update(roads, route, peds, rws)
                rc.update(roads, route, rws)
            x = np.clip(lc_tau / lc_T, 0.0, 1.0)

        # ---- integrate (constant acceleration over the step; exact mid-step frame) ---------------
        t_stop = np.where(acc_new < 0, v / np.maximum(-acc_new, 1e-6), inf)
        tt = np.minimum(SIM_DT, t_stop)
        ds = v * tt + 0.5 * acc_new * tt * tt
        # Never drive into the leader (an NPC backstop; the ego relies on its ACC model alone).
        ds_lead = ds.reshape(-1)[lead_f]
        room = np.where(has_lead, gap_lead + ds_lead - 0.3, inf)
        clamp = (ds > room) & ~is_ego & active
        ds = np.where(clamp, np.maximum(room, 0.0), ds)
        v_new = np.maximum(v + acc_new * SIM_DT, 0.0)
        v_new = np.where(clamp, np.minimum(v_new, v_new.reshape(-1)[lead_f]), v_new)
        tm = np.minimum(DT, t_stop)
        ds_mid = np.minimum(v * tm + 0.5 * acc_new * tm * tm, ds)
        x_mid = np.clip((lc_tau + DT * rate) / lc_T, 0.0, 1.0)
        rec.route[frame + 1], rec.s[frame + 1] = route, s + ds_mid
        v_mid = np.maximum(v + acc_new * DT, 0.0)
        rec.d[frame + 1], rec.slope[frame + 1] = _lateral(lc_d0, x_mid, lc_T, v_mid, veh.d_bias)
        rec.v[frame + 1] = v_mid
        rec.active[frame + 1] = active

        acc = ((v_new - v) / SIM_DT).astype(f32)
        v = v_new.astype(f32)
        s = (s + ds).astype(f32)
        lc_tau = (lc_tau + SIM_DT * rate).astype(f32)
        active = active & (s < rc.route_len - 2.0)
        active[:, 0] = True
        if step % LC_EVERY == 0:  # right after lane changes, and positions move on
            links = _Links(PT, SH, SO, s, s + half, sh_off, active)

        # ---- pedestrians -----------------------------------------------------------------------------
        if step % 2 == 0:  # walkers look around at 2.5 Hz
            ped_blocked = _peds_blocked(peds, ps, cw_cache, front, v, veh.length, stop_s, active)
        ps_new, ped_on = _step_peds(peds, ps, t, ped_walk(t), ped_blocked, p_end)
        rec.ped_s[frame + 1] = 0.5 * (ps + ps_new)
        ps = ps_new
    return rec


def _mobil(side, t, plan, roads, veh, pairs, route, s, v, acc_cmd, v0e, active, elig, tgt):
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


class _RouteCache:
    """Per-agent attributes of its current route [N, A], re-read only when routes change."""

    FIELDS = ("s_stop", "group", "s_dead", "route_len", "move", "l1", "lim_in", "lim_out",
              "s_exit_geo", "lc_lo", "lc_hi")  # fmt: skip
    LC_FIELDS = ("lc_tgt", "lc_off", "lc_same", "lc_sep")

    def __init__(self, roads: Roads, route: np.ndarray):
        self.conn_e = roads.conn_e.reshape(-1, roads.conn_e.shape[-1])
        self.flat = np.zeros(route.shape, np.int64)
        for name in self.FIELDS:
            tab = getattr(roads, name)
            setattr(
                self,
                name,
                np.zeros(route.shape, np.float32 if tab.dtype.kind == "f" else tab.dtype),
            )
        self.e0 = np.zeros(route.shape, np.float32)
        for name in self.LC_FIELDS:
            setattr(self, name, np.zeros((*route.shape, 2), getattr(roads, name).dtype))
        self.update(roads, route, np.arange(route.shape[0]))

    def update(self, roads: Roads, route: np.ndarray, rows: np.ndarray):
        n, r = roads.route_len.shape
        flat = rows[:, None] * r + route[rows]
        self.flat[rows] = flat
        for name in self.FIELDS:
            getattr(self, name)[rows] = getattr(roads, name).reshape(-1)[flat]
        self.e0[rows] = roads.conn_e[:, :, 0].reshape(-1)[flat]
        for name in self.LC_FIELDS:
            getattr(self, name)[rows] = getattr(roads, name).reshape(n * r, 2)[flat]

    def allowed(self, s: np.ndarray) -> np.ndarray:
        """`roads.allowed_speed` for each agent at its s."""
        b2 = 2 * LOOKAHEAD_DECEL
        k = np.clip(((s - self.l1) / CONN_DS).astype(np.int64), 0, self.conn_e.shape[1] - 1)
        e = np.where(s < self.l1, self.e0, self.conn_e[self.flat, k])
        v = np.sqrt(np.maximum(e - b2 * s, 0.0))
        v = np.where(s < self.l1, np.minimum(v, self.lim_in), v)
        return np.where(s > self.s_exit_geo, self.lim_out, v)


class _CrosswalkCache:
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


class _PedSignals:
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


def _peds_blocked(peds, ps, cache, front, v, length, stop_s, active):
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


def _step_peds(peds, ps, t, walk, blocked, p_end, dt: float = SIM_DT):
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
