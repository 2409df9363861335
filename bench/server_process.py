"""The embedded OAuth server in a process of its own (started by ``bench/run.py``).

Latency benchmarks must not share a GIL with the server: a server thread in the client's
process makes every client wait for thread switches, which hides the client's own costs.

Protocol, one line each way: on start it prints ``{"url", "token_url", "client_id",
"client_secret", "username", "password"}`` as JSON; then it answers ``counts`` (the server's
request counters as JSON), ``reset`` (``ok``) and ``quit`` (stops) read from stdin.
"""

from __future__ import annotations

import json
import sys

from tokenflow.testing import EmbeddedServer


def main() -> int:
    with EmbeddedServer() as server:
        client, account = server.default_client, server.default_account
        hello = {"url": server.url, "token_url": server.token_url, "client_id": client.client_id,
                 "client_secret": client.secret, "username": account.username,
                 "password": account.password}
        sys.stdout.write(json.dumps(hello) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                sys.stdout.write(json.dumps(dict(server.counts)) + "\n")
            elif command == "reset":
                server.reset_counts()
                sys.stdout.write("ok\n")
            elif command == "quit":
                break
            else:
                sys.stdout.write(json.dumps({"error": f"unknown command {command!r}"}) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
