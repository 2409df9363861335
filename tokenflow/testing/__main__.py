"""``python -m tokenflow.testing``: run the embedded server by hand, to try a profile against it.

The profile goes to stdout and nothing else does, so ``python -m tokenflow.testing >
tokenflow.yaml`` (or ``--write tokenflow.yaml``) saves it in one command; stdout is closed
once the profile is written, so a reader sees its end.  Everything else (the endpoints, the
account, where to approve device codes) goes to stderr.  ``--grant`` picks the profile:
``password`` (default), ``client_credentials``, ``authorization_code`` (a public client with
PKCE; the server approves at once, so a browser lands on the client's loopback page) or
``device_code`` (approve the code at the printed verification page).  The server serves
until interrupted; loopback only, and nothing is persisted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence

from tokenflow.testing.server import EmbeddedServer

GRANTS = ("password", "client_credentials", "authorization_code", "device_code")


def _profile(server: EmbeddedServer, lifetime: int, grant: str = "password") -> str:
    """A complete profile file for ``grant`` against ``server``."""
    margin = max(1, lifetime // 4)
    if grant in ("authorization_code", "device_code"):
        endpoint = (
            f"    authorization_url: {server.authorize_url}\n"
            if grant == "authorization_code"
            else f"    device_authorization_url: {server.device_authorization_url}\n"
        )
        extra = "    redirect_uri: http://127.0.0.1:0/callback\n" if grant == "authorization_code" else ""
        return f"""\
version: 1
servers:
  embedded:
    # discovery alone would do too: issuer: {server.issuer}
    token_url: {server.token_url}
{endpoint}    revoke_url: {server.rfc7009_revoke_url}
    dialect: rfc6749
clients:
  cli:
    client_id: {server.default_public_client_id}   # a public client: no client_secret
profiles:
  local:
    server: embedded
    client: cli
    grant: {grant}
{extra}    refresh_margin: {margin}
"""
    client, account = server.default_client, server.default_account
    user = ""
    if grant == "password":
        user = f"    username: {account.username}\n    password: {account.password}\n"
    return f"""\
version: 1
servers:
  embedded:
    token_url: {server.token_url}
    dialect: teamserver            # or rfc6749: this server speaks both
    revoke_url: {server.revoke_url_template}
clients:
  er-studio:
    client_id: {client.client_id}
    client_secret: {client.secret}
profiles:
  local:
    server: embedded
    client: er-studio
    grant: {grant}
{user}    refresh_margin: {margin}
"""


def _write_new(path: str, text: str) -> None:
    """Create ``path`` (0600: it holds a client secret); never overwrite a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _close_stdout() -> None:
    """Point fd 1 at /dev/null so whoever reads our stdout sees the end of the profile."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tokenflow.testing",
        description="Run tokenflow's embedded OAuth server (Team Server and RFC 6749) on loopback; "
        "print a profile for it on stdout.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--lifetime", type=int, default=86400,
                        help="access token lifetime in seconds (default 86400)")
    parser.add_argument("--rotate", action="store_true",
                        help="issue a new refresh token on every refresh")
    parser.add_argument("--grant", choices=GRANTS, default="password",
                        help="the grant of the printed profile (default password)")
    parser.add_argument("--write", metavar="FILE",
                        help="save the profile in FILE (a new file) instead of printing it")
    args = parser.parse_args(argv)
    if args.write and os.path.lexists(args.write):
        sys.stderr.write(f"{args.write} exists: remove it or choose another name\n")
        return 2
    server = EmbeddedServer(port=args.port, access_token_lifetime=args.lifetime,
                            rotate_refresh_tokens=args.rotate)
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on port {args.port}: {exc.strerror or exc}\n")
        return 2
    try:
        return _serve(server, args)
    finally:
        server.stop()


def _serve(server: EmbeddedServer, args: argparse.Namespace) -> int:
    err = sys.stderr
    err.write(f"token endpoint: {server.token_url}\n")
    err.write(f"issuer (RFC 8414 metadata): {server.issuer}\n")
    if args.grant == "password":
        account = server.default_account
        err.write(f"account: {account.username} / {account.password}\n")
    elif args.grant == "authorization_code":
        err.write(f"authorization endpoint: {server.authorize_url} (approves at once)\n")
    elif args.grant == "device_code":
        err.write(f"approve device codes at: {server.verification_url}\n")
    profile = _profile(server, args.lifetime, args.grant)
    if args.write:
        try:
            _write_new(args.write, profile)
        except OSError as exc:
            err.write(f"cannot write {args.write}: {exc.strerror or exc}\n")
            return 2
        err.write(f"profile saved in {args.write}; try: tokenflow token local -c {args.write}\n")
    else:
        err.write("the profile follows on stdout (save it as tokenflow.yaml, then: tokenflow token local)\n")
        sys.stdout.write(profile)
    _close_stdout()
    with contextlib.suppress(KeyboardInterrupt):
        # SIGTERM ends the server like Ctrl-C; the handler only raises, so it is safe
        # wherever the main thread is (setting an Event from it can deadlock).
        signal.signal(signal.SIGTERM, _interrupt)
        err.write("serving until interrupted (Ctrl-C)\n")
        err.flush()
        while True:
            # Short naps: a signal delivered to a server thread only wakes the main thread
            # at its next bytecode, so a long sleep would delay SIGTERM for its length.
            time.sleep(0.25)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
