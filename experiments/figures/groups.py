"""Example pickers for the scenario figures: indices in score tiers and in the quadrants of two
scores (`tier_groups`, `quadrant_groups`, both fed to `scenarios.scenario_grid`)."""

from __future__ import annotations

import numpy as np

from experiments.figures.style import TIERS, finite_1d
from valuation.scores import percentile_rank


def quadrant_masks(x_N: np.ndarray, y_N: np.ndarray) -> dict[str, np.ndarray]:
    """Quadrant masks; "high" = strictly above the median, so median ties count as low."""
    hx, hy = x_N > np.median(x_N), y_N > np.median(y_N)
    return {
        "high/high": hx & hy,
        "high/low": hx & ~hy,
        "low/high": ~hx & hy,
        "low/low": ~hx & ~hy,
    }


def _pick(members: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return (
        rng.choice(members, size=min(n, len(members)), replace=False) if len(members) else members
    )


def tier_groups(score_N: np.ndarray, per_group: int = 3, seed: int = 0) -> dict[str, list[int]]:
    """Example indices in five score tiers (`TIERS`), for `scenario_grid`.

    Bands are disjoint: top 5% = at or above the 95th percentile, top 25% = from the 75th up to
    (not including) the 95th, bottom 25% = above the 5th up to the 25th, bottom 5% = at or below
    the 5th. Within a band `per_group` examples are drawn at random (seeded) and listed by
    decreasing score. "median" takes the examples closest to the 50th percentile that no band
    has taken (deterministic). A band with fewer members gives fewer (possibly no) indices.
    """
    s = finite_1d(score_N, "score_N")
    q05, q25, q50, q75, q95 = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    bands = {
        "top 5%": s >= q95,
        "top 25%": (s >= q75) & (s < q95),
        "bottom 25%": (s > q05) & (s <= q25),
        "bottom 5%": s <= q05,
    }
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {}
    for name, mask in bands.items():
        chosen = _pick(np.flatnonzero(mask), per_group, rng)
        out[name] = [int(i) for i in chosen[np.argsort(-s[chosen], kind="stable")]]
    taken = {i for g in out.values() for i in g}
    near = [int(i) for i in np.argsort(np.abs(s - q50), kind="stable") if int(i) not in taken]
    out["median"] = near[:per_group]
    return {t: out[t] for t in TIERS}


def quadrant_groups(
    x_N: np.ndarray,
    y_N: np.ndarray,
    per_group: int = 3,
    seed: int = 0,
    *,
    pick: str = "random",
) -> dict[str, list[int]]:
    """Example indices in the four quadrants of two scores split at their medians (`QUADRANTS`,
    named x/y; "high" = strictly above the median).

    `pick="random"` (default) draws `per_group` members of each quadrant at random (seeded):
    typical examples of the quadrant. `pick="extreme"` takes the members farthest from the
    medians in percentile-rank space (largest |rank_x - 0.5| + |rank_y - 0.5|, ties by index):
    the quadrant's clearest cases. Indices are listed in the order picked (extreme: most extreme
    first; random: ascending).
    """
    x, y = finite_1d(x_N, "x_N"), finite_1d(y_N, "y_N")
    if len(x) != len(y):
        raise ValueError(f"x_N and y_N differ in length: {len(x)} and {len(y)}")
    if pick not in ("random", "extreme"):
        raise ValueError(f"pick must be 'random' or 'extreme', got {pick!r}")
    rng = np.random.default_rng(seed)
    dist = np.abs(percentile_rank(x) - 0.5) + np.abs(percentile_rank(y) - 0.5)
    out = {}
    for q, mask in quadrant_masks(x, y).items():
        members = np.flatnonzero(mask)
        if pick == "extreme":
            chosen = members[np.argsort(-dist[members], kind="stable")[:per_group]]
        else:
            chosen = np.sort(_pick(members, per_group, rng))
        out[q] = [int(i) for i in chosen]
    return out
