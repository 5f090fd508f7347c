"""Batched polyline geometry: Bezier connectors, arc-length resampling, headings, road bending."""

from __future__ import annotations

import numpy as np


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to (-pi, pi]."""
    return a - 2 * np.pi * np.ceil((a - np.pi) / (2 * np.pi))


def unit(angle: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 2] of angles [...]."""
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def left_normal(angle: np.ndarray) -> np.ndarray:
    return np.stack([-np.sin(angle), np.cos(angle)], axis=-1)


def bezier(p0, p1, p2, p3, t_P: np.ndarray) -> np.ndarray:
    """Cubic Bezier points [..., P, 2] for control points [..., 2] at parameters [P]."""
    t = t_P[:, None]
    u = 1 - t
    out = (u * u * u) * p0[..., None, :]
    out += (3 * u * u * t) * p1[..., None, :]
    out += (3 * u * t * t) * p2[..., None, :]
    out += (t * t * t) * p3[..., None, :]
    return out


def turn_controls(p0, d0, p3, d3):
    """Inner control points of a cubic joining p0 (leaving along d0) to p3 (arriving along d3).

    Turns use the tangent lines' intersection (0.55 of the way, close to a circular arc); nearly
    parallel tangents (straight or lane-shift connectors) use a third of the chord.
    """
    chord = p3 - p0
    dist = np.linalg.norm(chord, axis=-1, keepdims=True)
    cross = d0[..., 0] * d3[..., 1] - d0[..., 1] * d3[..., 0]
    # p0 + a d0 = p3 - b d3  ->  solve for a, b with Cramer's rule.
    den = np.where(np.abs(cross) < 1e-6, 1.0, cross)
    a = (chord[..., 0] * d3[..., 1] - chord[..., 1] * d3[..., 0]) / den
    b = (d0[..., 0] * chord[..., 1] - d0[..., 1] * chord[..., 0]) / den
    turn = (np.abs(cross) > 0.2) & (a > 0) & (b > 0)
    k0 = np.where(turn, 0.55 * a, dist[..., 0] / 3)[..., None]
    k3 = np.where(turn, 0.55 * b, dist[..., 0] / 3)[..., None]
    return p0 + k0 * d0, p3 - k3 * d3


def cumulative_length(xy: np.ndarray) -> np.ndarray:
    """Arc length at each vertex [..., P] of polylines [..., P, 2] (0 at the first)."""
    seg = np.linalg.norm(np.diff(xy, axis=-2), axis=-1)
    return np.concatenate([np.zeros((*seg.shape[:-1], 1)), np.cumsum(seg, axis=-1)], axis=-1)


def resample_at(xy_LxPx2: np.ndarray, s_LxPs: np.ndarray) -> np.ndarray:
    """Points at arc lengths s [L, Ps] (Ps: the sampled points) along polylines [L, P, 2+]; beyond
    the ends it extrapolates along the first/last segment. Channels after x, y (e.g. a curve
    parameter) are interpolated alike. One flattened searchsorted for the whole batch."""
    n_lines, n_points, _ = xy_LxPx2.shape
    c = cumulative_length(xy_LxPx2[..., :2])  # [L, P]
    span = c[:, -1:] + np.abs(s_LxPs).max(initial=0.0) + 10.0
    offs = np.cumsum(np.concatenate([[0.0], (2 * span[:-1, 0] + 10.0)]))[:, None]
    flat_c = (c + offs).ravel()
    q = np.clip(s_LxPs, -span + 1e-3, span) + offs
    j = np.searchsorted(flat_c, q.ravel(), side="right").reshape(s_LxPs.shape) - 1
    row = np.arange(n_lines)[:, None] * n_points
    j = np.clip(j - row, 0, n_points - 2) + row  # flat index of the segment start
    c_flat = c.ravel()
    c0, c1 = c_flat[j], c_flat[j + 1]
    t = (s_LxPs - c0) / np.maximum(c1 - c0, 1e-9)
    pts = xy_LxPx2.reshape(n_lines * n_points, -1)
    p0, p1 = pts[j], pts[j + 1]
    return p0 + t[..., None] * (p1 - p0)


def polyline_pose(xy_LxPx2: np.ndarray, s_LxPs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points [L, Ps, 2] at arc lengths s [L, Ps] along polylines [L, P, 2] (clamped to the ends)
    and the heading of the segment each lies on [L, Ps]."""
    n_lines, n_points, _ = xy_LxPx2.shape
    c = cumulative_length(xy_LxPx2)
    s = np.clip(s_LxPs, 0.0, c[:, -1:])
    j = (c[:, None, 1:-1] <= s[..., None]).sum(-1)  # segment index [L, Ps]
    row = np.arange(n_lines)[:, None] * n_points
    pts = xy_LxPx2.reshape(n_lines * n_points, 2)
    p0, p1 = pts[row + j], pts[row + j + 1]
    c0, c1 = c.ravel()[row + j], c.ravel()[row + j + 1]
    t = (s - c0) / np.maximum(c1 - c0, 1e-9)
    seg = p1 - p0
    return p0 + t[..., None] * seg, np.arctan2(seg[..., 1], seg[..., 0])


def index_resample(xy: np.ndarray, points: int) -> np.ndarray:
    """Linear interpolation in vertex-index space to `points` points, ends kept (GameFormer's
    `interpolate(mode='linear', align_corners=True)`)."""
    k = xy.shape[-2]
    pos = np.linspace(0.0, k - 1, points)
    i0 = np.minimum(np.floor(pos).astype(int), k - 2)
    t = (pos - i0)[:, None]
    return xy[..., i0, :] * (1 - t) + xy[..., i0 + 1, :] * t


def polyline_heading(xy: np.ndarray) -> np.ndarray:
    """Heading of each point: atan2 of the step to the next point; the last repeats the previous."""
    d = np.diff(xy, axis=-2)
    h = np.arctan2(d[..., 1], d[..., 0])
    return np.concatenate([h, h[..., -1:]], axis=-1)


def bend(xy: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Bends the flat layout frame around a circle of curvature kappa (x along the arc, y across).

    The x axis maps to an arc through the origin tangent to x; lines of constant x map to radii,
    so lateral distances (lane widths) are kept. kappa broadcasts against xy[..., 0].
    """
    x, y = xy[..., 0], xy[..., 1]
    k = np.broadcast_to(kappa, x.shape)
    safe = np.where(np.abs(k) < 1e-9, 1e-9, k)
    th = k * x
    sin, cos = np.sin(th), np.cos(th)
    # sin(th)/kappa and (1 - cos th)/kappa; the second via 2 sin^2(th/2) for accuracy.
    sx = np.where(np.abs(k) < 1e-9, x, sin / safe)
    half = np.sin(0.5 * th)
    cx = np.where(np.abs(k) < 1e-9, 0.0, 2 * half * half / safe)
    return np.stack([sx - y * sin, cx + y * cos], axis=-1)


def bend_heading(h: np.ndarray, xy: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Headings after `bend` for directions h at flat points xy (the map's Jacobian applied)."""
    th = kappa * xy[..., 0]
    scale = 1.0 - kappa * xy[..., 1]
    return wrap_angle(th + np.arctan2(np.sin(h), scale * np.cos(h)))


def yaw_rate(heading_T: np.ndarray, dt: float) -> np.ndarray:
    """The devkit's 3-point Savitzky-Golay derivative of unwrapped headings: central differences
    over 2 dt inside; at both ends the plain one-step difference, not divided by dt (its quirk)."""
    u = np.unwrap(heading_T, axis=-1)
    out = np.empty_like(u)
    out[..., 1:-1] = (u[..., 2:] - u[..., :-2]) / (2 * dt)
    out[..., 0] = u[..., 1] - u[..., 0]
    out[..., -1] = u[..., -1] - u[..., -2]
    return out
