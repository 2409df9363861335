"""``python -m tokenflow.testing``: run the embedded server by hand, to try a profile against it.

It prints the token URL, the client and the account it accepts, and a complete profile for
both dialects, then serves until interrupted. Loopback only, and nothing is persisted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from tokenflow.testing.server import EmbeddedServer


def _profile(server: EmbeddedServer, lifetime: int) -> str:
    client, account = server.default_client, server.default_account
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
    grant: password
    username: {account.username}
    password: {account.password}
    refresh_margin: {max(1, lifetime // 4)}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tokenflow.testing",
        description="Run tokenflow's embedded OAuth server (Team Server and RFC 6749) on loopback.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--lifetime", type=int, default=86400,
                        help="access token lifetime in seconds (default 86400)")
    parser.add_argument("--rotate", action="store_true",
                        help="issue a new refresh token on every refresh")
    args = parser.parse_args(argv)
    server = EmbeddedServer(port=args.port, access_token_lifetime=args.lifetime,
                            rotate_refresh_tokens=args.rotate)
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on port {args.port}: {exc.strerror or exc}\n")
        return 2
    sys.stdout.write(f"token endpoint: {server.token_url}\n")
    sys.stdout.write("a profile for it (save as tokenflow.yaml, then: tokenflow token local):\n\n")
    sys.stdout.write(_profile(server, args.lifetime))
    sys.stdout.write("\nserving until interrupted (Ctrl-C)\n")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
