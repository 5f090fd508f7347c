"""Recipes: for each wanted scenario type, a layout and initial conditions likely to produce it.

A recipe only sets the stage (where the ego starts, when its light turns, what drives ahead of it,
who steps onto the crosswalk); the label is later read from what the simulation actually did.
Everything is drawn per scenario from its own stream (`Draws`), vectorised over the chunk.
Left-hand cities are simulated right-handed and mirrored afterwards, so a left turn there is a
right turn here (`sim_target`).
"""

from __future__ import annotations

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
    """Plans for scenarios with global `index`, wanted sim-frame `target` type and `city` [N]."""
    n = len(index)
    tg = target
    is_t = {t: tg == k for t, k in TYPE_INDEX.items()}
    left_hand = city_table("left_hand")[city].astype(bool)

    # ---- city geometry and traffic ---------------------------------------------------------------
    lane_w = d.uniform(city_table("lane_width")[city, 0], city_table("lane_width")[city, 1])
    med = city_table("median")[city]
    median = d.uniform(med[:, 0], med[:, 1])
    cw_w = d.uniform(3.0, 4.5)
    seg_len = np.maximum(city_table("segment_length")[city] * d.uniform(0.8, 1.25), 25.0)
    curved = d.bernoulli(city_table("curvature")[city, 0])
    kappa = np.where(curved, city_table("curvature")[city, 1] * d.uniform(0.25, 1.0), 0.0)
    kappa = kappa * np.where(d.bernoulli(0.5), 1.0, -1.0)
    skew = np.deg2rad(city_table("skew_deg")[city])[:, None] * d.uniform(-1.0, 1.0, (4,))
    limits = city_table("speed_limit")[city]
    main_limit = np.take_along_axis(limits, np.floor(d.uniform(0, 3)).astype(int)[:, None], 1)[:, 0]
    cross_limit = np.minimum(main_limit, d.uniform(11.2, 13.4))
    lat_acc = d.uniform(2.0, 3.0)
    main_lanes = 1 + d.choice(city_table("main_lanes")[city])
    cross_lanes = 1 + d.choice(city_table("cross_lanes")[city])
    green = d.uniform(city_table("green_s")[city, 0:1], city_table("green_s")[city, 1:2], (2,))
    cycle = signals.cycle(green)
    offset = d.uniform(0.0, cycle)
    cw_on = d.bernoulli(np.where(city == 0, 0.9, 0.75), (4,))
    density = d.uniform(0.7, 1.3)
    peds = city_table("pedestrians")[city] * d.uniform(0.4, 1.4)

    # ---- layout per recipe -----------------------------------------------------------------------
    u_kind = d.uniform()
    kind = np.full(n, STRAIGHT)

    def pick(mask, probs):
        c = np.cumsum(probs)
        k = np.minimum((u_kind[:, None] * c[-1] >= c[None, :]).sum(1), len(probs) - 1)
        return np.where(mask, np.array([STRAIGHT, CROSS, TEE, MERGE])[k], kind)

    kind = pick(is_t["following_lane_with_lead"], [0.55, 0.3, 0.05, 0.1])
    kind = pick(is_t["near_multiple_vehicles"], [0.45, 0.45, 0.0, 0.1])
    kind = pick(is_t["stationary_in_traffic"], [0.0, 1.0, 0.0, 0.0])
    kind = pick(is_t["stopping_with_lead"], [0.3, 0.7, 0.0, 0.0])
    kind = pick(
        is_t["starting_straight_traffic_light_intersection_traversal"], [0.0, 1.0, 0.0, 0.0]
    )
    kind = pick(is_t["starting_left_turn"] | is_t["starting_right_turn"], [0.0, 0.65, 0.35, 0.0])
    kind = pick(is_t["changing_lane"], [0.65, 0.15, 0.0, 0.2])
    kind = pick(is_t["high_magnitude_speed"], [0.8, 0.0, 0.0, 0.2])
    kind = pick(is_t["low_magnitude_speed"], [0.8, 0.2, 0.0, 0.0])
    kind = pick(is_t["behind_long_vehicle"], [0.6, 0.4, 0.0, 0.0])
    kind = pick(is_t["waiting_for_pedestrian_to_cross"], [0.5, 0.5, 0.0, 0.0])
    kind = pick(is_t["high_lateral_acceleration"], [0.0, 0.7, 0.3, 0.0])

    cw_on[:, 0] &= (kind != STRAIGHT) | (u_kind < 0.4)  # mid-block crosswalks are the exception
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

    need_two = is_t["changing_lane"] | is_t["near_multiple_vehicles"] | (kind == MERGE)
    main_lanes = np.where(need_two, np.maximum(main_lanes, 2), main_lanes)
    main_lanes = np.where(is_t["near_multiple_vehicles"] & d.bernoulli(0.5), 3, main_lanes)
    main_lanes = np.where(is_t["low_magnitude_speed"] & (kind == STRAIGHT), 1, main_lanes)
    lanes = np.stack([main_lanes, cross_lanes, main_lanes, cross_lanes], 1) * arms_on
    # A T whose through road is the cross axis: the ego's stem keeps the cross road's lanes.
    stem = tee & (missing == 2)
    lanes[stem, 0] = cross_lanes[stem]

    phi = np.array([np.pi, -np.pi / 2, 0.0, np.pi / 2]) + np.where(
        ((kind == CROSS) | (kind == TEE))[:, None], skew * np.array([0.0, 1.0, 0.3, 1.0]), 0.0
    )
    speed_limit = np.stack([main_limit, cross_limit, main_limit, cross_limit], 1)
    speed_limit[stem, 0] = cross_limit[stem]
    signalised = np.where(
        kind == CROSS, d.bernoulli(np.where(city == 0, 1.0, 0.9)), (kind == TEE) & d.bernoulli(0.3)
    )

    # ---- ego ---------------------------------------------------------------------------------------
    u_lane = d.uniform()
    ego_lane = np.minimum(np.floor(u_lane * lanes[:, 0]).astype(int), lanes[:, 0] - 1)
    ego_move = np.full(n, STRAIGHT_ON)
    ego_slot = np.floor(d.uniform(0, 3)).astype(int)
    v_lim0 = speed_limit[:, 0]
    ego_speed = v_lim0 * d.uniform(0.6, 0.95)
    ego_gap = ego_speed * d.uniform(1.5, 3.0) + d.uniform(5.0, 20.0)
    ego_v0 = d.uniform(0.95, 1.05)
    force_dir = np.zeros(n, int)
    force_time = np.full(n, np.inf)
    lead_kind = np.zeros(n, int)
    lead_v0 = d.uniform(0.8, 0.95)
    lead_stop_time = np.full(n, np.inf)
    queue_n = np.full(n, -1)
    ped_focus = np.zeros(n, int)
    ped_focus_time = np.zeros(n)
    ego_on_ramp = np.zeros(n, bool)

    # Signal timing helpers: green for the ego's phase (A) starting at t_g.
    def green_at(mask, t_g):
        return np.where(mask, signals.offset_for_green_at(green, np.zeros(n, int), t_g), offset)

    u1, u2, u3, u4 = d.uniform(), d.uniform(), d.uniform(), d.uniform()
    gA = green[:, 0]
    gB = green[:, 1]
    red_len = gB + 2 * (signals.YELLOW_S + signals.ALL_RED_S) - signals.YELLOW_S  # A not green

    # following_lane_with_lead: a slightly slower lead some tens of metres ahead, long green.
    m = is_t["following_lane_with_lead"] | is_t["behind_long_vehicle"]
    ego_slot = np.where(m, 1 + np.floor(2 * u1).astype(int), ego_slot)
    ego_gap = np.where(m, ego_speed * d.uniform(0.9, 1.6) + 3.0, ego_gap)
    lead_kind = np.where(is_t["following_lane_with_lead"], 3, lead_kind)
    lead_kind = np.where(is_t["behind_long_vehicle"], 1, lead_kind)
    queue_n = np.where(m, 0, queue_n)
    offset = green_at(m, -gA * u2 * 0.5)

    # stopping_with_lead: a red light (or a lead braking to a stop) ahead of a moving ego.
    m = is_t["stopping_with_lead"]
    r0 = -(red_len - 14.0) * u1
    offset = np.where(
        m & (kind == CROSS),
        signals.offset_for_green_at(green, np.zeros(n, int), r0 + red_len),
        offset,
    )
    signalised = np.where(m & (kind == CROSS), True, signalised)
    queue_n = np.where(m, 1 + np.floor(4 * u2).astype(int), queue_n)
    ego_slot = np.where(m & (kind == CROSS), queue_n, ego_slot)
    ego_speed = np.where(m, v_lim0 * d.uniform(0.55, 0.85), ego_speed)
    ego_gap = np.where(
        m & (kind == CROSS), ego_speed * (T_PRESENT - 1.0 + 1.5 * u3) + 12.0, ego_gap
    )
    ms = m & (kind == STRAIGHT)
    queue_n = np.where(ms, 0, queue_n)
    ego_slot = np.where(ms, 1, ego_slot)
    ego_gap = np.where(ms, ego_speed * 1.3 + 4.0, ego_gap)
    lead_kind = np.where(ms, 3, lead_kind)
    lead_v0 = np.where(ms, 0.9, lead_v0)
    lead_stop_time = np.where(ms, T_PRESENT - 0.5 + 3.0 * u4, lead_stop_time)

    # stationary_in_traffic: queued behind a long red, dense traffic.
    m = is_t["stationary_in_traffic"]
    r0 = -(red_len - 14.0) * u1
    offset = np.where(m, signals.offset_for_green_at(green, np.zeros(n, int), r0 + red_len), offset)
    signalised = np.where(m, True, signalised)
    ego_slot = np.where(m, 1 + np.floor(4 * u2).astype(int), ego_slot)
    queue_n = np.where(m, ego_slot + 1 + np.floor(3 * u3).astype(int), queue_n)
    ego_gap = np.where(m, d.uniform(2.2, 2.6), ego_gap)  # the ego's standstill gap
    ego_speed = np.where(m, 0.0, ego_speed)
    density = np.where(m, d.uniform(1.2, 1.6), density)

    # starting through a signalised junction: queued (or arriving) when the light turns green.
    m = is_t["starting_straight_traffic_light_intersection_traversal"]
    signalised = np.where(m, True, signalised)
    t_g = T_PRESENT + d.uniform(-1.5, 2.5)
    offset = green_at(m, t_g)
    queued = m & (u1 < 0.75)
    ego_slot = np.where(m, np.floor(3 * u2).astype(int), ego_slot)
    queue_n = np.where(queued, ego_slot + 1, np.where(m, 0, queue_n))
    ego_gap = np.where(queued, 1.5, np.where(m, ego_speed * (T_PRESENT + 1.0 + 2.0 * u3), ego_gap))

    # turns: the ego in the outer lane for its side, queued or arriving, light turning green.
    for name, move in (
        ("starting_left_turn", LEFT),
        ("starting_right_turn", RIGHT),
        ("high_lateral_acceleration", None),
    ):
        m = is_t[name]
        mv = np.where(u4 < 0.5, LEFT, RIGHT) if move is None else np.full(n, move)
        # a T-junction only has the turn its missing arm leaves
        mv = np.where(tee & (missing == 1), LEFT, np.where(tee & (missing == 3), RIGHT, mv))
        ego_move = np.where(m, mv, ego_move)
        lane = np.where(mv == LEFT, 0, lanes[:, 0] - 1)
        ego_lane = np.where(m, lane, ego_lane)
        if move is None:  # take the turn briskly, without stopping
            lat_acc = np.where(m, d.uniform(3.2, 4.0), lat_acc)
            t_g = T_PRESENT - gA * 0.5 * u1
            offset = green_at(m, t_g)
            ego_slot = np.where(m, 0, ego_slot)
            queue_n = np.where(m, 0, queue_n)
            ego_speed = np.where(m, v_lim0 * d.uniform(0.6, 0.9), ego_speed)
            ego_gap = np.where(m, ego_speed * (T_PRESENT + 0.5 + 2.0 * u2), ego_gap)
            density = np.where(m, d.uniform(0.4, 0.8), density)
            peds = np.where(m, peds * 0.3, peds)
        else:
            t_g = T_PRESENT + d.uniform(-4.0, 1.5)
            offset = green_at(m, t_g)
            queued = m & (u1 < 0.6)
            ego_slot = np.where(m, np.floor(2 * u2).astype(int), ego_slot)
            queue_n = np.where(queued, ego_slot + 1, np.where(m, 0, queue_n))
            ego_gap = np.where(
                queued, 1.5, np.where(m, ego_speed * (T_PRESENT + 0.5 * u3), ego_gap)
            )
            ped_focus = np.where(
                m & (mv == RIGHT) & (u3 < 0.25), 1 + np.floor(2 * u4).astype(int), ped_focus
            )
            ped_focus_time = np.where(m, T_PRESENT + d.uniform(-2.0, 2.0), ped_focus_time)

    # waiting for pedestrians: people step onto the crosswalk the ego is about to use.
    m = is_t["waiting_for_pedestrian_to_cross"]
    t_f = T_PRESENT + d.uniform(-2.5, 1.0)
    ped_focus = np.where(m, 1 + np.floor(3 * u1).astype(int), ped_focus)
    ped_focus_time = np.where(m, t_f, ped_focus_time)
    cw_on = np.where(m[:, None], True, cw_on)
    junction = m & (kind == CROSS)
    ego_move = np.where(junction, RIGHT, ego_move)
    ego_lane = np.where(junction, lanes[:, 0] - 1, ego_lane)
    offset = green_at(junction, t_f - d.uniform(3.0, 8.0))
    signalised = np.where(junction, True, signalised)
    ego_slot = np.where(m, 0, ego_slot)
    queue_n = np.where(m, 0, queue_n)
    ego_speed = np.where(m, np.minimum(v_lim0 * d.uniform(0.5, 0.8), 9.0), ego_speed)
    margin = np.where(junction, d.uniform(0.0, 15.0), d.uniform(12.0, 35.0))  # turning takes longer
    ego_v0 = np.where(m & ~junction, d.uniform(0.5, 0.7), ego_v0)  # approaching a zebra crossing
    ego_gap = np.where(m, ego_speed * t_f + margin, ego_gap)

    # changing lanes: the ego decides to move over (or must, from an on-ramp).
    m = is_t["changing_lane"]
    ego_on_ramp = m & (kind == MERGE)
    nl = lanes[:, 0]
    ego_lane = np.where(m, np.minimum(np.floor(u1 * nl).astype(int), nl - 1), ego_lane)
    fdir = np.where(ego_lane == 0, -1, np.where(ego_lane == nl - 1, 1, np.where(u2 < 0.5, 1, -1)))
    force_dir = np.where(m & ~ego_on_ramp, fdir, force_dir)
    force_time = np.where(m, T_PRESENT + d.uniform(-1.0, 2.0), force_time)
    acc_len = d.uniform(70.0, 120.0)
    ego_gap = np.where(m & (kind == CROSS), ego_speed * T_PRESENT + d.uniform(70.0, 110.0), ego_gap)
    ego_gap = np.where(ego_on_ramp, ego_speed * T_PRESENT + acc_len * d.uniform(0.4, 0.8), ego_gap)
    ego_slot = np.where(m & ((kind == CROSS) | ego_on_ramp), 0, ego_slot)
    density = np.where(m, d.uniform(0.5, 0.9), density)
    offset = green_at(m & (kind == CROSS), -gA * 0.5 * u3)

    # dense traffic around a moving ego
    m = is_t["near_multiple_vehicles"]
    density = np.where(m, d.uniform(2.0, 2.8), density)
    slow = d.uniform(0.4, 0.6)  # a congested arterial
    speed_limit = np.where(m[:, None], speed_limit * slow[:, None], speed_limit)
    ego_speed = np.where(m, ego_speed * slow, ego_speed)
    ego_lane = np.where(m & (nl == 3), 1, ego_lane)
    offset = green_at(m & (kind == CROSS), T_PRESENT - 1.0 - 2.0 * u3)
    ego_gap = np.where(m, ego_speed * d.uniform(1.0, 2.0) + 3.0, ego_gap)

    # speeds: a fast arterial with little traffic, or a crawl behind a slow vehicle
    m = is_t["high_magnitude_speed"]
    fast = np.maximum(limits.max(1), 16.5) * d.uniform(1.0, 1.12)
    speed_limit = np.where(m[:, None], fast[:, None], speed_limit)
    density = np.where(m, d.uniform(0.3, 0.6), density)
    ego_speed = np.where(m, fast * 0.95, ego_speed)
    ego_v0 = np.where(m, d.uniform(1.0, 1.08), ego_v0)
    ego_gap = np.where(m, fast * d.uniform(3.0, 5.0), ego_gap)
    ego_slot = np.where(m, 1, ego_slot)
    kappa = np.where(m, kappa * 0.3, kappa)
    m = is_t["low_magnitude_speed"]
    lead_kind = np.where(m, 2, lead_kind)
    lead_v0 = np.where(m, d.uniform(0.12, 0.22), lead_v0)
    ego_slot = np.where(m, 1, ego_slot)
    queue_n = np.where(m, 0, queue_n)
    ego_speed = np.where(m, d.uniform(1.5, 3.0), ego_speed)
    ego_gap = np.where(m, d.uniform(4.0, 9.0), ego_gap)
    offset = green_at(m & (kind == CROSS), T_PRESENT - 2.0)

    # Three-lane arms keep their inner lane for left turns.
    ego_lane = np.where(
        (ego_move == STRAIGHT_ON) & (lanes[:, 0] == 3) & ((kind == CROSS) | (kind == TEE)),
        np.maximum(ego_lane, 1),
        ego_lane,
    )
    ego_lane = np.clip(ego_lane, 0, np.maximum(lanes[:, 0] - 1, 0))
    return Plan(
        index=index, target=target, city=city, left_hand=left_hand, kind=kind, arms_on=arms_on,
        lanes=lanes, lane_w=lane_w, median=median, cw_w=cw_w, phi=phi, seg_len=seg_len,
        kappa=kappa, cw_on=cw_on, signalised=signalised.astype(bool), speed_limit=speed_limit,
        lat_acc=lat_acc, ramp_beta=d.uniform(0.12, 0.22), acc_x0=d.uniform(-70.0, -20.0),
        acc_len=acc_len, green=green, offset=offset, ego_lane=ego_lane,
        ego_move=ego_move, ego_on_ramp=ego_on_ramp, ego_slot=ego_slot, ego_gap=ego_gap,
        ego_speed=ego_speed, ego_v0=ego_v0, force_dir=force_dir, force_time=force_time,
        lead_kind=lead_kind, lead_v0=lead_v0,
        lead_stop_time=lead_stop_time, queue_n=queue_n, density=density, peds=peds,
        ped_focus=ped_focus, ped_focus_time=ped_focus_time,
    )  # fmt: skip
