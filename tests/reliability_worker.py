"""A worker process for the reliability tests (tests/test_reliability.py, tests/test_file_store.py).

Run with ``sys.executable tests/reliability_worker.py MODE ARGS...``; it talks to the test over
stdin/stdout, one line per message, so the test can line processes up and release them together.

Modes:

``flight CONFIG PROFILE THREADS``
    Load the config, start THREADS threads that wait on a barrier, print ``ready`` and wait for a
    line on stdin (the test writes it to every worker at once). Then every thread calls
    ``session.token()``; the worker prints one JSON line ``{"tokens": [...], "errors": [...]}``.

``zygote CONFIG PROFILE``
    A fork server for kill -9 tests: everything is imported and the config loaded once; then each
    ``fork`` line on stdin forks a child that loops ``session.force_refresh()`` (printing
    ``looping PID`` after its first refresh), and the zygote prints ``reaped PID STATUS`` when the
    child dies (the test kills it with SIGKILL). Forking from this single-threaded process is safe
    and saves the interpreter start-up on every one of the many kills.

``hold-lock DIRECTORY KEY SECONDS``
    Take ``FileStore(DIRECTORY).lock(KEY)``, print ``locked``, hold it SECONDS, print ``releasing``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from tokenflow import load_config
from tokenflow.config.model import Config


def _say(line: str) -> None:
    # one write() per line: several processes may share the pipe, lines must not interleave
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def _warm_up() -> None:
    """Import what a refresh needs, so released callers race on the lock and not on imports."""
    import filelock  # noqa: F401

    import tokenflow.builtins.file_store
    import tokenflow.transport  # noqa: F401


def flight(config_path: str, profile: str, threads: int) -> int:
    _warm_up()
    session = load_config(config_path).session(profile)
    barrier = threading.Barrier(threads + 1)
    tokens: list[str] = []
    errors: list[str] = []

    def call() -> None:
        barrier.wait()
        try:
            tokens.append(session.token().access_token)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    _say("ready")
    sys.stdin.readline()  # the start signal, written to every worker at once
    barrier.wait()
    for worker in workers:
        worker.join()
    _say(json.dumps({"tokens": tokens, "errors": errors}))
    return 0


def _churn(config: Config, profile: str) -> None:  # runs in a forked child; never returns
    status = 0
    try:
        session = config.session(profile)
        session.force_refresh()
        _say(f"looping {os.getpid()}")
        deadline = time.monotonic() + 20  # an orphan (test gone) stops by itself
        while time.monotonic() < deadline:
            session.force_refresh()
    except BaseException as exc:
        _say(f"error {os.getpid()} {type(exc).__name__}: {exc}")
        status = 1
    finally:
        os._exit(status)


def zygote(config_path: str, profile: str) -> int:
    _warm_up()
    config = load_config(config_path)
    _say("ready")
    for line in sys.stdin:
        if line.strip() != "fork":
            break
        pid = os.fork()
        if pid == 0:
            _churn(config, profile)
        _, status = os.waitpid(pid, 0)
        _say(f"reaped {pid} {status}")
    return 0


def hold_lock(directory: str, key: str, seconds: float) -> int:
    from tokenflow.builtins.file_store import FileStore

    with FileStore(Path(directory)).lock(key):
        _say("locked")
        time.sleep(seconds)
        _say("releasing")  # written before the lock is let go: the test checks the order
    return 0


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "flight":
        return flight(args[0], args[1], int(args[2]))
    if mode == "zygote":
        return zygote(args[0], args[1])
    if mode == "hold-lock":
        return hold_lock(args[0], args[1], float(args[2]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
