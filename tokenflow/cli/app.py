"""The ``tokenflow`` command.

``main()`` first offers ``tokenflow token`` to :mod:`tokenflow.cli.fast.index`, which answers a
cache hit without importing anything heavy; everything else goes through argparse and the
library. Both read the global options and the ``token`` command's options from one grammar,
:mod:`tokenflow.cli.fast.grammar`; global options work before and after the subcommand.

Exit codes (:data:`EXIT_CODES`): 0 success, 1 the server or a credential refused, 2 bad usage
or config, 3 a bug (the traceback is written to a file and its path printed), 4 a network
failure, 130 interrupted. Errors are one line on stderr and pass through
:func:`tokenflow.redact.scrub` on the way out.
"""

from __future__ import annotations

import os
import sys

# stdout and stderr handling, shared with the console script's cached path (tokenflow.cli.main)
from tokenflow.cli.stdout import OutputError as _OutputError
from tokenflow.cli.stdout import err as _err
from tokenflow.cli.stdout import flush as _flush
from tokenflow.cli.stdout import out as _out
from tokenflow.cli.stdout import reader_left as _reader_left

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager
    from typing import Any

    from tokenflow.api import Tokenflow
    from tokenflow.cli.fast.grammar import Option
    from tokenflow.engine.session import TokenSession

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_BUG, EXIT_NETWORK, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

EXIT_CODES = """\
exit codes:
  0    success
  1    the server or a credential refused (wrong password, unknown client, HTTP 5xx after retries)
  2    bad usage or config (every config error has FILE:LINE:COL)
  3    a bug in tokenflow: the message says where the traceback was written
  4    network failure: DNS, connection refused, TLS, timeout (nothing was answered)
  130  interrupted (Ctrl-C)
"""

_AFTER = "_after_command"  # dest suffix of a global option given after the subcommand


def main(argv: Sequence[str] | None = None, *, cache_tried: bool = False) -> int:
    """Run the CLI; returns the exit code (the console script exits with it).

    The cached path is :func:`tokenflow.cli.main`'s to try first (*cache_tried* says it did); a
    direct call goes through it too, so there is one order of paths.
    """
    if not cache_tried:
        from tokenflow.cli import main as console_main

        return console_main(argv)
    args = list(sys.argv[1:] if argv is None else argv)
    installed: list[Callable[[], None]] = []  # the renewal path's log handler, if it set one
    text: str | None = None
    try:
        from tokenflow.cli.renewal import renewed_token_output

        text = renewed_token_output(args, lambda: installed.append(_setup_logging(0)))
    except KeyboardInterrupt:
        _err("tokenflow: interrupted\n")
        return EXIT_INTERRUPTED
    except _definite_failure() as exc:  # the server answered, or the lock timed out: the
        code = _report(exc)  # full path would say the same, and must not ask or wait again
        for remove in installed:
            remove()
        return code
    except Exception:  # an optimisation too: the full path answers, and reports
        text = None
    if text is None:
        for remove in installed:
            remove()  # the full path installs its own
    else:
        try:
            _out(text)
            _flush()
        except BrokenPipeError:
            return _reader_left()
        except _OutputError as exc:
            _error(str(exc))
            return EXIT_REFUSED
        return EXIT_OK
    try:
        code = _run(args)
        _flush()  # here, not at exit: a closed pipe or a full disk is then ours to report
        return code
    except KeyboardInterrupt:
        _err("tokenflow: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_left()
    except _OutputError as exc:
        _error(str(exc))
        return EXIT_REFUSED
    except Exception as exc:
        return _report(exc)


def _definite_failure() -> type[Exception]:
    """What the renewal path raises for an answer the full path would give the same way."""
    from tokenflow.errors import TokenflowError

    return TokenflowError


def _report(exc: BaseException) -> int:
    from tokenflow.errors import TokenflowError

    if isinstance(exc, TokenflowError):
        _error(_one_line(exc))
        return int(exc.exit_code)
    return _report_bug(exc)


def _one_line(exc: BaseException) -> str:
    """An error as one line (a ConfigError shows its first problem and how many follow)."""
    from tokenflow.errors import ConfigError

    return _clean(exc.first_line if isinstance(exc, ConfigError) else str(exc))


def _clean(text: str) -> str:
    """*text* scrubbed of secrets, folded onto one line, and unable to drive the terminal (an
    error may quote what a server or a browser's callback sent)."""
    from tokenflow.redact import printable, scrub

    return printable(" ".join(scrub(text).split()))


def _error(message: str) -> None:
    _err(f"tokenflow: error: {_clean(message)}\n")


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
    _err(
        f"tokenflow: internal error ({type(exc).__name__}); this is a bug, please report it; "
        f"{where}\n"
    )
    return EXIT_BUG


# -- argument parsing ----------------------------------------------------------------------------
def _add_option(parser: argparse.ArgumentParser | Any, option: Option, *, after: bool = False) -> Any:
    """Add a grammar option to an argparse parser.

    *after*: the copy of a global option on a subparser. It gets its own dest and no default
    (``SUPPRESS``), so it neither overwrites what was given before the subcommand nor hides it;
    :func:`_merge_globals` then adds the two up.
    """
    import argparse

    kwargs: dict[str, Any] = {"dest": option.dest + (_AFTER if after else ""), "help": option.help,
                              "action": option.action}
    if option.takes_value:
        kwargs["metavar"] = option.metavar
        if option.choices is not None:
            kwargs["choices"] = option.choices
    kwargs["default"] = argparse.SUPPRESS if after else option.default
    return parser.add_argument(*option.flags, **kwargs)


def _merge_globals(ns: argparse.Namespace) -> None:
    """Global options given before and after the subcommand, combined (``-c`` adds up, ``-v``
    counts up)."""
    from tokenflow.cli.fast.grammar import GLOBAL_OPTIONS

    for option in GLOBAL_OPTIONS:
        late = vars(ns).pop(option.dest + _AFTER, None)
        if late is None:
            continue
        early = getattr(ns, option.dest, None)
        if option.action == "append":
            setattr(ns, option.dest, [*(early or []), *late])
        elif option.action == "count":
            setattr(ns, option.dest, (early or 0) + late)
        else:
            setattr(ns, option.dest, late)


_FORMAT_HELP = "table (default) or json: one JSON document on stdout, shape described below"

_HELP: dict[str, tuple[str, str, str]] = {
    # command: (one-line help, description, epilog with examples)
    "token": (
        "print a fresh access token",
        "Print an access token for PROFILE: the cached one while it is fresh, else a refreshed\n"
        "or newly granted one (saved before it is printed). A cache hit takes a few\n"
        "milliseconds. The refresh token is never printed.",
        "examples:\n"
        "  curl -H \"Authorization: Bearer $(tokenflow token prod)\" https://api.example.com/\n"
        "  tokenflow token prod --format header\n"
        "  eval \"$(tokenflow token prod --format env)\"\n"
        "  TOKENFLOW_PROFILE=prod tokenflow token -f json\n",
    ),
    "login": (
        "sign in now (whatever is cached) and store the token",
        "Run PROFILE's grant now, whatever is cached, and store the token it gets. For a\n"
        "browser sign-in (grant: authorization_code) the URL is always printed on stderr too;\n"
        "--no-browser only prints it. For grant: device_code the code and the page to enter it\n"
        "on are printed. Later `tokenflow token` calls are served from the cache and refreshed.",
        "examples:\n"
        "  tokenflow login dev\n"
        "  tokenflow login dev --no-browser      # on a machine without a browser\n",
    ),
    "validate": (
        "check config files; print every error with file:line:col",
        "Check config files (default: the discovery order) and print every problem at once,\n"
        "one per line as FILE:LINE:COL: $.json.path: message. Exit 0 when valid, 2 otherwise.",
        "examples:\n"
        "  tokenflow validate\n"
        "  tokenflow validate profiles/ team.yaml\n"
        "  tokenflow validate --format json | jq '.errors[].message'\n\n"
        "--format json prints:\n"
        "  {\"ok\": true|false, \"files\": [PATH, ...], \"profiles\": [NAME, ...],\n"
        "   \"errors\": [{\"file\": PATH, \"line\": N, \"column\": N, \"path\": \"$.json.path\",\n"
        "                \"message\": TEXT}, ...]}\n"
        "  (line and column are 1-based, 0 when unknown)\n",
    ),
    "profiles": (
        "list profiles",
        "List the profiles of the config; the default one ($TOKENFLOW_PROFILE) is marked *.",
        "examples:\n"
        "  tokenflow profiles\n"
        "  tokenflow profiles --format json | jq -r '.profiles[].name'\n\n"
        "--format json prints:\n"
        "  {\"default\": NAME|null, \"profiles\": [{\"name\": NAME, \"server\": NAME, \"grant\": NAME,\n"
        "   \"store\": NAME, \"description\": TEXT, \"default\": true|false}, ...]}\n",
    ),
    "status": (
        "show cached tokens' state (no network)",
        "Show the state of each profile's cached token (absent, fresh, expiring, expired)\n"
        "without contacting any server. A token is shown only by its fingerprint.",
        "examples:\n"
        "  tokenflow status\n"
        "  tokenflow status prod --format json\n\n"
        "--format json prints:\n"
        "  {\"profiles\": [{\"profile\": NAME, \"state\": \"absent|fresh|expiring|expired|error\",\n"
        "   \"expires_at\": ISO-8601|null, \"expires_in\": SECONDS|null, \"refresh_token\": BOOL,\n"
        "   \"fingerprint\": TEXT|null, \"store\": NAME|null, \"scope\": TEXT|null,\n"
        "   \"error\": TEXT|null}, ...]}\n",
    ),
    "logout": (
        "forget a profile's cached token",
        "Remove PROFILE's cached token (default: $TOKENFLOW_PROFILE, else the only profile);\n"
        "with --revoke, ask the server to revoke it first. The local copy is removed even\n"
        "when revocation fails.",
        "examples:\n"
        "  tokenflow logout prod\n"
        "  tokenflow logout prod --revoke\n",
    ),
    "exec": (
        "run a command with the token in its environment",
        "Run CMD with a fresh access token of PROFILE (default: $TOKENFLOW_PROFILE, else the\n"
        "only profile) in $TOKENFLOW_ACCESS_TOKEN (or --env-var NAME); exit with CMD's\n"
        "status (126: not executable, 127: not found, 128+N: killed by signal N).",
        "examples:\n"
        "  tokenflow exec prod -- sh -c 'curl -H \"Authorization: Bearer $TOKENFLOW_ACCESS_TOKEN\" "
        "https://api.example.com/'\n"
        "  tokenflow exec prod --env-var API_TOKEN -- ./deploy.sh\n",
    ),
    "schema": (
        "print the JSON Schema of profile files (with plugin parts)",
        "Print the JSON Schema (draft 2020-12) of profile files, including the option schemas\n"
        "that installed plugins register: point your editor's YAML support at it.",
        "examples:\n"
        "  tokenflow schema > tokenflow.schema.json\n",
    ),
    "plugins": (
        "list plugins and what they register",
        "List the plugins tokenflow loaded (built-ins, entry points, $TOKENFLOW_PLUGINS) and what\n"
        "each registers; plugins blocked by $TOKENFLOW_DISABLE_PLUGINS are listed too.",
        "examples:\n"
        "  tokenflow plugins\n"
        "  tokenflow plugins --format json\n\n"
        "--format json prints:\n"
        "  {\"plugins\": [{\"name\": NAME, \"origin\": TEXT, \"required\": BOOL, \"blocked\": BOOL,\n"
        "   \"registers\": [\"store file\", \"dialect rfc6749\", ...]}, ...]}\n",
    ),
    "demo": (
        "walk through fetch, cache, refresh and re-authentication",
        "Start the embedded test server on a loopback port and walk through fetch, cache hit,\n"
        "refresh and re-authentication in a few seconds, printing each event.",
        "examples:\n"
        "  tokenflow demo --fast\n",
    ),
    "completion": (
        "print a shell completion script (bash, zsh or fish)",
        "Print a completion script for SHELL that completes commands, options and profile\n"
        "names (asked of `tokenflow profiles` when you press TAB). It is generated by this\n"
        "command only; nothing is loaded on the cached token path.",
        "examples:\n"
        "  source <(tokenflow completion bash)              # in ~/.bashrc\n"
        "  tokenflow completion zsh > \"${fpath[1]}/_tokenflow\"\n"
        "  tokenflow completion fish > ~/.config/fish/completions/tokenflow.fish\n",
    ),
}


def _env_var_name(value: str) -> str:
    """``--env-var``: a name a child process can actually receive."""
    import argparse

    if not value or "=" in value or "\0" in value:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an environment variable name (it must be non-empty, without '=' "
            "or NUL)")
    return value


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``only="token"`` just the ``token`` command: a renewal need not
    build the other sub-parsers (about 2 ms), and argparse can only pick that one anyway."""
    import argparse

    from tokenflow import __version__
    from tokenflow.cli.fast.grammar import GLOBAL_OPTIONS, TOKEN

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tokenflow", formatter_class=raw,
        description="Fetch OAuth 2.0 access tokens declaratively from YAML profiles.\n"
                    "Global options (-c, -v) go before or after the command.",
        epilog=EXIT_CODES + "\nrun `tokenflow COMMAND --help` for a command's options and examples",
    )
    for option in GLOBAL_OPTIONS:
        _add_option(parser, option)
    parser.add_argument("--version", action="version", version=f"tokenflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        short, description, epilog = _HELP[name]
        child = sub.add_parser(name, help=short, description=description, epilog=epilog,
                               formatter_class=raw, **kwargs)
        for option in GLOBAL_OPTIONS:
            _add_option(child, option, after=True)
        return child

    def profile_argument(child: argparse.ArgumentParser, help_text: str) -> None:
        action = child.add_argument("profile", nargs="?", help=help_text)
        action.complete = {"bash": "_tokenflow_profiles", "zsh": "_tokenflow_profiles"}  # type: ignore[attr-defined]

    token = command("token")
    profile_argument(token, "profile name (default: $TOKENFLOW_PROFILE, else the only profile)")
    for option in TOKEN.options:
        _add_option(token, option)
    if only == "token":
        return parser

    login = command("login")
    profile_argument(login, "profile name (default: $TOKENFLOW_PROFILE, else the only profile)")
    login.add_argument("--no-browser", action="store_true",
                       help="print the sign-in URL without trying to open a browser")

    validate = command("validate")
    validate.add_argument("paths", nargs="*", metavar="PATH", help="files or directories "
                          "(default: -c, else the discovery order)")
    _format_option(validate)

    profiles = command("profiles")
    _format_option(profiles)
    profiles.add_argument("--names", action="store_true", help=argparse.SUPPRESS)  # completion

    status = command("status")
    profile_argument(status, "one profile (default: all)")
    _format_option(status)

    logout = command("logout")
    profile_argument(logout, "profile name (default: $TOKENFLOW_PROFILE, else the only profile)")
    logout.add_argument("--revoke", action="store_true", help="revoke it at the server first")

    exec_ = command("exec", usage="tokenflow exec [PROFILE] [--env-var NAME] [-c PATH] -- CMD [ARG ...]")
    profile_argument(exec_, "profile name (default: $TOKENFLOW_PROFILE, else the only profile)")
    exec_.add_argument("--env-var", default="TOKENFLOW_ACCESS_TOKEN", metavar="NAME",
                       type=_env_var_name,
                       help="variable to put the token in (default TOKENFLOW_ACCESS_TOKEN)")
    exec_.set_defaults(cmd=[])  # everything after "--", split off before parsing (see _run)

    command("schema")
    plugins = command("plugins")
    _format_option(plugins)
    demo = command("demo")
    demo.add_argument("--fast", action="store_true", help="no pauses between steps")
    completion = command("completion")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), metavar="SHELL",
                            help="bash, zsh or fish")
    return parser


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help=_FORMAT_HELP)


def _unknown_command(argv: Sequence[str]) -> str | None:
    """An error line for a command word argparse would only call an invalid choice."""
    from tokenflow.cli.fast.grammar import command_index
    from tokenflow.errors import did_you_mean

    where = command_index(argv)
    if where is None or argv[where] in _COMMANDS:
        return None
    word = argv[where]
    return f"unknown command {word!r}" + did_you_mean(word, _COMMANDS, noun="commands")


def _run(argv: list[str]) -> int:
    from tokenflow.cli.fast.grammar import command_index

    command: list[str] = []
    where = command_index(argv)
    if where is not None and argv[where] == "exec" and "--" in argv[where:]:
        # the child's argv is everything after the first "--", options and all
        split = argv.index("--", where)
        argv, command = argv[:split], argv[split + 1:]
    unknown = _unknown_command(argv)
    if unknown is not None:
        _err("usage: tokenflow [-h] [-c PATH] [-v] [--version] COMMAND ...\n")
        _error(unknown)
        return EXIT_USAGE
    parser = _parser("token" if where is not None and argv[where] == "token" else None)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    _merge_globals(ns)
    if command:
        ns.cmd = command
    _setup_logging(ns.verbose)
    handler = _COMMANDS[ns.command]
    return handler(ns)


def _setup_logging(verbosity: int) -> Callable[[], None]:
    """Warnings (a stale token served, a damaged cache file moved aside) always reach stderr as
    ``tokenflow: warning: ...``; ``-v`` adds the life cycle, ``-vv`` every library's debug log.

    Returns what removes the handler again: the renewal path installs it and, when it hands
    over to the full path, takes it away (the full path installs its own)."""
    import logging

    from tokenflow.cli import progress
    from tokenflow.redact import ScrubbingFilter, install_log_filters

    class OneLine(logging.Formatter):
        """``tokenflow: warning: MESSAGE`` on one line, like the CLI's errors."""

        def format(self, record: logging.LogRecord) -> str:
            return f"tokenflow: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"

    handler = progress.LineClearingHandler(sys.stderr)
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(logging.Formatter("tokenflow: %(name)s: %(message)s") if verbosity
                         else OneLine())
    logger = logging.getLogger("tokenflow" if verbosity < 2 else "")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity else logging.WARNING)
    install_log_filters()
    return lambda: logger.removeHandler(handler)


def _load(ns: argparse.Namespace, *, watch: bool = False) -> Tokenflow:
    """The config of ``-c``/discovery; with *watch*, with the progress line's observer."""
    from tokenflow.api import load_config

    plugins = None
    if watch:
        from tokenflow.cli import progress

        plugins = progress.plugin_host()
    return load_config(*(ns.config or []), plugins=plugins)


def _sources(ns: argparse.Namespace) -> list[str]:
    from tokenflow.base import locations

    return locations.config_sources(ns.config or [])


def _session(config: Tokenflow, name: str | None, *, interactive: bool | None = None,
             no_browser: bool = False) -> TokenSession:
    """``config.session(name)``, with "did you mean" and a capped list for an unknown name.

    *interactive* says whether a person can answer a sign-in (browser, device code): the
    session is then a private one that may run an interactive grant; *no_browser* makes the
    authorization-code grant print its URL without opening a browser.
    """
    from tokenflow.errors import ConfigError, did_you_mean

    origin = ""
    if not name:
        name = os.environ.get("TOKENFLOW_PROFILE") or None
        origin = " (from $TOKENFLOW_PROFILE)"
    if name is None and len(config.profiles) != 1:
        raise ConfigError("no profile given and $TOKENFLOW_PROFILE is not set" + did_you_mean(
            "", config.profiles, noun="profiles", listing="tokenflow profiles"))
    if name is not None and name not in config.profiles and name not in config.abstract_profiles:
        raise ConfigError(f"unknown profile {name!r}{origin}" + did_you_mean(
            name, config.profiles, noun="profiles", listing="tokenflow profiles"))
    if no_browser:
        os.environ["TOKENFLOW_NO_BROWSER"] = "1"  # read by the authorization_code grant
    if interactive is None:
        return config.session(name)
    return config.session(name, interactive=interactive)


def _watching(config: Tokenflow, session: TokenSession, what: str) -> AbstractContextManager[None]:
    from tokenflow.cli import progress

    return progress.watch(config.plugins, session.profile, what)


# -- commands ------------------------------------------------------------------------------------
def cmd_token(ns: argparse.Namespace) -> int:
    import time
    from contextlib import nullcontext

    from tokenflow.base.output import render
    from tokenflow.cli.index_writer import write_index

    config = _load(ns, watch=True)
    # a person can answer a sign-in when stderr is a terminal: kubectl runs exec plugins with
    # stdin redirected but stderr on the terminal, and the prompt goes to stderr
    session = _session(config, ns.profile, interactive=ns.interactive or _stderr_is_terminal(),
                       no_browser=ns.no_browser)
    waits_for_a_person = config.plugins.grant(session.profile.grant).grant.interactive
    with nullcontext() if waits_for_a_person else _watching(config, session, "token endpoint"):
        token = session.force_refresh() if ns.force_refresh else session.token()
    write_index(config, _sources(ns), served=session.profile.name)
    _out(render(ns.format, token.access_token, token.token_type, token.expires_at,
                            token.scope, time.time()))
    return EXIT_OK


def cmd_login(ns: argparse.Namespace) -> int:
    from tokenflow.base.output import iso_utc
    from tokenflow.cli.index_writer import write_index

    config = _load(ns)
    session = _session(config, ns.profile, interactive=True,  # asked for: a person is there
                       no_browser=ns.no_browser)
    token = session.login()
    write_index(config, _sources(ns))
    sys.stderr.write(f"tokenflow: {session.profile.name}: signed in; token stored "
                     f"(expires {iso_utc(token.expires_at)})\n")
    return EXIT_OK


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def cmd_validate(ns: argparse.Namespace) -> int:
    import json

    from tokenflow.api import load_config
    from tokenflow.base import locations
    from tokenflow.errors import ConfigError
    from tokenflow.redact import scrub

    paths = ns.paths or ns.config or []
    try:
        config = load_config(*paths)
    except ConfigError as exc:
        if ns.format == "json":
            files = locations.config_files(locations.config_sources(paths))
            _out(json.dumps({
                "ok": False, "files": files, "profiles": [],
                "errors": [{"file": i.file, "line": i.line, "column": i.column,
                            "path": i.path, "message": scrub(i.message)} for i in exc.issues],
            }) + "\n")
            return EXIT_USAGE
        for issue in exc.issues:  # scrubbed: a schema message may quote a misplaced secret
            _out(f"{scrub(str(issue))}\n")
        _err(f"tokenflow: {len(exc.issues)} error(s)\n")
        return EXIT_USAGE
    if ns.format == "json":
        _out(json.dumps({"ok": True, "files": [str(f) for f in config.files],
                                     "profiles": sorted(config.profiles), "errors": []}) + "\n")
        return EXIT_OK
    names = ", ".join(sorted(config.profiles)) or "none"
    _out(f"ok: {len(config.files)} file(s), {len(config.profiles)} profile(s): {names}\n")
    return EXIT_OK


def cmd_profiles(ns: argparse.Namespace) -> int:
    import json

    config = _load(ns)
    default = os.environ.get("TOKENFLOW_PROFILE") or None
    if ns.names:
        _out("".join(f"{name}\n" for name in sorted(config.profiles)))
        return EXIT_OK
    if ns.format == "json":
        _out(json.dumps({"default": default, "profiles": [
            {"name": name, "server": p.server.name, "grant": p.grant, "store": p.store.name,
             "description": p.description, "default": name == default}
            for name, p in sorted(config.profiles.items())
        ]}) + "\n")
        return EXIT_OK
    rows = [("PROFILE", "SERVER", "GRANT", "STORE", "DESCRIPTION")]
    for name, p in sorted(config.profiles.items()):
        mark = "*" if name == default else ""
        rows.append((name + mark, p.server.name, p.grant, p.store.name, p.description))
    _table(rows)
    return EXIT_OK


def cmd_status(ns: argparse.Namespace) -> int:
    import json

    from tokenflow.base.output import iso_utc
    from tokenflow.errors import TokenflowError

    config = _load(ns)
    if ns.profile:
        _session(config, ns.profile)  # an unknown name: "did you mean"
    names = [ns.profile] if ns.profile else sorted(config.profiles)
    records: list[dict[str, Any]] = []
    for name in names:
        try:
            report = config.session(name).status()
        except TokenflowError as exc:
            if ns.profile:
                raise  # the one profile asked for: its error is the answer
            # one profile's unset variable or unreadable store must not hide the others
            records.append({"profile": name, "state": "error", "expires_at": None,
                            "expires_in": None, "refresh_token": False, "fingerprint": None,
                            "store": None, "scope": None, "error": _one_line(exc)})
            continue
        records.append({
            "profile": name, "state": report.state.value,
            "expires_at": iso_utc(report.expires_at) if report.expires_at else None,
            "expires_in": max(0, int(report.expires_in)) if report.expires_in is not None else None,
            "refresh_token": report.has_refresh_token, "fingerprint": report.fingerprint,
            "store": report.store, "scope": report.scope, "error": None,
        })
    failed = any(r["error"] for r in records)
    if ns.format == "json":
        _out(json.dumps({"profiles": records}) + "\n")
        return EXIT_REFUSED if failed else EXIT_OK
    rows = [("PROFILE", "STATE", "EXPIRES", "IN", "REFRESH", "TOKEN", "STORE")]
    for r in records:
        if r["error"]:
            rows.append((r["profile"], "error", "-", "-", "-", "-", r["error"]))
            continue
        left = _duration(r["expires_in"]) if r["expires_in"] is not None else "-"
        rows.append((r["profile"], r["state"], r["expires_at"] or "-", left,
                     "yes" if r["refresh_token"] else "no", r["fingerprint"] or "-", r["store"]))
    _table(rows)
    return EXIT_REFUSED if failed else EXIT_OK


def cmd_logout(ns: argparse.Namespace) -> int:
    config = _load(ns, watch=ns.revoke)
    session = _session(config, ns.profile)
    with _watching(config, session, "revocation endpoint"):
        had = session.logout(revoke=ns.revoke)
    what = "revoked and removed" if had and ns.revoke else "removed" if had else "nothing cached"
    _err(f"tokenflow: {session.profile.name}: {what}\n")
    return EXIT_OK


def cmd_exec(ns: argparse.Namespace) -> int:
    import subprocess

    cmd = list(ns.cmd)
    if not cmd:
        _error("exec needs a command after --, e.g. tokenflow exec prod -- curl ...")
        return EXIT_USAGE
    config = _load(ns, watch=True)
    session = _session(config, ns.profile)
    with _watching(config, session, "token endpoint"):
        token = session.token()
    env = dict(os.environ)
    env[ns.env_var] = token.access_token
    try:
        code = subprocess.call(cmd, env=env)
    except FileNotFoundError:
        _error(f"command not found: {cmd[0]}")
        return 127
    except OSError as exc:  # not executable, a directory, not a program: what a shell says
        _error(f"cannot run {cmd[0]}: {exc.strerror or type(exc).__name__}")
        return 126
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def cmd_schema(ns: argparse.Namespace) -> int:
    import json

    from tokenflow.config.schema import full_schema
    from tokenflow.plugins.host import build_plugin_host

    _out(json.dumps(full_schema(build_plugin_host()), indent=2) + "\n")
    return EXIT_OK


def cmd_plugins(ns: argparse.Namespace) -> int:
    import json

    from tokenflow.plugins.host import build_plugin_host

    host = build_plugin_host()
    if ns.format == "json":
        records = [{"name": info.name, "origin": info.origin, "required": info.required,
                    "blocked": False, "registers": list(info.registers)} for info in host.plugins()]
        records += [{"name": name, "origin": "blocked by $TOKENFLOW_DISABLE_PLUGINS",
                     "required": False, "blocked": True, "registers": []} for name in host.blocked()]
        _out(json.dumps({"plugins": records}) + "\n")
        return EXIT_OK
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


def cmd_completion(ns: argparse.Namespace) -> int:
    from tokenflow.cli.completion import script

    _out(script(_parser(), ns.shell))
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "token": cmd_token,
    "login": cmd_login,
    "validate": cmd_validate,
    "profiles": cmd_profiles,
    "status": cmd_status,
    "logout": cmd_logout,
    "exec": cmd_exec,
    "schema": cmd_schema,
    "plugins": cmd_plugins,
    "demo": cmd_demo,
    "completion": cmd_completion,
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
        _out(line.rstrip() + "\n")
