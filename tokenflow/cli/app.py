"""The ``tokenflow`` command.

``main()`` first offers ``tokenflow token`` to :mod:`tokenflow.fastpath`, which answers a cache
hit without importing anything heavy; everything else goes through argparse and the library.

Exit codes: 0 success, 1 the server or a credential refused, 2 bad usage or config, 3 a bug
(the traceback is written to a file and its path printed), 130 interrupted. Errors are one line
on stderr and pass through :func:`tokenflow.redact.scrub` on the way out.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from tokenflow.api import Tokenflow

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    from tokenflow.cli.fast.index import cached_token_output

    text = cached_token_output(args)
    if text is not None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        return _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("tokenflow: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # `tokenflow token | head -c0`: the reader left, nothing is wrong
    except Exception as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    from tokenflow.errors import TokenflowError

    if isinstance(exc, TokenflowError):
        _error(_one_line(exc))
        return exc.exit_code
    return _report_bug(exc)


def _one_line(exc: BaseException) -> str:
    """An error as one line (a ConfigError shows its first problem and how many follow)."""
    from tokenflow.errors import ConfigError

    return _clean(exc.first_line if isinstance(exc, ConfigError) else str(exc))


def _clean(text: str) -> str:
    """*text* scrubbed of secrets and folded onto one line."""
    from tokenflow.redact import scrub

    return " ".join(scrub(text).split())


def _error(message: str) -> None:
    sys.stderr.write(f"tokenflow: error: {_clean(message)}\n")


def _report_bug(exc: BaseException) -> int:
    """A bug: one line on stderr, the (scrubbed) traceback in a file, exit 3."""
    import time
    import traceback

    from tokenflow.base import locations
    from tokenflow.redact import scrub_traceback

    text = scrub_traceback("".join(traceback.format_exception(exc)))
    path = os.path.join(locations.cache_dir(), "crash",
                        time.strftime("crash-%Y%m%dT%H%M%SZ.log", time.gmtime()))
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        where = f"traceback written to {path}"
    except OSError:
        where = "traceback could not be written; rerun with -v"
    sys.stderr.write(
        f"tokenflow: internal error ({type(exc).__name__}); this is a bug, please report it; "
        f"{where}\n"
    )
    return EXIT_BUG


# -- argument parsing ----------------------------------------------------------------------------
def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``only="token"`` just the ``token`` command (see :func:`_run`)."""
    import argparse

    from tokenflow import __version__
    from tokenflow.base.output import FORMATS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", action="append", metavar="PATH",
                        help="config file or directory (repeatable; default: discovery order)")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens to stderr (-vv: HTTP too); secrets are scrubbed")

    parser = argparse.ArgumentParser(
        prog="tokenflow", parents=[common],
        description="Fetch OAuth 2.0 access tokens declaratively from YAML profiles.",
    )
    parser.add_argument("--version", action="version", version=f"tokenflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    token = sub.add_parser("token", parents=[common], help="print a fresh access token")
    token.add_argument("profile", nargs="?", help="profile name (default: $TOKENFLOW_PROFILE)")
    token.add_argument("-f", "--format", choices=FORMATS, default="raw",
                       help="raw (default), json, header, env or exec-credential (kubectl)")
    token.add_argument("--force-refresh", action="store_true",
                       help="get a new token even if the cached one is fresh")
    if only == "token":
        return parser  # a renewal needs no other sub-parser: building all of them costs ~2 ms

    validate = sub.add_parser("validate", parents=[common],
                              help="check config files; print every error with file:line:col")
    validate.add_argument("paths", nargs="*", metavar="PATH")

    sub.add_parser("profiles", parents=[common], help="list profiles")

    status = sub.add_parser("status", parents=[common],
                            help="show cached tokens' state (no network)")
    status.add_argument("profile", nargs="?", help="one profile (default: all)")

    logout = sub.add_parser("logout", parents=[common], help="forget a profile's cached token")
    logout.add_argument("profile")
    logout.add_argument("--revoke", action="store_true", help="revoke it at the server first")

    exec_ = sub.add_parser("exec", parents=[common],
                           usage="tokenflow exec PROFILE [--env-var NAME] [-c PATH] -- CMD [ARG ...]",
                           help="run a command with the token in its environment")
    exec_.add_argument("profile")
    exec_.add_argument("--env-var", default="TOKENFLOW_ACCESS_TOKEN", metavar="NAME",
                       help="variable to put the token in (default TOKENFLOW_ACCESS_TOKEN)")
    exec_.set_defaults(cmd=[])  # everything after "--", split off before parsing (see _run)

    sub.add_parser("schema", parents=[common],
                   help="print the JSON Schema of profile files (with plugin parts)")
    sub.add_parser("plugins", parents=[common], help="list plugins and what they register")
    demo = sub.add_parser("demo", parents=[common],
                          help="walk through fetch, cache, refresh and re-authentication")
    demo.add_argument("--fast", action="store_true", help="no pauses between steps")
    return parser


def _run(argv: list[str]) -> int:
    # "token" first: argparse can only pick that sub-parser, so the others need not exist
    parser = _parser("token" if argv and argv[0] == "token" else None)
    command: list[str] = []
    if argv and argv[0] == "exec" and "--" in argv:
        # the child's argv is everything after the first "--", options and all
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if command:
        ns.cmd = command
    _setup_logging(ns.verbose)
    handler = _COMMANDS[ns.command]
    return handler(ns)


def _setup_logging(verbosity: int) -> None:
    """Warnings (a stale token served, a damaged cache file moved aside) always reach stderr as
    ``tokenflow: warning: ...``; ``-v`` adds the life cycle, ``-vv`` every library's debug log."""
    import logging

    from tokenflow.redact import ScrubbingFilter, install_log_filters

    class OneLine(logging.Formatter):
        """``tokenflow: warning: MESSAGE`` on one line, like the CLI's errors."""

        def format(self, record: logging.LogRecord) -> str:
            return f"tokenflow: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(logging.Formatter("tokenflow: %(name)s: %(message)s") if verbosity
                         else OneLine())
    logger = logging.getLogger("tokenflow" if verbosity < 2 else "")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity else logging.WARNING)
    install_log_filters()


def _load(ns: argparse.Namespace) -> Tokenflow:
    from tokenflow.api import load_config

    return load_config(*(ns.config or []))


def _sources(ns: argparse.Namespace) -> list[str]:
    from tokenflow.base import locations

    return locations.config_sources(ns.config or [])


# -- commands ------------------------------------------------------------------------------------
def cmd_token(ns: argparse.Namespace) -> int:
    import time

    from tokenflow.base.output import render
    from tokenflow.cli.index_writer import write_index

    config = _load(ns)
    session = config.session(ns.profile)
    token = session.force_refresh() if ns.force_refresh else session.token()
    write_index(config, _sources(ns), served=session.profile.name)
    sys.stdout.write(render(ns.format, token.access_token, token.token_type, token.expires_at,
                            token.scope, time.time()))
    return EXIT_OK


def cmd_validate(ns: argparse.Namespace) -> int:
    from tokenflow.api import load_config
    from tokenflow.errors import ConfigError

    paths = ns.paths or ns.config or []
    try:
        config = load_config(*paths)
    except ConfigError as exc:
        from tokenflow.redact import scrub

        for issue in exc.issues:  # scrubbed: a schema message may quote a misplaced secret
            sys.stdout.write(f"{scrub(str(issue))}\n")
        sys.stderr.write(f"tokenflow: {len(exc.issues)} error(s)\n")
        return EXIT_USAGE
    names = ", ".join(sorted(config.profiles)) or "none"
    sys.stdout.write(f"ok: {len(config.files)} file(s), {len(config.profiles)} profile(s): {names}\n")
    return EXIT_OK


def cmd_profiles(ns: argparse.Namespace) -> int:
    config = _load(ns)
    default = os.environ.get("TOKENFLOW_PROFILE")
    rows = [("PROFILE", "SERVER", "GRANT", "STORE", "DESCRIPTION")]
    for name, p in sorted(config.profiles.items()):
        mark = "*" if name == default else ""
        rows.append((name + mark, p.server.name, p.grant, p.store.name, p.description))
    _table(rows)
    return EXIT_OK


def cmd_status(ns: argparse.Namespace) -> int:
    from tokenflow.base.output import iso_utc
    from tokenflow.errors import TokenflowError

    config = _load(ns)
    names = [ns.profile] if ns.profile else sorted(config.profiles)
    rows = [("PROFILE", "STATE", "EXPIRES", "IN", "REFRESH", "TOKEN", "STORE")]
    failed = 0
    for name in names:
        try:
            report = config.session(name).status()
        except TokenflowError as exc:
            if ns.profile:
                raise  # the one profile asked for: its error is the answer
            # one profile's unset variable or unreadable store must not hide the others
            failed += 1
            rows.append((name, "error", "-", "-", "-", "-", _one_line(exc)))
            continue
        expires = iso_utc(report.expires_at) if report.expires_at else "-"
        left = _duration(report.expires_in) if report.expires_in is not None else "-"
        rows.append((name, report.state.value, expires, left,
                     "yes" if report.has_refresh_token else "no",
                     report.fingerprint or "-", report.store))
    _table(rows)
    return EXIT_REFUSED if failed else EXIT_OK



def cmd_logout(ns: argparse.Namespace) -> int:
    config = _load(ns)
    had = config.session(ns.profile).logout(revoke=ns.revoke)
    what = "revoked and removed" if had and ns.revoke else "removed" if had else "nothing cached"
    sys.stderr.write(f"tokenflow: {ns.profile}: {what}\n")
    return EXIT_OK


def cmd_exec(ns: argparse.Namespace) -> int:
    import subprocess

    cmd = list(ns.cmd)
    if not cmd:
        _error("exec needs a command after --, e.g. tokenflow exec prod -- curl ...")
        return EXIT_USAGE
    config = _load(ns)
    token = config.session(ns.profile).token()
    env = dict(os.environ)
    env[ns.env_var] = token.access_token
    try:
        code = subprocess.call(cmd, env=env)
    except FileNotFoundError:
        _error(f"command not found: {cmd[0]}")
        return 127
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def cmd_schema(ns: argparse.Namespace) -> int:
    import json

    from tokenflow.config.loader import full_schema
    from tokenflow.plugins.host import build_plugin_host

    sys.stdout.write(json.dumps(full_schema(build_plugin_host()), indent=2) + "\n")
    return EXIT_OK


def cmd_plugins(ns: argparse.Namespace) -> int:
    from tokenflow.plugins.host import build_plugin_host

    host = build_plugin_host()
    rows = [("PLUGIN", "FROM", "REGISTERS")]
    for info in host.plugins():
        origin = info.origin + (", required" if info.required else "")
        rows.append((info.name, origin, ", ".join(info.registers) or "-"))
    for name in host.blocked():
        rows.append((name, "blocked by $TOKENFLOW_DISABLE_PLUGINS", "-"))
    _table(rows)
    return EXIT_OK


def cmd_demo(ns: argparse.Namespace) -> int:
    from tokenflow.cli.demo import run_demo

    return run_demo(fast=ns.fast)


_COMMANDS = {
    "token": cmd_token,
    "validate": cmd_validate,
    "profiles": cmd_profiles,
    "status": cmd_status,
    "logout": cmd_logout,
    "exec": cmd_exec,
    "schema": cmd_schema,
    "plugins": cmd_plugins,
    "demo": cmd_demo,
}


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")
