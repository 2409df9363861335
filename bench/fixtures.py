"""What the benchmarks run against: token servers (in this process or another), configs, profiles.

The latency benchmarks talk to the embedded server in a process of its own
(:func:`server_process`, see ``server_process.py``): in the client's process its threads would
compete for the GIL and hide the client's own costs. :class:`ServerInfo` is what a benchmark
needs of either kind of server.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import HERE

import tokenflow
from tokenflow.api import Tokenflow
from tokenflow.testing import EmbeddedServer

PROFILE = "prod"


@dataclass(frozen=True)
class ServerInfo:
    """What a benchmark needs of a token server, in this process or in another one."""

    token_url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    counts: Callable[[], dict[str, int]]
    reset_counts: Callable[[], None]
    url: str  # the server's base URL: ``url + "/api/resource"`` is its protected resource

    @classmethod
    def of(cls, server: EmbeddedServer) -> ServerInfo:
        client, account = server.default_client, server.default_account
        return cls(server.token_url, client.client_id, client.secret, account.username,
                   account.password, lambda: dict(server.counts), server.reset_counts,
                   server.url)


@contextlib.contextmanager
def server_process() -> Iterator[ServerInfo]:
    """The embedded server in its own process (see ``server_process.py``)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "server_process.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    lock = threading.Lock()

    def ask(command: str) -> str:
        with lock:
            stdin.write(command + "\n")
            stdin.flush()
            return stdout.readline().strip()

    def counts() -> dict[str, int]:
        return dict(json.loads(ask("counts")))

    def reset() -> None:
        if ask("reset") != "ok":
            raise RuntimeError("the server process did not reset its counters")

    try:
        hello = json.loads(stdout.readline())
        yield ServerInfo(hello["token_url"], hello["client_id"], hello["client_secret"],
                         hello["username"], hello["password"], counts, reset, hello["url"])
    finally:
        with contextlib.suppress(OSError):
            stdin.write("quit\n")
            stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config_text(server: ServerInfo, *, dialect: str, store: str = "file",
                secret_env: str | None = None) -> str:
    """A one-profile YAML config (profile ``prod``, password grant) for the CLI and the workers;
    with *secret_env*, the client secret is read from that variable (``{env: NAME}``), as the
    CLI's renewal path needs (a literal secret in the YAML keeps renewals on the full path)."""
    secret = f"{{env: {secret_env}}}" if secret_env else json.dumps(server.client_secret)
    return "\n".join([
        "version: 1",
        "servers:",
        "  ts:",
        f"    token_url: {json.dumps(server.token_url)}",
        f"    dialect: {dialect}",
        "clients:",
        "  app:",
        f"    client_id: {json.dumps(server.client_id)}",
        f"    client_secret: {secret}",
        "profiles:",
        f"  {PROFILE}:",
        "    server: ts",
        "    client: app",
        "    grant: password",
        f"    username: {json.dumps(server.username)}",
        f"    password: {json.dumps(server.password)}",
        f"    store: {store}",
        "",
    ])


def mapping_config(server: ServerInfo, dialect: str, cache_dir: Path,
                   store: Any = "memory") -> Tokenflow:
    """The same profile built in-process (``rfc6749`` dialect: POST with HTTP Basic)."""
    data = {
        "version": 1,
        "servers": {"ts": {"token_url": server.token_url, "dialect": dialect,
                           "client_auth": "basic"}},
        "clients": {"app": {"client_id": server.client_id, "client_secret": server.client_secret}},
        "profiles": {PROFILE: {"server": "ts", "client": "app", "grant": "password",
                               "username": server.username, "password": server.password,
                               "store": store}},
    }
    return tokenflow.config_from_mapping(data, source="bench", cache_dir=cache_dir)
