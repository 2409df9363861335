"""One process of the ``stampede`` benchmark (started by ``bench/run.py``, not by hand).

``python stampede_worker.py CONFIG PROFILE THREADS [cold]``: load the config, make the profile's
session and THREADS threads that wait for one signal, print ``ready``, wait for a byte on stdin (the
parent writes it to every worker at once), let every thread call ``session.token()`` and print
one JSON line: the access-token fingerprints seen, the wall-clock time each caller had its token,
and any errors.

Unless ``cold`` is given the worker imports what a refresh needs (the transport: urllib3, ssl)
before ``ready``, as a long-running process that has fetched a token before has: the stampede
then measures the lock and the wake-up, not eight interpreters importing urllib3 on two cores.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def main(argv: list[str]) -> int:
    config_path, profile, threads = argv[0], argv[1], int(argv[2])
    import tokenflow

    if argv[3:] != ["cold"]:
        import tokenflow.transport
    from tokenflow.tokens import fingerprint

    session = tokenflow.load_config(config_path).session(profile)
    go = threading.Event()
    done: list[float] = []
    seen: dict[str, int] = {}
    errors: list[str] = []
    guard = threading.Lock()

    def caller() -> None:
        go.wait()
        try:
            token = session.token()
        except Exception as exc:  # reported to the parent, which fails the benchmark
            with guard:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        finished = time.time()
        with guard:
            done.append(finished)
            key = fingerprint(token.access_token)
            seen[key] = seen.get(key, 0) + 1

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if not sys.stdin.buffer.read(1):
        go.set()
        for worker in workers:
            worker.join()
        return 1  # the parent went away
    go.set()
    for worker in workers:
        worker.join()
    sys.stdout.write(json.dumps({"done": done, "fingerprints": seen, "errors": errors}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
