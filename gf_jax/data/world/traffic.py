"""The traffic simulation: every scenario of a chunk and all its agents step together.

The models step at 5 Hz and the 10 Hz frames in between are the exact constant-acceleration motion
of the step. A vehicle is a point on a route (arc length s of its box centre) plus a lateral offset
while it changes lanes. Each step: every driver finds its leader and nearest obstacle and chooses an
acceleration (`driving`); every second, lane changes are decided (`lane_change`, MOBIL), left and
right alternately so that two vehicles never take the same gap from both sides; vehicles move;
pedestrians walk, wait at the curb and cross (`crossings`). Who can interact with whom is
gathered from the route-pair tables and rebuilt right after lane changes (`interactions`). The ego
is vehicle 0 and uses the same models with smooth, moderate settings.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gf_jax.data.world import signals
from gf_jax.data.world.crossings import CrosswalkCache, PedSignals, peds_blocked, step_peds
from gf_jax.data.world.driving import (
    Fleet,
    Leader,
    command,
    crosswalk_obstacles,
    leaders,
    nearest_stop,
    yield_obstacles,
)
from gf_jax.data.world.interactions import Links, Pairs, RouteCache
from gf_jax.data.world.lane_change import RATE_SPEED, lateral, mobil
from gf_jax.data.world.pedestrians import Peds
from gf_jax.data.world.plan import Plan
from gf_jax.data.world.population import Vehicles
from gf_jax.data.world.roads import Roads

DT = 0.1  # output frames (10 Hz)
SUBSTEPS = 2  # frames per simulation step
SIM_DT = DT * SUBSTEPS  # the models step at 5 Hz; frames between are exact ballistic motion
WARMUP_STEPS = 20  # frames simulated before the first past frame (lets the start settle)
PRESENT_STEP = WARMUP_STEPS + 20  # frame of the present (the scenario's t = 0)
N_STEPS = PRESENT_STEP + 80 + 2  # frames recorded: one past the last future frame, for differences
LC_EVERY = 5  # simulation steps between lane-change decisions (left and right alternate)
LC_MIN_SPEED = 3.0
LC_COOLDOWN = 6.0


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


class _Tables:
    """The route-pair tables of the agents' current routes and what is gathered from them."""

    def __init__(self, roads: Roads, peds: Peds, fleet: Fleet, half: np.ndarray):
        self.pairs = Pairs(roads)
        route, sh_route = fleet.route, fleet.sh_route
        self.PT = self.pairs.gather(route, route)
        self.SH = self.pairs.gather(route, sh_route, fields=slice(0, 3))  # others' previous lanes
        self.SO = self.pairs.gather(sh_route, route, fields=slice(0, 3))  # one's own previous lane
        self.cw = CrosswalkCache(roads, route, peds)
        self.rc = RouteCache(roads, route)
        self.relink(fleet, half)

    def relink(self, fleet: Fleet, half: np.ndarray) -> None:
        s = fleet.s
        self.links = Links(self.PT, self.SH, self.SO, s, s + half, fleet.sh_off, fleet.active)

    def reroute(self, roads: Roads, peds: Peds, fleet: Fleet, rws: np.ndarray) -> None:
        """Re-gathers the rows `rws` whose routes changed."""
        route, sh_route, pairs = fleet.route, fleet.sh_route, self.pairs
        self.PT[:, rws] = pairs.gather(route[rws], route[rws], rows=rws)
        self.SH[:, rws] = pairs.gather(route[rws], sh_route[rws], rows=rws, fields=slice(0, 3))
        self.SO[:, rws] = pairs.gather(sh_route[rws], route[rws], rows=rws, fields=slice(0, 3))
        self.cw.update(roads, route, peds, rws)
        self.rc.update(roads, route, rws)


def _empty_record(n: int, A: int, P: int) -> Record:
    f32, T = np.float32, N_STEPS
    return Record(
        route=np.zeros((T, n, A), np.int8), s=np.zeros((T, n, A), f32), d=np.zeros((T, n, A), f32),
        slope=np.zeros((T, n, A), f32), v=np.zeros((T, n, A), f32), acc=np.zeros((T, n, A), f32),
        active=np.zeros((T, n, A), bool), lead=np.zeros((T, n, A), np.int8),
        gap=np.zeros((T, n, A), f32), bind=np.zeros((T, n, A), np.int8),
        lc_start=np.zeros((T, n, A), np.int8), ped_s=np.zeros((T, n, P), f32),
    )  # fmt: skip


def simulate(plan: Plan, roads: Roads, veh: Vehicles, peds: Peds, lc_u: np.ndarray) -> Record:
    """Records N_STEPS frames at 10 Hz (models step at 5 Hz). `lc_u` [N, A] uniforms give each
    driver's lane-change duration."""
    f32 = np.float32
    n, A = veh.s.shape
    P = peds.s.shape[1]
    f = Fleet.start(veh)
    half = (veh.length / 2).astype(f32)
    lc_T_draw = (3.5 + 1.5 * lc_u).astype(f32)
    is_ego = np.zeros((n, A), bool)
    is_ego[:, 0] = True
    jerk_up = (np.where(is_ego, 12.0, 10.0) * SIM_DT).astype(f32)  # jerk limits, per step
    jerk_down = (np.where(is_ego, 15.0, 40.0) * SIM_DT).astype(f32)
    tables = _Tables(roads, peds, f, half)
    rc = tables.rc

    ps = peds.s.astype(f32).copy()
    p_end = (peds.path_len - 0.01).astype(f32)
    ped_on = np.zeros((n, P), bool)
    ped_blocked = np.zeros((n, P), bool)
    ped_walk = PedSignals(plan, roads, peds)
    rec = _empty_record(n, A, P)

    for step in range(N_STEPS // SUBSTEPS):
        frame = step * SUBSTEPS
        t = frame * DT
        x = np.clip(f.lc_tau / f.lc_T, 0.0, 1.0)
        rate = np.minimum(f.v / RATE_SPEED, 1.0)  # lateral progress slows with speed (no sliding)
        d_lat, slope = lateral(f.lc_d0, x, f.lc_T, f.v, veh.d_bias)
        sh_on = (x < 0.5) & f.active  # still half in the old lane
        rec.route[frame], rec.s[frame], rec.d[frame], rec.slope[frame] = f.route, f.s, d_lat, slope
        rec.v[frame], rec.active[frame] = f.v, f.active
        rec.ped_s[frame] = ps

        st, _ = signals.states(plan.green, plan.offset, t)
        grp = rc.group
        sig = np.where(grp >= 0, st.reshape(-1)[2 * np.arange(n)[:, None] + np.maximum(grp, 0)],
                       signals.GREEN)  # fmt: skip
        front = f.s + half
        lead = leaders(tables.links, f, half, sh_on)
        yield_obs = yield_obstacles(tables.links, lead.act_j, f, front, half, veh, rc, sig)
        ped_obs = crosswalk_obstacles(ped_on, ps, peds, tables.cw, f, front)
        obs, kind_obs = nearest_stop(f, t, front, sig, rc, veh, yield_obs, ped_obs)
        acc_cmd, v0e, bind = command(f, t, front, obs, kind_obs, lead, rc, veh)
        acc_new = np.clip(acc_cmd, f.acc - jerk_down, f.acc + jerk_up)
        both = slice(frame, frame + SUBSTEPS)
        rec.lead[both] = np.where(lead.has, lead.index, -1)
        rec.gap[both] = np.where(lead.has, lead.gap, 1e3)
        rec.bind[both], rec.acc[both] = bind, acc_new

        if step % LC_EVERY == 0 and step > 0:
            moved = _change_lanes(
                f, step, t, plan, roads, veh, tables, is_ego, acc_cmd, v0e, lc_T_draw,
                rec.lc_start[frame],
            )  # fmt: skip
            if moved.any():
                tables.reroute(roads, peds, f, np.nonzero(moved.any(1))[0])

        _integrate(f, acc_new, rate, lead, is_ego, rc, veh, rec, frame)
        if step % LC_EVERY == 0:  # right after lane changes, and positions move on
            tables.relink(f, half)

        if step % 2 == 0:  # walkers look around at 2.5 Hz
            ped_blocked = peds_blocked(peds, ps, tables.cw, front, f.v, veh.length, f.stop_s,
                                       f.active)  # fmt: skip
        ps_new, ped_on = step_peds(peds, ps, t, ped_walk(t), ped_blocked, p_end, SIM_DT)
        rec.ped_s[frame + 1] = 0.5 * (ps + ps_new)
        ps = ps_new
    return rec


def _change_lanes(f: Fleet, step, t, plan, roads, veh, tables: _Tables, is_ego, acc_cmd, v0e,
                  lc_T_draw, lc_start) -> np.ndarray:  # fmt: skip
    """MOBIL lane changes, one side at a time; records their starts in `lc_start` [N, A] and
    returns who moved. Discretionary changes alternate sides each decision; drivers who must change
    (the ego's scripted manoeuvre, the end of an acceleration lane) try their side every time."""
    f32 = np.float32
    rc = tables.rc
    n, A = f.s.shape
    forced_now = is_ego & (plan.force_dir[:, None] != 0) & (t >= plan.force_time[:, None])
    must = np.where(forced_now, plan.force_dir[:, None], 0)
    must = np.where(rc.s_dead < np.inf, 1, must)
    turn = (step // LC_EVERY) % 2
    moved = np.zeros((n, A), bool)
    for side in (turn, 1 - turn):
        tgt = rc.lc_tgt[..., side]
        x = np.clip(f.lc_tau / f.lc_T, 0.0, 1.0)
        elig = (
            f.active & veh.lc_ok & (tgt >= 0) & (x >= 1.0) & (t - f.lc_last > LC_COOLDOWN)
            & (f.v > LC_MIN_SPEED) & (f.s >= rc.lc_lo) & (f.s <= rc.lc_hi)
        )  # fmt: skip
        elig &= ~is_ego | rc.lc_same[..., side]
        own = must == (1 if side == 0 else -1)
        elig &= ((side == turn) & (must == 0)) | own
        if not elig.any():
            continue
        changed, sv = mobil(
            side, t, plan, roads, veh, tables.pairs, f.route, f.s, f.v, acc_cmd, v0e, f.active,
            elig, tgt,
        )  # fmt: skip
        f.seek_v = np.where(np.isfinite(sv), sv, f.seek_v)
        f.seek_until = np.where(np.isfinite(sv), t + 2 * LC_EVERY * SIM_DT, f.seek_until)
        if not changed.any():
            continue
        off = rc.lc_off[..., side].astype(f32)
        f.sh_route = np.where(changed, f.route, f.sh_route)
        f.sh_off = np.where(changed, off, f.sh_off)
        f.s = np.where(changed, f.s + off, f.s)
        sign = -1.0 if side == 0 else 1.0
        f.lc_d0 = np.where(changed, sign * rc.lc_sep[..., side], f.lc_d0).astype(f32)
        f.route = np.where(changed, tgt, f.route)
        f.lc_tau = np.where(changed, 0.0, f.lc_tau).astype(f32)
        f.lc_T = np.where(changed, lc_T_draw, f.lc_T).astype(f32)
        f.lc_last = np.where(changed, t, f.lc_last).astype(f32)
        lc_start[...] = np.where(changed, 1 if side == 0 else -1, lc_start)
        moved |= changed
    return moved


def _integrate(f: Fleet, acc_new, rate, lead: Leader, is_ego, rc: RouteCache, veh, rec: Record,
               frame: int) -> None:  # fmt: skip
    """Moves every vehicle one step at constant acceleration, recording the exact mid-step frame."""
    f32 = np.float32
    v = f.v
    t_stop = np.where(acc_new < 0, v / np.maximum(-acc_new, 1e-6), np.inf)
    tt = np.minimum(SIM_DT, t_stop)
    ds = v * tt + 0.5 * acc_new * tt * tt
    # Never drive into the leader (an NPC backstop; the ego relies on its ACC model alone).
    ds_lead = ds.reshape(-1)[lead.flat]
    room = np.where(lead.has, lead.gap + ds_lead - 0.3, np.inf)
    clamp = (ds > room) & ~is_ego & f.active
    ds = np.where(clamp, np.maximum(room, 0.0), ds)
    v_new = np.maximum(v + acc_new * SIM_DT, 0.0)
    v_new = np.where(clamp, np.minimum(v_new, v_new.reshape(-1)[lead.flat]), v_new)
    tm = np.minimum(DT, t_stop)
    ds_mid = np.minimum(v * tm + 0.5 * acc_new * tm * tm, ds)
    x_mid = np.clip((f.lc_tau + DT * rate) / f.lc_T, 0.0, 1.0)
    rec.route[frame + 1], rec.s[frame + 1] = f.route, f.s + ds_mid
    v_mid = np.maximum(v + acc_new * DT, 0.0)
    rec.d[frame + 1], rec.slope[frame + 1] = lateral(f.lc_d0, x_mid, f.lc_T, v_mid, veh.d_bias)
    rec.v[frame + 1] = v_mid
    rec.active[frame + 1] = f.active

    f.acc = ((v_new - v) / SIM_DT).astype(f32)
    f.v = v_new.astype(f32)
    f.s = (f.s + ds).astype(f32)
    f.lc_tau = (f.lc_tau + SIM_DT * rate).astype(f32)
    f.active = f.active & (f.s < rc.route_len - 2.0)
    f.active[:, 0] = True
