"""The ``tokenflow`` command line.

:func:`main` is the console script. It answers a cache hit itself (:mod:`tokenflow.cli.fast`),
with nothing but the standard library and a few small modules loaded, and imports the full
command (:mod:`tokenflow.cli.app`) only when the cached path declines.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    import sys

    from tokenflow.cli.fast.index import cached_token_output

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        text = cached_token_output(args)
    except Exception:  # the fast path is an optimisation: whatever it trips on, the full path
        text = None  # reports properly (and it never fails where the full path succeeds)
    if text is not None:
        from tokenflow.cli import stdout

        try:
            stdout.out(text)
            stdout.flush()
        except BrokenPipeError:
            return stdout.reader_left()
        except stdout.OutputError:
            pass  # the full command answers again, and reports the failed write in its own words
        else:
            return 0
    from tokenflow.cli.app import main as run

    return run(args, cache_tried=True)
