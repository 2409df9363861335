"""A "host" process for the redis store's tests (tests/test_redis_store.py).

Run as ``sys.executable tests/redis_worker.py MODE CONFIG PROFILE [THREADS]`` with its own HOME
and TOKENFLOW_CACHE_DIR; it talks to the test over stdin/stdout, one line per message.

``flight CONFIG PROFILE THREADS``
    Load the config, start THREADS threads waiting on a barrier, print ``ready``; on a line from
    stdin every thread calls ``session.token()``; print ``{"tokens": [...], "errors": [...]}``.
``once CONFIG PROFILE``
    Print ``ready``; on a line from stdin call ``session.token()`` once and print
    ``{"tokens": [...], "errors": [...]}`` (used for the holder that is killed or stopped).
"""

from __future__ import annotations

import json
import os
import sys
import threading


def _say(line: str) -> None:
    os.write(sys.stdout.fileno(), (line + "\n").encode())  # one write: lines never interleave


def main(argv: list[str]) -> int:
    mode, config_path, profile, *rest = argv
    threads = int(rest[0]) if mode == "flight" else 1
    import redis  # noqa: F401  # warm up: callers race on the lock, not on imports

    import tokenflow.transport  # noqa: F401
    from tokenflow import load_config

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
    sys.stdin.readline()
    barrier.wait()
    for worker in workers:
        worker.join()
    _say(json.dumps({"tokens": tokens, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
