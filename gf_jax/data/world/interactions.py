"""Who can interact with whom, and what each agent's current route says, as gathered tables.

`Pairs` gathers the route-pair table (shared runs, conflict zones) for the agents' current routes;
`Links` flattens the agent pairs that can interact before the next rebuild so that per-agent minima
are segment reductions; `RouteCache` holds each agent's route attributes until its route changes.
"""

from __future__ import annotations

import numpy as np

from gf_jax.data.world import conflicts as C
from gf_jax.data.world.roads import CONN_DS, LOOKAHEAD_DECEL, Roads

LINK_RANGE = 130.0  # metres beyond which two vehicles do not interact before links are rebuilt


class Pairs:
    """Route-pair table gathered for the agents' current routes, [F, N, A, A] float32."""

    def __init__(self, roads: Roads):
        self.n, self.r = roads.pair.shape[:2]
        self.flat = roads.pair.reshape(-1, roads.pair.shape[-1]).astype(np.float32)
        self.ar = np.arange(self.n)

    def gather(self, route_i, route_j, rows=None, fields=slice(None)):
        ar = self.ar if rows is None else rows
        idx = (ar[:, None, None] * self.r + route_i[:, :, None]) * self.r + route_j[:, None, :]
        return np.ascontiguousarray(np.moveaxis(self.flat[idx][..., fields], -1, 0))


class Links:
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


class RouteCache:
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
