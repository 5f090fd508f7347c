"""Scenario types read from what the simulation did (nuPlan's names, right-handed sim frame).

Each type is a test on the ego's own motion and surroundings around the present (t = 0) and over
the 8 s future:
- changing_lane: the ego starts a lane change (or merges from an on-ramp) within [-1 s, 6 s];
- starting_left_turn / starting_right_turn / starting_straight_traffic_light_intersection_traversal:
  the ego crosses its stop line within [-0.5 s, 7.5 s] on a left / right / straight route (straight:
  through a signalised junction);
- stopping_with_lead: moving now, stops (< 0.3 m/s) in the future behind a vehicle < 12 m ahead;
- stationary_in_traffic: stands (< 0.5 m/s) for 90 % of the future with 3+ vehicles within 25 m;
- waiting_for_pedestrian_to_cross: held back by a pedestrian on a crosswalk for 0.5 s or more,
  slower than 3 m/s meanwhile;
- behind_long_vehicle: right behind (< 30 m) a vehicle of 8 m or more, now and for most of 4 s;
- following_lane_with_lead: a leader < 35 m ahead and moving (> 3 m/s) 80 % of 6 s, no lane change;
- near_multiple_vehicles: 6+ vehicles within 20 m now while moving;
- high_magnitude_speed: mean future speed of 15 m/s or more; low_magnitude_speed: between 0.5 and
  3.5 m/s, never above 5 m/s, standing less than 40 % of the time;
- high_lateral_acceleration: |v * yaw rate| reaches 2.5 m/s^2.
A scenario gets the type its recipe aimed for if that test holds; the generator re-simulates the
others with fresh draws, and what still fails keeps the most specific type that holds
(`PRIORITY`), or `FALLBACK` when none does.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world.driving import BIND_LEAD, BIND_PED
from gf_jax.data.world.features import FIRST, FUT, LAST, vehicle_poses
from gf_jax.data.world.plan import LEFT, RIGHT, STRAIGHT_ON, Plan
from gf_jax.data.world.population import CAR
from gf_jax.data.world.recipes import SCENARIO_TYPES, TYPE_INDEX
from gf_jax.data.world.roads import Roads
from gf_jax.data.world.traffic import DT, PRESENT_STEP, Record

PRIORITY = (
    "waiting_for_pedestrian_to_cross",
    "changing_lane",
    "starting_left_turn",
    "starting_right_turn",
    "starting_straight_traffic_light_intersection_traversal",
    "stopping_with_lead",
    "stationary_in_traffic",
    "behind_long_vehicle",
    "high_lateral_acceleration",
    "high_magnitude_speed",
    "low_magnitude_speed",
    "near_multiple_vehicles",
    "following_lane_with_lead",
)
FALLBACK = "following_lane_without_lead"  # a nuPlan type outside GameFormer's 14
HIGH_SPEED = 15.0
LOW_SPEED = (0.5, 3.5)
HIGH_LAT_ACC = 2.5
NEAR_RADIUS, NEAR_COUNT = 20.0, 6
LONG_VEHICLE = 8.0


def conditions(
    plan: Plan, roads: Roads, rec: Record, veh_length: np.ndarray, veh_kind: np.ndarray
) -> np.ndarray:
    """[N, len(SCENARIO_TYPES)] which types hold for each scenario (sim frame turn directions)."""
    ego_xy, ego_h = vehicle_poses(plan, roads, rec, slice(FIRST, LAST + 1), slice(0, 1))
    ego_xy, ego_h = ego_xy[:, 0], ego_h[:, 0]
    now_xy, _ = vehicle_poses(plan, roads, rec, slice(PRESENT_STEP, PRESENT_STEP + 1))
    n = rec.s.shape[1]
    ar = np.arange(n)
    st = PRESENT_STEP
    fut = slice(st, st + 81)
    v = rec.v[:, :, 0].T  # [N, T]
    vf = v[:, fut]
    route = rec.route[:, :, 0].T.astype(int)
    s = rec.s[:, :, 0].T
    front = s + veh_length[:, :1] / 2
    move = roads.move[ar[:, None], route]
    s_stop = roads.s_stop[ar[:, None], route]
    group = roads.group[ar[:, None], route]
    bind = rec.bind[:, :, 0].T
    lead = rec.lead[:, :, 0].T.astype(int)
    gap = rec.gap[:, :, 0].T
    lc = rec.lc_start[:, :, 0].T

    out = np.zeros((n, len(SCENARIO_TYPES)), bool)
    put = lambda name, val: out.__setitem__((slice(None), TYPE_INDEX[name]), val)  # noqa: E731

    # Ego heading rate in the world (bent) frame, mirrored or not the magnitude is the same.
    h = np.unwrap(ego_h, axis=1)  # frames FIRST..LAST
    yaw = np.gradient(h, DT, axis=1)
    speed = np.linalg.norm(np.gradient(ego_xy, DT, axis=1), axis=-1)
    lat = np.abs(speed * yaw)[:, FUT]
    lat = (lat[:, :-2] + lat[:, 1:-1] + lat[:, 2:]) / 3

    changed = (lc[:, st - 10 : st + 61] != 0).any(1)
    put("changing_lane", changed)
    crossing = (front[:, st - 5 : st + 76] > s_stop[:, st - 5 : st + 76]).any(1) & (
        front[:, st - 5] <= s_stop[:, st - 5] + 0.5
    )
    crossing &= np.isfinite(s_stop[:, st])
    mv = move[:, st]
    put("starting_left_turn", crossing & (mv == LEFT))
    put("starting_right_turn", crossing & (mv == RIGHT))
    put(
        "starting_straight_traffic_light_intersection_traversal",
        crossing & (mv == STRAIGHT_ON) & (group[:, st] >= 0),
    )

    stopped_at = np.argmax(vf < 0.3, axis=1)
    stops = (vf < 0.3).any(1) & (v[:, st] > 3.0)
    k = st + stopped_at
    put("stopping_with_lead", stops & (bind[ar, k] == BIND_LEAD) & (gap[ar, k] < 12.0))

    # Other vehicles near the ego now (pedestrians excluded).
    d_now = np.linalg.norm(now_xy[:, 1:, 0] - now_xy[:, :1, 0], axis=-1)
    vehicle = (veh_kind[:, 1:] == CAR) & rec.active[PRESENT_STEP, :, 1:]
    around = (vehicle & (d_now < 25.0)).sum(1)
    near = (vehicle & (d_now < NEAR_RADIUS)).sum(1)
    put("stationary_in_traffic", ((vf < 0.5).mean(1) > 0.9) & (around >= 3))

    ped_bind = bind[:, st - 10 : st + 61] == BIND_PED
    put(
        "waiting_for_pedestrian_to_cross",
        (ped_bind.sum(1) >= 5) & (np.where(ped_bind, v[:, st - 10 : st + 61], np.inf).min(1) < 3.0),
    )

    lead_f = lead[:, st : st + 41]
    lead_len = np.take_along_axis(veh_length, np.maximum(lead_f, 0), 1)
    behind_long = (lead_f >= 0) & (lead_len >= LONG_VEHICLE) & (gap[:, st : st + 41] < 30.0)
    put("behind_long_vehicle", behind_long[:, 0] & (behind_long.mean(1) > 0.6))
    following = (lead[:, st : st + 61] >= 0) & (gap[:, st : st + 61] < 35.0)
    moving = v[:, st : st + 61] > 3.0
    put("following_lane_with_lead", (following.mean(1) > 0.8) & (moving.mean(1) > 0.8) & ~changed)
    put("near_multiple_vehicles", (near >= NEAR_COUNT) & (v[:, st] > 1.0))
    mean_v = vf.mean(1)
    put("high_magnitude_speed", mean_v >= HIGH_SPEED)
    put(
        "low_magnitude_speed",
        (mean_v >= LOW_SPEED[0])
        & (mean_v <= LOW_SPEED[1])
        & (vf.max(1) < 5.0)
        & ((vf < 0.3).mean(1) < 0.4),
    )
    put("high_lateral_acceleration", lat.max(1) >= HIGH_LAT_ACC)
    return out


def choose(cond: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label index, or -1 for FALLBACK [N]; whether it is the target [N])."""
    hit = cond[np.arange(len(target)), target]
    pri = np.array([TYPE_INDEX[t] for t in PRIORITY])
    ordered = cond[:, pri]
    best = np.where(ordered.any(1), pri[np.argmax(ordered, 1)], -1)
    return np.where(hit, target, best), hit


def names(label: np.ndarray, left_hand: np.ndarray) -> np.ndarray:
    """Label indices (sim frame) -> type names in the city's own handedness."""
    lt, rt = TYPE_INDEX["starting_left_turn"], TYPE_INDEX["starting_right_turn"]
    lab = np.where(left_hand & (label == lt), rt, np.where(left_hand & (label == rt), lt, label))
    table = np.array([*SCENARIO_TYPES, FALLBACK])
    return table[np.where(lab < 0, len(SCENARIO_TYPES), lab)]
