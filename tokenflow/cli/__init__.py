"""The ``tokenflow`` command line.

:func:`main` is the console script. It stays import-free so that the cached path
(:mod:`tokenflow.cli.fast`) starts with nothing but the standard library loaded.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    from tokenflow.cli.app import main as run

    return run(argv)
