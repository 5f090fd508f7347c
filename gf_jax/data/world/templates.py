"""Road topology shared by a group of scenarios (`Template`), and the sizes every layout shares.

A template lists its routes as (arm in, lane in, movement, arm out, lane out); scenarios with the
same template are built together by `roads.build`.
"""

from __future__ import annotations

import dataclasses

from gf_jax.data.world.plan import LEFT, MERGE, RIGHT, STRAIGHT, STRAIGHT_ON

ARM_LENGTH = 220.0  # simulated length of every arm (vehicles enter from up to here)
MAP_EXTENT = 200.0  # map pieces are built this far from the junction
MAX_PIECES = 8  # lane pieces per lane along an arm (segments are at least 25 m)
MAX_ROUTES = 16
RAW_POINTS = 13  # vertices per map piece (straight pieces and connectors alike)
MAX_ROUTE_BLOCKS = 2 * MAX_PIECES + 6  # ramp (4) + arm pieces + connector + exit pieces

_TARGET = {STRAIGHT_ON: 2, LEFT: 3, RIGHT: 1}  # arm offset of each movement


def lane_moves(n: int, i: int, exists: dict[int, bool]) -> list[int]:
    """Movements allowed from inbound lane i (0 = next to the centre line) of an n-lane arm."""
    if n == 1:
        moves = [LEFT, STRAIGHT_ON, RIGHT]
    elif n == 2:
        moves = [LEFT, STRAIGHT_ON] if i == 0 else [STRAIGHT_ON, RIGHT]
    else:
        moves = [LEFT] if i == 0 else ([STRAIGHT_ON] if i == 1 else [STRAIGHT_ON, RIGHT])
    ok = [m for m in moves if exists[m]]
    if not ok:  # e.g. a left-only lane at a T without a left arm
        ok = [m for m in (STRAIGHT_ON, LEFT, RIGHT) if exists[m]][:1]
    return ok


@dataclasses.dataclass(frozen=True)
class Template:
    """The discrete topology shared by a group of scenarios."""

    kind: int
    arms_on: tuple[bool, ...]
    lanes: tuple[int, ...]
    routes: tuple[tuple[int, int, int, int, int], ...]  # (arm in, lane in, move, arm out, lane out)

    @property
    def ramp(self) -> bool:
        return self.kind == MERGE

    @property
    def n_routes(self) -> int:
        return len(self.routes) + int(self.ramp)


def make_template(kind: int, arms_on, lanes) -> Template:
    arms_on = tuple(bool(x) for x in arms_on)
    lanes = tuple(int(x) for x in lanes)
    routes = []
    for a in range(4):
        if not arms_on[a]:
            continue
        exists = {m: arms_on[(a + _TARGET[m]) % 4] for m in _TARGET}
        if kind in (STRAIGHT, MERGE):
            exists = {STRAIGHT_ON: True, LEFT: False, RIGHT: False}
        for i in range(lanes[a]):
            for m in lane_moves(lanes[a], i, exists):
                b = (a + _TARGET[m]) % 4
                nb = lanes[b]
                j = 0 if m == LEFT else (nb - 1 if m == RIGHT else min(i, nb - 1))
                routes.append((a, i, m, b, j))
    t = Template(kind, arms_on, lanes, tuple(routes))
    assert t.n_routes <= MAX_ROUTES, t
    return t
