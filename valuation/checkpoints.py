"""Which of a reference run's epoch checkpoints TracIn sums over (pure Python, no JAX).

Names: `all` (every epoch), `best` (the best-validation epoch, the released code's default),
`everyJ` (every J-th epoch counted back from the last, e.g. `every3` of 10 = epochs 1, 4, 7, 10)
and `lastN` (the last N epochs). Fewer checkpoints cost proportionally less scoring; whether they
keep the ranking is measured by `experiments/tracin_subsets.py`.
"""

from __future__ import annotations

import re

_PATTERN = re.compile(r"(every|last)([1-9][0-9]*)")


def check(which: str) -> str:
    """`which` if it names a subset; ValueError otherwise."""
    if which in ("all", "best") or _PATTERN.fullmatch(which):
        return which
    raise ValueError(
        f"checkpoints must be all, best, everyJ or lastN (e.g. every3, last2), got {which!r}"
    )


def subset(n: int, which: str) -> list[int]:
    """Indices into the n epoch checkpoints (oldest first) that `which` keeps; `best` is not an
    epoch subset and is resolved by the checkpoint store."""
    if check(which) == "all":
        return list(range(n))
    match = _PATTERN.fullmatch(which)
    if match is None:
        raise ValueError(f"{which!r} is not an epoch subset")
    j = int(match.group(2))
    if match.group(1) == "every":
        return list(range(n - 1, -1, -j))[::-1]
    return list(range(max(0, n - j), n))
