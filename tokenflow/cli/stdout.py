"""Writing the command's result and its errors: stdout that may be closed, a reader that left.

Shared by the full command (:mod:`tokenflow.cli.app`) and the console script's cached path
(:func:`tokenflow.cli.main`), which answers a cache hit without importing the full command.
Standard library only.
"""

from __future__ import annotations

import os
import sys

__all__ = ["OutputError", "err", "flush", "out", "reader_left", "reason"]


class OutputError(Exception):
    """stdout could not be written (closed, a full disk): the command's result is lost."""


def out(text: str) -> None:
    """Write *text* to stdout; a closed stdout or a write error is an :class:`OutputError`."""
    if sys.stdout is None:
        raise OutputError("standard output is closed")
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write to standard output: {reason(exc)}") from None


def flush() -> None:
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write to standard output: {reason(exc)}") from None


def err(text: str) -> None:
    """Write to stderr; with stderr closed or failing there is nobody to tell, so say nothing."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc) or type(
        exc).__name__


def reader_left() -> int:
    """``tokenflow token | true``: the reader left before reading; nothing is wrong (exit 0).

    stdout is pointed at /dev/null so the interpreter's final flush has nowhere to fail.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 0
