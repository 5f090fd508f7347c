"""Recipes: for each wanted scenario type, a layout and initial conditions likely to produce it.

A recipe only sets the stage (where the ego starts, when its light turns, what drives ahead of it,
who steps onto the crosswalk); the label is later read from what the simulation actually did.
Everything is drawn per scenario from its own stream (`Draws`), vectorised over the chunk.
Left-hand cities are simulated right-handed and mirrored afterwards, so a left turn there is a
right turn here (`sim_target`).
"""

from __future__ import annotations

import types

import numpy as np

from gf_jax.data.world import signals
from gf_jax.data.world.cities import city_table
from gf_jax.data.world.draws import Draws
from gf_jax.data.world.plan import CROSS, LEFT, MERGE, RIGHT, STRAIGHT, STRAIGHT_ON, TEE, Plan
from gf_jax.data.world.traffic import DT, PRESENT_STEP

T_PRESENT = PRESENT_STEP * DT

SCENARIO_TYPES = (
    "following_lane_with_lead",
    "near_multiple_vehicles",
    "stationary_in_traffic",
    "stopping_with_lead",
    "starting_straight_traffic_light_intersection_traversal",
    "starting_left_turn",
    "starting_right_turn",
    "changing_lane",
    "high_magnitude_speed",
    "low_magnitude_speed",
    "behind_long_vehicle",
    "waiting_for_pedestrian_to_cross",
    "high_lateral_acceleration",
)
TYPE_INDEX = {t: k for k, t in enumerate(SCENARIO_TYPES)}


def sim_target(target: np.ndarray, left_hand: np.ndarray) -> np.ndarray:
    """The type to aim for in the right-handed simulation (turns swap in left-hand cities)."""
    lt, rt = TYPE_INDEX["starting_left_turn"], TYPE_INDEX["starting_right_turn"]
    swapped = np.where(target == lt, rt, np.where(target == rt, lt, target))
    return np.where(left_hand, swapped, target)


def make_plan(index: np.ndarray, target: np.ndarray, city: np.ndarray, d: Draws) -> Plan:
    """Plans for scenarios with global `index`, wanted sim-frame `target` type and `city` [N].

    The draws happen in a fixed order (city, layout, ego defaults, then each recipe in turn), so a
    scenario's plan depends only on its own stream."""
    is_t = {t: target == k for t, k in TYPE_INDEX.items()}
    p = _city(city, d)
    p.index, p.target, p.city = index, target, city
    p.left_hand = city_table("left_hand")[city].astype(bool)
    c = _layout(p, is_t, d)
    _ego_defaults(p, c, d)
    c.u1, c.u2, c.u3, c.u4 = d.uniform(), d.uniform(), d.uniform(), d.uniform()
    c.gA = p.green[:, 0]
    c.red_len = p.green[:, 1] + 2 * (signals.YELLOW_S + signals.ALL_RED_S) - signals.YELLOW_S
    for recipe in _RECIPES:
        recipe(p, c, d)
    # Three-lane arms keep their inner lane for left turns.
    junction = (p.kind == CROSS) | (p.kind == TEE)
    three = (p.ego_move == STRAIGHT_ON) & (p.lanes[:, 0] == 3) & junction
    p.ego_lane = np.where(three, np.maximum(p.ego_lane, 1), p.ego_lane)
    p.ego_lane = np.clip(p.ego_lane, 0, np.maximum(p.lanes[:, 0] - 1, 0))
    p.signalised = p.signalised.astype(bool)
    p.ramp_beta = d.uniform(0.12, 0.22)
    p.acc_x0 = d.uniform(-70.0, -20.0)
    return Plan(**vars(p))


def _city(city: np.ndarray, d: Draws) -> types.SimpleNamespace:
    """The city's geometry and traffic: lane widths, bending, speed limits, signal timing, ..."""
    p = types.SimpleNamespace()
    p.lane_w = d.uniform(city_table("lane_width")[city, 0], city_table("lane_width")[city, 1])
    med = city_table("median")[city]
    p.median = d.uniform(med[:, 0], med[:, 1])
    p.cw_w = d.uniform(3.0, 4.5)
    p.seg_len = np.maximum(city_table("segment_length")[city] * d.uniform(0.8, 1.25), 25.0)
    curved = d.bernoulli(city_table("curvature")[city, 0])
    kappa = np.where(curved, city_table("curvature")[city, 1] * d.uniform(0.25, 1.0), 0.0)
    p.kappa = kappa * np.where(d.bernoulli(0.5), 1.0, -1.0)
    p.skew = np.deg2rad(city_table("skew_deg")[city])[:, None] * d.uniform(-1.0, 1.0, (4,))
    p.limits = city_table("speed_limit")[city]
    pick = np.floor(d.uniform(0, 3)).astype(int)[:, None]
    p.main_limit = np.take_along_axis(p.limits, pick, 1)[:, 0]
    p.cross_limit = np.minimum(p.main_limit, d.uniform(11.2, 13.4))
    p.lat_acc = d.uniform(2.0, 3.0)
    p.main_lanes = 1 + d.choice(city_table("main_lanes")[city])
    p.cross_lanes = 1 + d.choice(city_table("cross_lanes")[city])
    p.green = d.uniform(city_table("green_s")[city, 0:1], city_table("green_s")[city, 1:2], (2,))
    p.offset = d.uniform(0.0, signals.cycle(p.green))
    p.cw_on = d.bernoulli(np.where(city == 0, 0.9, 0.75), (4,))
    p.density = d.uniform(0.7, 1.3)
    p.peds = city_table("pedestrians")[city] * d.uniform(0.4, 1.4)
    return p


# Each recipe's odds of (straight road, crossroads, T-junction, merge).
_KIND_ODDS = (
    ("following_lane_with_lead", (0.55, 0.3, 0.05, 0.1)),
    ("near_multiple_vehicles", (0.45, 0.45, 0.0, 0.1)),
    ("stationary_in_traffic", (0.0, 1.0, 0.0, 0.0)),
    ("stopping_with_lead", (0.3, 0.7, 0.0, 0.0)),
    ("starting_straight_traffic_light_intersection_traversal", (0.0, 1.0, 0.0, 0.0)),
    (("starting_left_turn", "starting_right_turn"), (0.0, 0.65, 0.35, 0.0)),
    ("changing_lane", (0.65, 0.15, 0.0, 0.2)),
    ("high_magnitude_speed", (0.8, 0.0, 0.0, 0.2)),
    ("low_magnitude_speed", (0.8, 0.2, 0.0, 0.0)),
    ("behind_long_vehicle", (0.6, 0.4, 0.0, 0.0)),
    ("waiting_for_pedestrian_to_cross", (0.5, 0.5, 0.0, 0.0)),
    ("high_lateral_acceleration", (0.0, 0.7, 0.3, 0.0)),
)


def _layout(p: types.SimpleNamespace, is_t: dict, d: Draws) -> types.SimpleNamespace:
    """The road layout each recipe needs (kind, arms, lanes, directions, limits, signals); returns
    the facts later recipes read (`is_t`, the T-junction's missing arm, the main limit)."""
    n = len(p.lane_w)
    u_kind = d.uniform()
    kind = np.full(n, STRAIGHT)
    for names, odds in _KIND_ODDS:
        mask = np.any([is_t[t] for t in np.atleast_1d(names)], axis=0)
        cum = np.cumsum(odds)
        k = np.minimum((u_kind[:, None] * cum[-1] >= cum[None, :]).sum(1), len(odds) - 1)
        kind = np.where(mask, np.array([STRAIGHT, CROSS, TEE, MERGE])[k], kind)
    p.kind = kind
    p.cw_on[:, 0] &= (kind != STRAIGHT) | (u_kind < 0.4)  # mid-block crosswalks are the exception
    arms_on = np.ones((n, 4), bool)
    arms_on[(kind == STRAIGHT) | (kind == MERGE)] = (True, False, True, False)
    # T-junctions: the missing arm is the right (1), opposite (2, the ego comes from the stem)
    # or left (3) one; turning recipes need their turn to exist.
    u_tee = d.uniform()
    missing = np.where(u_tee < 1 / 3, 1, np.where(u_tee < 2 / 3, 2, 3))
    missing = np.where(is_t["starting_left_turn"] & (missing == 3), 1, missing)
    missing = np.where(is_t["starting_right_turn"] & (missing == 1), 3, missing)
    tee = kind == TEE
    arms_on[tee, missing[tee]] = False
    p.arms_on = arms_on

    need_two = is_t["changing_lane"] | is_t["near_multiple_vehicles"] | (kind == MERGE)
    main_lanes = np.where(need_two, np.maximum(p.main_lanes, 2), p.main_lanes)
    main_lanes = np.where(is_t["near_multiple_vehicles"] & d.bernoulli(0.5), 3, main_lanes)
    main_lanes = np.where(is_t["low_magnitude_speed"] & (kind == STRAIGHT), 1, main_lanes)
    cross_lanes = p.cross_lanes
    p.lanes = np.stack([main_lanes, cross_lanes, main_lanes, cross_lanes], 1) * arms_on
    # A T whose through road is the cross axis: the ego's stem keeps the cross road's lanes.
    stem = tee & (missing == 2)
    p.lanes[stem, 0] = cross_lanes[stem]

    junction = ((kind == CROSS) | (kind == TEE))[:, None]
    p.phi = np.array([np.pi, -np.pi / 2, 0.0, np.pi / 2]) + np.where(
        junction, p.skew * np.array([0.0, 1.0, 0.3, 1.0]), 0.0
    )
    main_limit, cross_limit = p.main_limit, p.cross_limit
    p.speed_limit = np.stack([main_limit, cross_limit, main_limit, cross_limit], 1)
    p.speed_limit[stem, 0] = cross_limit[stem]
    signalised_cross = d.bernoulli(np.where(p.city == 0, 1.0, 0.9))
    p.signalised = np.where(kind == CROSS, signalised_cross, tee & d.bernoulli(0.3))
    limits = p.limits
    for name in ("skew", "limits", "main_limit", "cross_limit", "main_lanes", "cross_lanes"):
        delattr(p, name)
    return types.SimpleNamespace(n=n, is_t=is_t, tee=tee, missing=missing, limits=limits)


def _ego_defaults(p: types.SimpleNamespace, c: types.SimpleNamespace, d: Draws) -> None:
    """The ego and its lead as most recipes want them: a random lane going straight on at 60-95 %
    of the limit, a free gap ahead, no forced lane change, nothing scripted."""
    n = c.n
    u_lane = d.uniform()
    p.ego_lane = np.minimum(np.floor(u_lane * p.lanes[:, 0]).astype(int), p.lanes[:, 0] - 1)
    p.ego_move = np.full(n, STRAIGHT_ON)
    p.ego_slot = np.floor(d.uniform(0, 3)).astype(int)
    c.v_lim0 = p.speed_limit[:, 0]
    p.ego_speed = c.v_lim0 * d.uniform(0.6, 0.95)
    p.ego_gap = p.ego_speed * d.uniform(1.5, 3.0) + d.uniform(5.0, 20.0)
    p.ego_v0 = d.uniform(0.95, 1.05)
    p.force_dir = np.zeros(n, int)
    p.force_time = np.full(n, np.inf)
    p.lead_kind = np.zeros(n, int)
    p.lead_v0 = d.uniform(0.8, 0.95)
    p.lead_stop_time = np.full(n, np.inf)
    p.queue_n = np.full(n, -1)
    p.ped_focus = np.zeros(n, int)
    p.ped_focus_time = np.zeros(n)
    p.ego_on_ramp = np.zeros(n, bool)


def _green_at(p: types.SimpleNamespace, mask: np.ndarray, t_g) -> np.ndarray:
    """Signal offsets that turn the ego's phase (A) green at t_g where `mask`, else unchanged."""
    start = signals.offset_for_green_at(p.green, np.zeros(len(p.green), int), t_g)
    return np.where(mask, start, p.offset)


def _following(p, c, d: Draws) -> None:
    """following_lane_with_lead, behind_long_vehicle: a slightly slower lead some tens of metres
    ahead, long green."""
    m = c.is_t["following_lane_with_lead"] | c.is_t["behind_long_vehicle"]
    p.ego_slot = np.where(m, 1 + np.floor(2 * c.u1).astype(int), p.ego_slot)
    p.ego_gap = np.where(m, p.ego_speed * d.uniform(0.9, 1.6) + 3.0, p.ego_gap)
    p.lead_kind = np.where(c.is_t["following_lane_with_lead"], 3, p.lead_kind)
    p.lead_kind = np.where(c.is_t["behind_long_vehicle"], 1, p.lead_kind)
    p.queue_n = np.where(m, 0, p.queue_n)
    p.offset = _green_at(p, m, -c.gA * c.u2 * 0.5)


def _stopping(p, c, d: Draws) -> None:
    """stopping_with_lead: a red light (or a lead braking to a stop) ahead of a moving ego."""
    m, cross = c.is_t["stopping_with_lead"], p.kind == CROSS
    r0 = -(c.red_len - 14.0) * c.u1
    zeros = np.zeros(c.n, int)
    red_start = signals.offset_for_green_at(p.green, zeros, r0 + c.red_len)
    p.offset = np.where(m & cross, red_start, p.offset)
    p.signalised = np.where(m & cross, True, p.signalised)
    p.queue_n = np.where(m, 1 + np.floor(4 * c.u2).astype(int), p.queue_n)
    p.ego_slot = np.where(m & cross, p.queue_n, p.ego_slot)
    p.ego_speed = np.where(m, c.v_lim0 * d.uniform(0.55, 0.85), p.ego_speed)
    arrive = p.ego_speed * (T_PRESENT - 1.0 + 1.5 * c.u3) + 12.0
    p.ego_gap = np.where(m & cross, arrive, p.ego_gap)
    ms = m & (p.kind == STRAIGHT)
    p.queue_n = np.where(ms, 0, p.queue_n)
    p.ego_slot = np.where(ms, 1, p.ego_slot)
    p.ego_gap = np.where(ms, p.ego_speed * 1.3 + 4.0, p.ego_gap)
    p.lead_kind = np.where(ms, 3, p.lead_kind)
    p.lead_v0 = np.where(ms, 0.9, p.lead_v0)
    p.lead_stop_time = np.where(ms, T_PRESENT - 0.5 + 3.0 * c.u4, p.lead_stop_time)


def _stationary(p, c, d: Draws) -> None:
    """stationary_in_traffic: queued behind a long red, dense traffic."""
    m = c.is_t["stationary_in_traffic"]
    r0 = -(c.red_len - 14.0) * c.u1
    red_start = signals.offset_for_green_at(p.green, np.zeros(c.n, int), r0 + c.red_len)
    p.offset = np.where(m, red_start, p.offset)
    p.signalised = np.where(m, True, p.signalised)
    p.ego_slot = np.where(m, 1 + np.floor(4 * c.u2).astype(int), p.ego_slot)
    p.queue_n = np.where(m, p.ego_slot + 1 + np.floor(3 * c.u3).astype(int), p.queue_n)
    p.ego_gap = np.where(m, d.uniform(2.2, 2.6), p.ego_gap)  # the ego's standstill gap
    p.ego_speed = np.where(m, 0.0, p.ego_speed)
    p.density = np.where(m, d.uniform(1.2, 1.6), p.density)


def _starting_straight(p, c, d: Draws) -> None:
    """Starting through a signalised junction: queued (or arriving) when the light turns green."""
    m = c.is_t["starting_straight_traffic_light_intersection_traversal"]
    p.signalised = np.where(m, True, p.signalised)
    p.offset = _green_at(p, m, T_PRESENT + d.uniform(-1.5, 2.5))
    queued = m & (c.u1 < 0.75)
    p.ego_slot = np.where(m, np.floor(3 * c.u2).astype(int), p.ego_slot)
    p.queue_n = np.where(queued, p.ego_slot + 1, np.where(m, 0, p.queue_n))
    arrive = p.ego_speed * (T_PRESENT + 1.0 + 2.0 * c.u3)
    p.ego_gap = np.where(queued, 1.5, np.where(m, arrive, p.ego_gap))


def _turns(p, c, d: Draws) -> None:
    """Turns: the ego in the outer lane for its side, queued or arriving, light turning green;
    high lateral acceleration takes either turn briskly, without stopping."""
    for name, move in (
        ("starting_left_turn", LEFT),
        ("starting_right_turn", RIGHT),
        ("high_lateral_acceleration", None),
    ):
        m = c.is_t[name]
        mv = np.where(c.u4 < 0.5, LEFT, RIGHT) if move is None else np.full(c.n, move)
        # a T-junction only has the turn its missing arm leaves
        tee, missing = c.tee, c.missing
        mv = np.where(tee & (missing == 1), LEFT, np.where(tee & (missing == 3), RIGHT, mv))
        p.ego_move = np.where(m, mv, p.ego_move)
        p.ego_lane = np.where(m, np.where(mv == LEFT, 0, p.lanes[:, 0] - 1), p.ego_lane)
        if move is None:
            _brisk_turn(p, c, d, m)
        else:
            _waiting_turn(p, c, d, m, mv)


def _brisk_turn(p, c, d: Draws, m: np.ndarray) -> None:
    p.lat_acc = np.where(m, d.uniform(3.2, 4.0), p.lat_acc)
    p.offset = _green_at(p, m, T_PRESENT - c.gA * 0.5 * c.u1)
    p.ego_slot = np.where(m, 0, p.ego_slot)
    p.queue_n = np.where(m, 0, p.queue_n)
    p.ego_speed = np.where(m, c.v_lim0 * d.uniform(0.6, 0.9), p.ego_speed)
    p.ego_gap = np.where(m, p.ego_speed * (T_PRESENT + 0.5 + 2.0 * c.u2), p.ego_gap)
    p.density = np.where(m, d.uniform(0.4, 0.8), p.density)
    p.peds = np.where(m, p.peds * 0.3, p.peds)


def _waiting_turn(p, c, d: Draws, m: np.ndarray, mv: np.ndarray) -> None:
    p.offset = _green_at(p, m, T_PRESENT + d.uniform(-4.0, 1.5))
    queued = m & (c.u1 < 0.6)
    p.ego_slot = np.where(m, np.floor(2 * c.u2).astype(int), p.ego_slot)
    p.queue_n = np.where(queued, p.ego_slot + 1, np.where(m, 0, p.queue_n))
    arrive = p.ego_speed * (T_PRESENT + 0.5 * c.u3)
    p.ego_gap = np.where(queued, 1.5, np.where(m, arrive, p.ego_gap))
    focus = m & (mv == RIGHT) & (c.u3 < 0.25)
    p.ped_focus = np.where(focus, 1 + np.floor(2 * c.u4).astype(int), p.ped_focus)
    p.ped_focus_time = np.where(m, T_PRESENT + d.uniform(-2.0, 2.0), p.ped_focus_time)


def _pedestrians(p, c, d: Draws) -> None:
    """waiting_for_pedestrian_to_cross: people step onto the crosswalk the ego is about to use."""
    m = c.is_t["waiting_for_pedestrian_to_cross"]
    t_f = T_PRESENT + d.uniform(-2.5, 1.0)
    p.ped_focus = np.where(m, 1 + np.floor(3 * c.u1).astype(int), p.ped_focus)
    p.ped_focus_time = np.where(m, t_f, p.ped_focus_time)
    p.cw_on = np.where(m[:, None], True, p.cw_on)
    junction = m & (p.kind == CROSS)
    p.ego_move = np.where(junction, RIGHT, p.ego_move)
    p.ego_lane = np.where(junction, p.lanes[:, 0] - 1, p.ego_lane)
    p.offset = _green_at(p, junction, t_f - d.uniform(3.0, 8.0))
    p.signalised = np.where(junction, True, p.signalised)
    p.ego_slot = np.where(m, 0, p.ego_slot)
    p.queue_n = np.where(m, 0, p.queue_n)
    p.ego_speed = np.where(m, np.minimum(c.v_lim0 * d.uniform(0.5, 0.8), 9.0), p.ego_speed)
    margin = np.where(junction, d.uniform(0.0, 15.0), d.uniform(12.0, 35.0))  # turns take longer
    p.ego_v0 = np.where(m & ~junction, d.uniform(0.5, 0.7), p.ego_v0)  # towards a zebra crossing
    p.ego_gap = np.where(m, p.ego_speed * t_f + margin, p.ego_gap)


def _changing_lane(p, c, d: Draws) -> None:
    """changing_lane: the ego decides to move over (or must, from an on-ramp)."""
    m, cross = c.is_t["changing_lane"], p.kind == CROSS
    p.ego_on_ramp = m & (p.kind == MERGE)
    nl = p.lanes[:, 0]
    p.ego_lane = np.where(m, np.minimum(np.floor(c.u1 * nl).astype(int), nl - 1), p.ego_lane)
    inner, outer = p.ego_lane == 0, p.ego_lane == nl - 1
    fdir = np.where(inner, -1, np.where(outer, 1, np.where(c.u2 < 0.5, 1, -1)))
    p.force_dir = np.where(m & ~p.ego_on_ramp, fdir, p.force_dir)
    p.force_time = np.where(m, T_PRESENT + d.uniform(-1.0, 2.0), p.force_time)
    p.acc_len = d.uniform(70.0, 120.0)
    at_cross = p.ego_speed * T_PRESENT + d.uniform(70.0, 110.0)
    p.ego_gap = np.where(m & cross, at_cross, p.ego_gap)
    on_ramp = p.ego_speed * T_PRESENT + p.acc_len * d.uniform(0.4, 0.8)
    p.ego_gap = np.where(p.ego_on_ramp, on_ramp, p.ego_gap)
    p.ego_slot = np.where(m & (cross | p.ego_on_ramp), 0, p.ego_slot)
    p.density = np.where(m, d.uniform(0.5, 0.9), p.density)
    p.offset = _green_at(p, m & cross, -c.gA * 0.5 * c.u3)


def _dense(p, c, d: Draws) -> None:
    """near_multiple_vehicles: dense traffic around a moving ego on a congested arterial."""
    m = c.is_t["near_multiple_vehicles"]
    p.density = np.where(m, d.uniform(2.0, 2.8), p.density)
    slow = d.uniform(0.4, 0.6)
    p.speed_limit = np.where(m[:, None], p.speed_limit * slow[:, None], p.speed_limit)
    p.ego_speed = np.where(m, p.ego_speed * slow, p.ego_speed)
    p.ego_lane = np.where(m & (p.lanes[:, 0] == 3), 1, p.ego_lane)
    p.offset = _green_at(p, m & (p.kind == CROSS), T_PRESENT - 1.0 - 2.0 * c.u3)
    p.ego_gap = np.where(m, p.ego_speed * d.uniform(1.0, 2.0) + 3.0, p.ego_gap)


def _speed_extremes(p, c, d: Draws) -> None:
    """high_magnitude_speed: a fast arterial with little traffic; low_magnitude_speed: a crawl
    behind a slow vehicle."""
    m = c.is_t["high_magnitude_speed"]
    fast = np.maximum(c.limits.max(1), 16.5) * d.uniform(1.0, 1.12)
    p.speed_limit = np.where(m[:, None], fast[:, None], p.speed_limit)
    p.density = np.where(m, d.uniform(0.3, 0.6), p.density)
    p.ego_speed = np.where(m, fast * 0.95, p.ego_speed)
    p.ego_v0 = np.where(m, d.uniform(1.0, 1.08), p.ego_v0)
    p.ego_gap = np.where(m, fast * d.uniform(3.0, 5.0), p.ego_gap)
    p.ego_slot = np.where(m, 1, p.ego_slot)
    p.kappa = np.where(m, p.kappa * 0.3, p.kappa)
    m = c.is_t["low_magnitude_speed"]
    p.lead_kind = np.where(m, 2, p.lead_kind)
    p.lead_v0 = np.where(m, d.uniform(0.12, 0.22), p.lead_v0)
    p.ego_slot = np.where(m, 1, p.ego_slot)
    p.queue_n = np.where(m, 0, p.queue_n)
    p.ego_speed = np.where(m, d.uniform(1.5, 3.0), p.ego_speed)
    p.ego_gap = np.where(m, d.uniform(4.0, 9.0), p.ego_gap)
    p.offset = _green_at(p, m & (p.kind == CROSS), T_PRESENT - 2.0)


# In this order: each recipe draws from the scenario's stream, so the order is part of the world.
_RECIPES = (
    _following,
    _stopping,
    _stationary,
    _starting_straight,
    _turns,
    _pedestrians,
    _changing_lane,
    _dense,
    _speed_extremes,
)
