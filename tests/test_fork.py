"""``os.fork()`` while another thread refreshes: the child must neither deadlock nor share sockets.

A real fork of the test process, while a thread's token request is in flight against a slow
embedded server. The child reports through its exit code (and a pipe); the parent waits for it
with a deadline and kills it if it hangs, so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import profile_yaml

import tokenflow
import tokenflow.engine.session as session_module
from tokenflow.engine.session import TokenSession
from tokenflow.testing import EmbeddedServer
from tokenflow.testing.pytest_plugin import ServerFactory

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="needs os.fork")

WriteConfig = Callable[..., Path]
CHILD_DEADLINE = 60.0  # generous: the refresh takes 1.5 s; a deadlock never ends


def fork_and_run(body: Callable[[], bytes]) -> tuple[int, bytes]:
    """Run *body* in a forked child; its exit code (0 when *body* returned) and what it returned.

    The child always leaves through ``os._exit``; a child still running after the deadline is
    killed and reported as -9.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(read_end)
            os.write(write_end, body())
            code = 0
        except BaseException as exc:  # the parent sees the type in the pipe
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:500])
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = -9
            break
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as pipe:
        return code, pipe.read()


def session_for(server: EmbeddedServer, write_config: WriteConfig) -> TokenSession:
    config = tokenflow.load_config(write_config(profile_yaml(server)))
    return config.session("prod")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_fork_during_another_threads_refresh_does_not_deadlock_the_child(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a child that waited for the parent's renewal in flight (no thread of the child finishes
    # it) would now sleep past the child's deadline instead of the usual 5 s
    monkeypatch.setattr(session_module, "FLIGHT_WAIT", 2 * CHILD_DEADLINE)
    server = tokenflow_server_factory(latency=1.5)
    session = session_for(server, write_config)
    got: list[str] = []
    worker = threading.Thread(target=lambda: got.append(session.token().access_token))
    worker.start()
    try:
        # the worker holds the per-key lock and the store's lock while its request is served
        wait_until(lambda: server.counts["token"] >= 1 or bool(got))
        assert not got, "the request finished before the fork; the server is not slow enough"
        code, out = fork_and_run(lambda: session.token().access_token.encode())
    finally:
        worker.join(60)
    assert code == 0, f"child exit {code} (-9: deadlocked and killed): {out!r}"
    # the child waited for the parent's refresh and used its token: still one request
    assert out.decode() == got[0]
    assert server.counts["token"] == 1


def test_a_forked_child_opens_its_own_connections(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    session = session_for(tokenflow_server, write_config)
    first = session.token()  # the parent now has a pooled keep-alive connection
    parent_transport = session._transport
    assert parent_transport is not None

    def child() -> bytes:
        assert session._transport is None, "the child kept the parent's connection pool"
        return session.force_refresh().access_token.encode()

    code, out = fork_and_run(child)
    assert code == 0, out
    assert out and out.decode() != first.access_token
    # the parent's pool is untouched and still works
    assert session._transport is parent_transport
    assert session.force_refresh().access_token not in (first.access_token, out.decode())
