"""argparse value types that refuse a bad option while the command line is parsed, before any work.

A value that does not fit raises `argparse.ArgumentTypeError`; `gf_jax.cli.ArgumentParser` turns
that into one line naming the flag and exit code 2, e.g.
`error: argument --steps: must be an integer >= 1, got '0'`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def at_least(low: int) -> Callable[[str], int]:
    """An int type that refuses values below `low`."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return int(value)

    parse.__name__ = f"int>={low}"
    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return float(value)


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return float(value)


def fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}")
    return float(value)


def positive_int_list(text: str) -> str:
    """A comma-separated list of integers >= 1 (kept as text; the script parses it)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected integers >= 1 like 50,200, got {text!r}")
    return text


def shard(text: str) -> tuple[int, int]:
    """`I/N` with 1 <= I <= N: this machine's share of a plan, every N-th item from the I-th."""
    i, sep, n = text.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N (e.g. 2/8), got {text!r}")
    return int(i), int(n)
