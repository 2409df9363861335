"""The ``tokenflow`` command line's shared grammar: global options and the ``token`` command.

One declaration, two readers. :mod:`tokenflow.cli.app` builds its argparse parser from these
tables, and the cached path (:mod:`tokenflow.cli.fast.index`) parses ``argv`` with
:func:`parse_command` without importing argparse. So an option added here is known to both,
and the two can never disagree about what ``tokenflow token`` means.

Global options (:data:`GLOBAL_OPTIONS`) are accepted before and after the subcommand
(``tokenflow -c a.yaml token p`` and ``tokenflow token p -c a.yaml``); repeatable ones add up
across both places. :func:`parse_command` understands ``--opt value``, ``--opt=value`` and
``-o value``; anything else (an unknown or abbreviated option, ``-ovalue``, ``--``, ``-h``, an
option the fast path cannot honour such as ``-v``) makes it return ``None`` and the full
argparse path decides, so the fast path can only ever agree with it.

It imports nothing but :mod:`tokenflow.base.output` (for the format names): it is on the
cached path.
"""

from __future__ import annotations

from tokenflow.base.output import FORMATS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["GLOBAL_OPTIONS", "TOKEN", "Command", "Option", "command_index", "parse_command"]


class Option:
    """One option as both parsers see it.

    :param flags: its spellings, short first (``("-c", "--config")``).
    :param dest: the attribute it sets.
    :param action: ``store`` (one value, the last wins), ``append`` (repeatable value),
        ``count`` (repeatable flag) or ``store_true``.
    :param fast: whether the cached path can honour it; if not, its presence sends the run
        to the full path (``-v`` must log, ``--force-refresh`` must ask the server).
    """

    __slots__ = ("action", "choices", "default", "dest", "fast", "flags", "help", "metavar")

    def __init__(
        self,
        flags: tuple[str, ...],
        dest: str,
        *,
        action: str = "store",
        help: str = "",
        metavar: str | None = None,
        choices: tuple[str, ...] | None = None,
        default: object = None,
        fast: bool = True,
    ) -> None:
        self.flags = flags
        self.dest = dest
        self.action = action
        self.help = help
        self.metavar = metavar
        self.choices = choices
        self.default = default
        self.fast = fast

    @property
    def takes_value(self) -> bool:
        return self.action in ("store", "append")


class Command:
    """A subcommand's options and optional positionals (the ones the fast path may parse)."""

    __slots__ = ("name", "options", "positionals")

    def __init__(self, name: str, options: tuple[Option, ...], positionals: tuple[str, ...]) -> None:
        self.name = name
        self.options = options
        self.positionals = positionals


GLOBAL_OPTIONS: tuple[Option, ...] = (
    Option(("-c", "--config"), "config", action="append", metavar="PATH",
           help="config file or directory (repeatable; default: $TOKENFLOW_CONFIG, "
                "./tokenflow.yaml, then the user config directory)"),
    Option(("-v", "--verbose"), "verbose", action="count", default=0, fast=False,
           help="log what happens to stderr (-vv: HTTP too); secrets are scrubbed"),
)

TOKEN = Command(
    "token",
    (
        Option(("-f", "--format"), "format", choices=FORMATS, default="raw", metavar="FORMAT",
               help="raw (default): the bare token; json; header: 'Authorization: Bearer ...'; "
                    "env: export lines for eval; exec-credential: for kubectl"),
        Option(("--force-refresh",), "force_refresh", action="store_true", default=False,
               fast=False, help="get a new token even if the cached one is fresh"),
        # these matter only for a sign-in, which a cache hit never needs: the fast path may
        # answer with them given
        Option(("--interactive",), "interactive", action="store_true", default=False,
               help="sign in (browser, device code) when needed even if stderr is not a terminal"),
        Option(("--no-browser",), "no_browser", action="store_true", default=False,
               help="print the sign-in URL without trying to open a browser"),
    ),
    ("profile",),
)


def _lookup(options: Sequence[Option]) -> dict[str, Option]:
    return {flag: option for option in options for flag in option.flags}


def command_index(argv: Sequence[str]) -> int | None:
    """Where the subcommand is in *argv*: the first word that is not a global option or its
    value; ``None`` when there is none or an option before it is not a global one."""
    known = _lookup(GLOBAL_OPTIONS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            return i
        option = known.get(arg.partition("=")[0] if arg.startswith("--") else arg)
        if option is None:
            return None
        i += 2 if option.takes_value and "=" not in arg else 1
    return None


def parse_command(argv: Sequence[str], command: Command,
                  allow: tuple[str, ...] = ()) -> dict[str, object] | None:
    """The values of *command*'s options, global options and positionals in *argv*.

    ``None`` unless *argv* is exactly ``[GLOBAL...] NAME [OPTION | POSITIONAL]...`` in the
    forms this module understands, with only options the cached path can honour, and those
    whose ``dest`` is in *allow* (the renewal path honours ``--force-refresh``).
    """
    where = command_index(argv)
    if where is None or argv[where] != command.name:
        return None
    known = _lookup(GLOBAL_OPTIONS + command.options)
    values: dict[str, object] = {o.dest: o.default for o in GLOBAL_OPTIONS + command.options}
    values.update({name: None for name in command.positionals})
    positionals = list(command.positionals)
    args = [*argv[:where], *argv[where + 1:]]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if not positionals:
                return None  # an extra word: argparse will say so
            values[positionals.pop(0)] = arg
            continue
        name, equals, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        option = known.get(name)
        if option is None or not (option.fast or option.dest in allow):
            return None  # --help, -ovalue, --abbrev, --, or an option only the full path honours
        if not option.takes_value:
            if equals:
                return None
            count = values[option.dest]
            values[option.dest] = (count if isinstance(count, int) else 0) + 1 \
                if option.action == "count" else True
            continue
        if equals:
            value = inline
        elif i < len(args) and not args[i].startswith("-"):
            value = args[i]
            i += 1
        else:
            return None  # a missing value, or one argparse would take for an option
        if option.choices is not None and value not in option.choices:
            return None
        if option.action == "append":
            previous = values[option.dest]
            values[option.dest] = [*previous, value] if isinstance(previous, list) else [value]
        else:
            values[option.dest] = value
    return values
