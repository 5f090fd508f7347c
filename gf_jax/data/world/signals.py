"""Two-phase traffic-light programs: phase A serves arms 0 and 2, phase B arms 1 and 3.

Cycle: A green, A yellow, all red, B green, B yellow, all red. A scenario's `offset` shifts the
cycle so that recipes can make the ego's light change at a chosen moment.
"""

from __future__ import annotations

import numpy as np

GREEN, YELLOW, RED = 0, 1, 2
YELLOW_S = 3.0
ALL_RED_S = 1.5


def cycle(green_Nx2: np.ndarray) -> np.ndarray:
    return green_Nx2.sum(1) + 2 * (YELLOW_S + ALL_RED_S)


def phase_start(green_Nx2: np.ndarray, group: int) -> np.ndarray:
    """Time within the cycle at which `group` turns green."""
    return np.zeros(len(green_Nx2)) if group == 0 else green_Nx2[:, 0] + YELLOW_S + ALL_RED_S


def states(green_Nx2: np.ndarray, offset_N: np.ndarray, t: float | np.ndarray):
    """Light state [N, 2] of both groups at time t, and the green time left [N, 2] (0 if not green)."""
    c = cycle(green_Nx2)
    tau = np.mod(np.asarray(t) + offset_N, c)[:, None]  # [N, 1]
    start = np.stack([phase_start(green_Nx2, 0), phase_start(green_Nx2, 1)], 1)
    into = tau - start
    into = np.where(into < 0, into + c[:, None], into)
    st = np.where(into < green_Nx2, GREEN, np.where(into < green_Nx2 + YELLOW_S, YELLOW, RED))
    left = np.where(st == GREEN, green_Nx2 - into, 0.0)
    return st, left


def offset_for_green_at(
    green_Nx2: np.ndarray, group: np.ndarray, t_green: np.ndarray
) -> np.ndarray:
    """Offsets that make `group` [N] turn green at time t_green [N]."""
    start = np.where(group == 0, phase_start(green_Nx2, 0), phase_start(green_Nx2, 1))
    return np.mod(start - t_green, cycle(green_Nx2))
