"""Shared checks of the fault-injection tests: run a CLI's `main` in-process and read its verdict.

Every fault test asserts the same four things: the exit code, one stderr line naming the file or
flag, no partial outputs, and that the same command succeeds once the input is fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a command line did: its exit code, the error lines it printed, and all it printed."""

    code: int
    errors: list[str]
    stdout: str
    stderr: str


def run_cli(
    main: Callable[[Sequence[str] | None], object],
    argv: Sequence[str],
    capsys: pytest.CaptureFixture,
) -> Outcome:
    """Runs `main(argv)` as the shell would (SystemExit included) and captures stdout/stderr."""
    capsys.readouterr()  # drop anything printed before
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    code = code if isinstance(code, int) else 0
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    return Outcome(code, errors, out.out, out.err)


def assert_refused(outcome: Outcome, code: int, *names: str) -> None:
    """Exit `code`, exactly one `error:` line, and that line names every one of `names`."""
    assert outcome.code == code, (outcome.code, outcome.errors)
    assert len(outcome.errors) == 1, outcome.errors
    for name in names:
        assert str(name) in outcome.errors[0], (name, outcome.errors[0])


def files_under(root: Path) -> set[str]:
    """Every file below `root`, relative (to compare before/after and find partial outputs)."""
    root = Path(root)
    return (
        {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if root.exists()
        else set()
    )


def assert_no_new_files(root: Path, before: Iterable[str]) -> None:
    """Nothing was written below `root` beyond what was there before."""
    assert files_under(root) - set(before) == set()
