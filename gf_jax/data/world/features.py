"""From simulated states to the GameFormer feature layout (see `gf_jax.data.schema` and
research/nuplan_data.md section 5).

Poses come from the routes in the flat layout frame, then the roads are bent (city curvature),
left-hand cities mirrored, and everything expressed in the ego frame at the present (origin = ego
rear axle). Then the nuPlan / GameFormer recipe: the agents observed now within sensor range, the
nearest 20 first; past frames where an agent was not observed back-filled with its nearest later
state; the Savitzky-Golay yaw-rate quirk; futures zero where unobserved (out of sensor range, or
gone from the simulated roads). Map pieces with a vertex inside the 60 m square, nearest vertex
first, point headings from the step to the next point (the last repeats); the traffic-light one-hot
is green / yellow / red on the connectors of signalised junctions and unknown elsewhere (nuPlan's
encoder never emits yellow; we keep it). Crosswalks are closed rings; route lanes are the lanes of
the ego route's roadblocks in view, from the first in view up to the first gap.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data import schema
from gf_jax.data.world import signals
from gf_jax.data.world.geometry import (
    bend,
    bend_heading,
    index_resample,
    polyline_heading,
    polyline_pose,
    wrap_angle,
    yaw_rate,
)
from gf_jax.data.world.pedestrians import Peds
from gf_jax.data.world.plan import Plan
from gf_jax.data.world.population import (
    BICYCLE,
    EGO_REAR_AXLE_TO_CENTER,
    Vehicles,
)
from gf_jax.data.world.roads import Roads, pose
from gf_jax.data.world.traffic import DT, PRESENT_STEP, WARMUP_STEPS, Record

MAP_RADIUS = 60.0
FIRST, LAST = WARMUP_STEPS - 1, PRESENT_STEP + schema.FUTURE_STEPS + 1  # frames incl. margins
P = PRESENT_STEP - FIRST  # index of the present among the extracted frames
NOW = slice(1, P + 1)  # past frames (21) among the extracted ones
FUT = slice(P + 1, P + 1 + schema.FUTURE_STEPS)


def vehicle_poses(
    plan: Plan, roads: Roads, rec: Record, frames: slice, agents=slice(None), rows=None
):
    """World poses of vehicles: xy [..., F, 2] and heading [..., F] at the given steps, with the
    lateral offset and yaw of lane changes.

    `agents` is a slice (all scenarios, giving [N, K, F]) or indices; with `rows` (scenario indices
    of the same shape, e.g. [M]) the result is [M, F], else `agents` is [N, K] per scenario."""
    n = rec.s.shape[1]
    if isinstance(agents, slice):
        rows = np.arange(n)[:, None]
        get = lambda a: np.moveaxis(a[frames, :, agents], 0, -1)  # noqa: E731
    else:
        rows = np.arange(n)[:, None] if rows is None else rows
        get = lambda a: np.moveaxis(a[frames][:, rows, agents], 0, -1)  # noqa: E731
    route = get(rec.route).astype(np.int64)
    s = get(rec.s)
    r = rows.reshape(rows.shape + (1,) * (route.ndim - rows.ndim))
    xy, h = pose(roads, r, route, s.astype(np.float64))
    d, slope = get(rec.d), get(rec.slope)
    xy = xy + d[..., None] * np.stack([-np.sin(h), np.cos(h)], -1)
    h = h + np.arctan(slope)
    rk = rows.reshape(-1)
    return to_world(plan.kappa[rk], plan.left_hand[rk], xy, h)


def ped_poses(
    plan: Plan, peds: Peds, rec: Record, frames: slice, rows: np.ndarray, sel: np.ndarray
):
    """World poses of pedestrians sel (scenario indices `rows`, both [M]) along their paths:
    xy [M, F, 2], heading [M, F]."""
    ps = rec.ped_s[frames][:, rows, sel].T  # [M, F]
    xy, h = polyline_pose(peds.path[rows, sel], ps)
    return to_world(plan.kappa[rows], plan.left_hand[rows], xy, h)


class _EgoFrame:
    """The ego frame at the present: origin o [N, 2] (the ego's box centre) and heading oh [N]."""

    def __init__(self, o: np.ndarray, oh: np.ndarray):
        self.o, self.oh = o, oh
        self.c, self.s = np.cos(oh)[:, None], np.sin(oh)[:, None]

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """[N, ..., 2] world -> ego frame (broadcast over the middle axes)."""
        n = len(self.o)
        shp = (n,) + (1,) * (p.ndim - 2)
        dx = p[..., 0] - self.o[:, 0].reshape(shp)
        dy = p[..., 1] - self.o[:, 1].reshape(shp)
        cc, ss = self.c.reshape(shp), self.s.reshape(shp)
        return np.stack([cc * dx + ss * dy, -ss * dx + cc * dy], -1)


def _rot(vec: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Rotates vectors by -ang (into a frame with heading ang)."""
    ca, sa = np.cos(ang), np.sin(ang)
    return np.stack([ca * vec[..., 0] + sa * vec[..., 1], -sa * vec[..., 0] + ca * vec[..., 1]], -1)


def build(plan: Plan, roads: Roads, veh: Vehicles, peds: Peds, rec: Record, sensor_range: float):
    """The seven GameFormer arrays for a chunk, float32 with a leading N axis."""
    frames = slice(FIRST, LAST + 1)
    # Ego rear axle, and the ego frame at the present.
    ego_xy, ego_h = vehicle_poses(plan, roads, rec, frames, slice(0, 1))
    e_h = ego_h[:, 0]
    e_xy = ego_xy[:, 0] - EGO_REAR_AXLE_TO_CENTER * np.stack([np.cos(e_h), np.sin(e_h)], -1)
    to_ego = _EgoFrame(e_xy[:, P], e_h[:, P])
    out = _ego_arrays(e_xy, e_h, to_ego)
    real, is_ped, vsel, psel = _nearest_neighbours(plan, roads, veh, peds, rec, to_ego.o,
                                                   sensor_range)  # fmt: skip
    nxy, nh, act = _neighbour_tracks(plan, roads, peds, rec, frames, real, is_ped, vsel, psel)
    nseen = act & (np.sqrt(((nxy - e_xy[:, None]) ** 2).sum(-1)) <= sensor_range)
    out["neighbor_agents_past"] = _neighbour_past(
        nxy, nh, nseen, real, is_ped, vsel, psel, veh, peds, to_ego
    )
    fut = np.concatenate(
        [to_ego(nxy[:, :, FUT]), wrap_angle(nh[:, :, FUT] - to_ego.oh[:, None, None])[..., None]],
        -1,
    )
    fut_ok = nseen[:, :, FUT] & real[:, :, None]
    out["neighbor_agents_future"] = fut * fut_ok[..., None]
    st, _ = signals.states(plan.green, plan.offset, PRESENT_STEP * DT)
    out.update(_map(plan, roads, to_ego.o, to_ego, st))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _ego_arrays(e_xy: np.ndarray, e_h: np.ndarray, to_ego: _EgoFrame) -> dict[str, np.ndarray]:
    """The ego's past (pose, velocity, acceleration in its own heading; the present's pose is the
    origin) and future (pose), from its box-centre track e_xy [N, T, 2] and heading e_h [N, T]."""
    ep = to_ego(e_xy)
    eh = wrap_angle(e_h - to_ego.oh[:, None])
    vel = np.gradient(e_xy, DT, axis=1)
    acc = np.gradient(vel, DT, axis=1)
    ego_past = np.concatenate(
        [ep[:, NOW], eh[:, NOW, None], _rot(vel, e_h)[:, NOW], _rot(acc, e_h)[:, NOW]], -1
    )
    ego_past[:, -1, :3] = 0.0
    return {
        "ego_agent_past": ego_past,
        "ego_agent_future": np.concatenate([ep[:, FUT], eh[:, FUT, None]], -1),
    }


def _nearest_neighbours(plan, roads, veh: Vehicles, peds: Peds, rec: Record, o, sensor_range):
    """The NUM_NEIGHBORS agents nearest the ego and observed now: whether each slot is real
    [N, K], whether it is a pedestrian, and its vehicle / pedestrian index."""
    n, A = veh.s.shape
    now = slice(PRESENT_STEP, PRESENT_STEP + 1)
    n_peds = peds.s.shape[1]
    v_now, _ = vehicle_poses(plan, roads, rec, now)
    p_rows, p_sel = np.repeat(np.arange(n), n_peds), np.tile(np.arange(n_peds), n)
    p_now, _ = ped_poses(plan, peds, rec, now, p_rows, p_sel)
    p_now = p_now.reshape(n, n_peds, 1, 2)
    xy_now = np.concatenate([v_now[:, 1:, 0], p_now[:, :, 0]], 1)  # others: vehicles 1.., then peds
    ok_now = np.concatenate([rec.active[PRESENT_STEP, :, 1:], peds.ok], 1)
    d_now = np.sqrt(((xy_now - o[:, None]) ** 2).sum(-1))
    present = ok_now & (d_now <= sensor_range)
    nearest = np.argsort(np.where(present, d_now, np.inf), axis=1, kind="stable")
    order = nearest[:, : schema.NUM_NEIGHBORS]
    real = np.take_along_axis(present, order, 1)  # [N, 20]
    is_ped = order >= A - 1
    vsel = np.where(is_ped, 1, order + 1)
    psel = np.where(is_ped, order - (A - 1), 0)
    return real, is_ped, vsel, psel


def _neighbour_tracks(plan, roads, peds: Peds, rec: Record, frames, real, is_ped, vsel, psel):
    """Tracks of the selected agents only (vehicles along their routes, pedestrians on their
    paths): positions [N, K, T, 2], headings and whether each is active."""
    n, k = real.shape
    n_fr = frames.stop - frames.start
    nxy = np.zeros((n, k, n_fr, 2))
    nh = np.zeros((n, k, n_fr))
    act = np.zeros((n, k, n_fr), bool)
    vn, vk = np.nonzero(~is_ped & real)
    if len(vn):
        nxy[vn, vk], nh[vn, vk] = vehicle_poses(plan, roads, rec, frames, vsel[vn, vk], rows=vn)
        act[vn, vk] = rec.active[frames][:, vn, vsel[vn, vk]].T
    pn, pk = np.nonzero(is_ped & real)
    if len(pn):
        nxy[pn, pk], nh[pn, pk] = ped_poses(plan, peds, rec, frames, pn, psel[pn, pk])
        act[pn, pk] = peds.ok[pn, psel[pn, pk]][:, None]
    return nxy, nh, act


def _neighbour_past(nxy, nh, nseen, real, is_ped, vsel, psel, veh: Vehicles, peds: Peds, to_ego):
    """The neighbours' past features [N, K, NOW, 11]: pose, velocity and yaw rate in the ego
    frame, size and class; frames without an observation repeat the nearest later observed one."""
    A = veh.s.shape[1]
    gi = np.arange(len(real))[:, None]
    nvel = np.gradient(nxy, DT, axis=2)
    past_seen = nseen[:, :, NOW]
    t_idx = np.arange(past_seen.shape[-1])
    later = np.where(past_seen, t_idx, past_seen.shape[-1] - 1)
    fill = np.minimum.accumulate(later[..., ::-1], axis=-1)[..., ::-1] + NOW.start  # [N, 20, 21]
    g = lambda a: np.take_along_axis(a, fill.reshape(fill.shape + (1,) * (a.ndim - 3)), 2)  # noqa: E731
    pxy, ph, pvel = to_ego(g(nxy)), g(nh), g(nvel)
    ph_rel = wrap_angle(ph - to_ego.oh[:, None, None])
    pv = _rot(pvel, to_ego.oh[:, None, None])
    yaw = yaw_rate(ph, DT)
    vi = np.clip(vsel, 0, A - 1)
    nl = np.where(is_ped, peds.size[gi, psel], veh.length[gi, vi])
    nw = np.where(is_ped, peds.size[gi, psel], veh.width[gi, vi])
    ncls = np.where(is_ped, 1, np.where(veh.kind[gi, vi] == BICYCLE, 2, 0))
    onehot = np.eye(3)[ncls]  # [N, 20, 3]
    shape = ph.shape
    feats = np.concatenate(
        [pxy, ph_rel[..., None], pv, yaw[..., None], np.broadcast_to(nl[:, :, None, None], (*shape, 1)),
         np.broadcast_to(nw[:, :, None, None], (*shape, 1)), np.broadcast_to(onehot[:, :, None, :], (*shape, 3))],
        -1,
    )  # fmt: skip
    return feats * real[:, :, None, None]


def to_world(kappa: np.ndarray, left_hand: np.ndarray, xy, h=None):
    """Flat layout points [R, ..., 2] (and headings [R, ...]) of rows with curvature kappa [R] and
    handedness left_hand [R] -> world: bent (only rows on curved roads), then mirrored for
    left-hand cities."""
    xy = np.array(xy, dtype=float)
    h = None if h is None else np.array(h, dtype=float)
    curved = np.nonzero(kappa != 0)[0]
    if len(curved):
        k = kappa[curved].reshape((-1,) + (1,) * (xy.ndim - 2))
        flat_xy = xy[curved]
        if h is not None:
            h[curved] = bend_heading(h[curved], flat_xy, k)
        xy[curved] = bend(flat_xy, k)
    mirror = np.nonzero(left_hand)[0]
    if len(mirror):
        xy[mirror, ..., 1] *= -1
        if h is not None:
            h[mirror] *= -1
    return xy if h is None else (xy, h)


def _nearest(pts, ok, origin, k):
    """Polylines [N, L, P, 2] (world) with a vertex in the square around origin [N, 2], sorted by
    their nearest vertex, the first k: (indices [N, k], valid [N, k], in-square [N, L])."""
    d = (pts - origin[:, None, None, :]).astype(np.float32)
    dx, dy = d[..., 0], d[..., 1]
    in_sq = ok & ((np.abs(dx) <= MAP_RADIUS) & (np.abs(dy) <= MAP_RADIUS)).any(-1)
    dmin = np.where(in_sq, (dx * dx + dy * dy).min(-1), np.inf)
    order = np.argsort(dmin, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(in_sq, order, 1)
    if order.shape[1] < k:
        pad = k - order.shape[1]
        order = np.pad(order, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
    return order, valid, in_sq


def _rows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """arr[n, idx[n, k]] for arr [N, L, ...] and idx [N, K] (a flat gather, faster than
    take_along_axis for trailing axes)."""
    n, ln = arr.shape[:2]
    return arr.reshape(n * ln, *arr.shape[2:])[idx + np.arange(n)[:, None] * ln]


def _polylines(pts_world, order, valid, to_ego, points, extra=None):
    """The selected polylines resampled to `points` points by vertex index (GameFormer's
    interpolation), in the ego frame, with point headings (and extra channels), zero where not
    valid."""
    sel = to_ego(index_resample(_rows(pts_world, order), points))
    head = polyline_heading(sel)[..., None]
    cols = [sel, head] + ([extra] if extra is not None else [])
    arr = np.concatenate([np.broadcast_to(c, (*sel.shape[:3], c.shape[-1])) for c in cols], -1)
    return arr * valid[:, :, None, None]


def _map(plan: Plan, roads: Roads, origin, to_ego, st):
    n = origin.shape[0]
    # Map pieces are stored as their raw vertices (as in nuPlan's map): the square test and the
    # nearest-vertex distance use them; the selected pieces are resampled to 50 points.
    pieces = to_world(plan.kappa, plan.left_hand, roads.map_xy)
    order, valid, in_sq = _nearest(pieces, roads.map_ok, origin, schema.NUM_LANES)
    grp = np.take_along_axis(roads.map_group, order, 1)
    state = np.take_along_axis(st, np.maximum(grp, 0), 1)
    code = np.where(grp >= 0, state, 3)  # GREEN 0, YELLOW 1, RED 2, unknown 3
    tl = np.eye(4)[code][:, :, None, :]  # [N, 40, 1, 4]
    tl = np.broadcast_to(tl, (n, schema.NUM_LANES, schema.LANE_POINTS, 4))
    lanes = _polylines(pieces, order, valid, to_ego, schema.LANE_POINTS, tl)

    rings = to_world(plan.kappa, plan.left_hand, roads.cw_ring)
    c_order, c_valid, _ = _nearest(rings, roads.cw_ok, origin, schema.NUM_CROSSWALKS)
    crosswalks = _polylines(rings, c_order, c_valid, to_ego, schema.CROSSWALK_POINTS)

    # Route: the ego route's roadblocks in driving order, from the first one in view up to the
    # first one out of view; their lanes, nearest first.
    rbs = roads.ego_rbs  # [N, B]
    match = (roads.map_rb[:, None, :] == rbs[:, :, None]) & (rbs[:, :, None] >= 0)  # [N, B, L]
    rb_in = (match & in_sq[:, None, :]).any(-1)
    first = np.argmax(rb_in, 1)
    after = np.arange(rbs.shape[1])[None] >= first[:, None]
    gap = after & ~rb_in
    stop = np.where(gap.any(1), np.argmax(gap, 1), rbs.shape[1])
    keep_rb = rb_in & after & (np.arange(rbs.shape[1])[None] < stop[:, None])
    on_route = (match & keep_rb[:, :, None]).any(1) & in_sq  # [N, L]
    r_order, r_valid, _ = _nearest(pieces, on_route, origin, schema.NUM_ROUTE_LANES)
    route_lanes = _polylines(pieces, r_order, r_valid, to_ego, schema.ROUTE_POINTS)
    return {"lanes": lanes, "crosswalks": crosswalks, "route_lanes": route_lanes}
