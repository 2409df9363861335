"""Real redis-server processes for the redis store's tests (not in conftest.py: kept apart).

Each server runs in its own temporary directory without persistence (``--save ''
--appendonly no``), on a unix socket (the default) or a free loopback port, and is stopped by
its own PID. Without ``redis-server`` the tests skip, except in CI (``$CI`` set), where they fail:
CI must install it (``.ci/run`` does).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest


def require_redis_server() -> str:
    """The path of ``redis-server``; skip (fail in CI) without it or without redis-py."""
    found = shutil.which("redis-server")
    missing = None if found else "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        missing = "the redis package is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must provide it")
        pytest.skip(missing)
    assert found is not None
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps its address (and, with no persistence,
    loses its data, like a crashed Redis without AOF)."""

    def __init__(self, *, tcp: bool = False, password: str | None = None, tls: bool = False) -> None:
        self.binary = require_redis_server()
        # unix socket paths are limited to ~100 bytes: a short temporary directory
        self.directory = Path(tempfile.mkdtemp(prefix="tfredis"))
        self.socket = self.directory / "redis.sock"
        self.port = free_port() if tcp else 0
        self.password = password
        self.tls_port = free_port() if tls else 0
        self.ca_file = self.directory / "ca.pem"
        if tls:  # a throwaway CA (trustme) and a certificate for 127.0.0.1
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            ca.cert_pem.write_to_path(str(self.ca_file))
            cert.private_key_pem.write_to_path(str(self.directory / "key.pem"))
            cert.cert_chain_pems[0].write_to_path(str(self.directory / "cert.pem"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls_port:
            return f"rediss://127.0.0.1:{self.tls_port}/0"
        if self.port:
            auth = f":{self.password}@" if self.password else ""
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}"

    def start(self) -> RedisServer:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"), "--daemonize", "no",
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.tls_port:
            argv += ["--tls-port", str(self.tls_port), "--tls-auth-clients", "no",
                     "--tls-cert-file", str(self.directory / "cert.pem"),
                     "--tls-key-file", str(self.directory / "key.pem"),
                     "--tls-ca-cert-file", str(self.ca_file)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"redis-server did not start: {log}") from None
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()  # by its own PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        with suppress(FileNotFoundError):
            self.socket.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=str(self.socket), password=self.password,
                           socket_timeout=5, socket_connect_timeout=5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a unix socket, stopped after the test."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_tls_server() -> Iterator[RedisServer]:
    """A fresh redis-server speaking TLS on a loopback port, its CA in ``ca_file``."""
    server = RedisServer(tls=True).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_tcp_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a loopback port with a password (``requirepass``)."""
    server = RedisServer(tcp=True, password="s3cret-redis-pw-4242").start()
    try:
        yield server
    finally:
        server.cleanup()
