"""How every command line of the project fails: one line naming the flag or file, and an exit code.

Exit codes: 0 success; 1 the input data, a file or the work failed (`DataError`, `TrainingError`,
`OSError`, ...); 2 the command line itself is wrong (`UsageError`, or argparse's own errors).
Tracebacks are shown only with `--debug`; without it an unexpected exception is still reported in
one line (its type and message) so a user's terminal never fills with framework internals.

    parser = cli.ArgumentParser(prog="python -m gf_jax.train", description=...)
    ...
    @cli.guarded
    def main(argv=None) -> int: ...
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

USAGE_EXIT = 2
DATA_EXIT = 1
DEBUG_FLAG = "--debug"

R = TypeVar("R")


class UsageError(ValueError):
    """A command-line option is invalid; the message names the flag (exit code 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a `--debug` flag and one-line errors (argparse prints usage + error)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            DEBUG_FLAG, action="store_true", help="show the full traceback of an error"
        )

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"error: {message} (see {self.prog} --help)\n")


def script_parser(prog: str, doc: str | None, *, raw_text: bool = False) -> ArgumentParser:
    """A script's parser: its module docstring as the description, printed as written (with
    `raw_text`, the options' help too)."""
    formatter = argparse.RawTextHelpFormatter if raw_text else argparse.RawDescriptionHelpFormatter
    return ArgumentParser(prog=prog, description=doc, formatter_class=formatter)


def one_line(message: object) -> str:
    """A message (or an exception's) with its newlines and runs of spaces folded into one line."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        return type(message).__name__  # e.g. a bare KeyError()
    return text


def fail(message: object) -> None:
    """Prints one error line to stderr."""
    print(f"error: {one_line(message)}", file=sys.stderr)


def warn(message: object) -> None:
    """Prints one warning line to stderr (work goes on)."""
    print(f"warning: {one_line(message)}", file=sys.stderr)


def exit_code(error: BaseException) -> int:
    """2 for a wrong command line, 1 for everything else."""
    return USAGE_EXIT if isinstance(error, UsageError) else DATA_EXIT


def describe(error: BaseException) -> str:
    """The one-line text of an error: its message, and its type when the type is not ours."""
    text = str(error) or type(error).__name__
    ours = isinstance(error, UsageError) or type(error).__module__.split(".")[0] in {
        "gf_jax",
        "experiments",
        "valuation",
        "curriculum",
    }
    if ours or isinstance(error, OSError):
        return text
    return f"{type(error).__name__}: {text} (rerun with {DEBUG_FLAG} for the traceback)"


def guarded(main: Callable[[Sequence[str] | None], R]) -> Callable[[Sequence[str] | None], R | int]:
    """Wraps a CLI `main(argv)`: errors become one line on stderr and an exit code.

    `KeyboardInterrupt` exits 130 with one line (checkpointed work resumes on the next run).
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> R | int:
        args = list(sys.argv[1:] if argv is None else argv)
        if DEBUG_FLAG in args:
            return main(argv)
        try:
            return main(argv)
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to continue from the last checkpoint")
            return 130
        except Exception as e:  # the point: no traceback without --debug
            fail(describe(e))
            return exit_code(e)

    return wrapper
