"""``stampede``: M processes x N threads asking for one token at the moment it must be refreshed.

A real token (whose refresh token the server knows) is rewritten with
``tokenflow.base.cachefile.encode`` to expire in 30 s, inside its 60 s refresh margin; every
worker (``stampede_worker.py``) loads the config, parks its threads and says ``ready``; one byte
on each worker's stdin releases them all. The server must see exactly 1 token request and every
caller must get the same new token. The same harness with a fresh token (no refresh: every
caller reads the cache) is the floor: all callers served within 2x of it.

Workers import the transport before they say ``ready`` (a process that has fetched a token
before has); one more run per repeat with ``cold`` workers shows what a stampede of freshly
started processes adds (each imports urllib3 and ssl before it takes the lock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from children import child_env
from fixtures import PROFILE, ServerInfo, config_text
from harness import HERE, Result, Settings, Target, ratio_figure, ratio_of_medians, summary

import tokenflow
from tokenflow.testing import EmbeddedServer


def _seed_expiring(session: Any, now: float) -> str:
    """Rewrite the cached token so it is inside its refresh margin; returns its access token."""
    from tokenflow.base import cachefile

    token = session.store.load(session.cache_key)
    data = token.to_dict()
    data["obtained_at"] = now - 3570.0
    data["expires_at"] = now + 30.0  # lifetime 3600 s, margin 60 s: EXPIRING, still valid
    path = Path(session.store.path(session.cache_key))
    tmp = path.with_name(f".{path.name}.bench")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(cachefile.encode(data))
    os.replace(tmp, path)
    return str(token.access_token)


def release_workers(worker: list[str], envs: list[dict[str, str]], server: EmbeddedServer, *,
                    cwd: Path | None = None, what: str = "stampede worker",
                    ) -> tuple[float, list[dict[str, Any]]]:
    """Start one worker per env, wait until all are ready, release them at once; their reports.

    Shared by the stampede (processes of one host) and the fleet (hosts with their own homes).
    """
    procs = [subprocess.Popen(worker, env=env, cwd=cwd, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for env in envs]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                _, err = proc.communicate(timeout=30)
                raise RuntimeError(f"{what} failed: {err.decode(errors='replace')}")
        server.reset_counts()
        released = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"g")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"{what} failed: {err.decode(errors='replace')}")
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # our own child, by its handle
                proc.wait()
    errors = [e for r in reports for e in r["errors"]]
    if errors:
        raise RuntimeError(f"{what}'s callers failed: {errors[:3]}")
    return released, reports


def bench_stampede(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    from tokenflow.engine.session import State, classify
    from tokenflow.tokens import fingerprint

    result = Result("stampede")
    home = work / "stampede"
    home.mkdir()
    tokens_dir = home / "tokens"
    text = config_text(ServerInfo.of(server), dialect="teamserver",
                       store="{file: {path: " + json.dumps(str(tokens_dir)) + "}}")
    config_path = home / "tokenflow.yaml"
    config_path.write_text(text, encoding="utf-8")
    env = child_env(home / "cache", home)
    session = tokenflow.load_config(config_path).session(PROFILE)
    session.token()  # a real token, whose refresh token the server knows
    processes, threads = settings.stampede_processes, settings.stampede_threads
    result.info["processes"] = processes
    result.info["threads_per_process"] = threads
    requests: list[int] = []
    elapsed: list[float] = []
    fresh_elapsed: list[float] = []
    cold_elapsed: list[float] = []
    worker = [sys.executable, str(HERE / "stampede_worker.py"), str(config_path), PROFILE,
              str(threads)]
    for _ in range(settings.stampede_repeats):
        # the floor: the same harness, every caller answered from a fresh cached token
        fresh = session.force_refresh()
        released, reports = release_workers(worker, [env] * processes, server, cwd=home)
        if server.counts["token"]:
            raise RuntimeError("a caller asked the server for a token although it was fresh")
        if {k for r in reports for k in r["fingerprints"]} != {fingerprint(fresh.access_token)}:
            raise RuntimeError("callers did not all get the fresh cached token")
        fresh_elapsed.append((max(t for r in reports for t in r["done"]) - released) * 1000)

        for cold in (False, True):
            seeded = _seed_expiring(session, time.time())
            check = session.store.load(session.cache_key)
            if classify(check, time.time(), session.profile.refresh_margin) is not State.EXPIRING:
                raise RuntimeError("the seeded token is not inside its refresh margin")
            released, reports = release_workers([*worker, "cold"] if cold else worker,
                                                [env] * processes, server, cwd=home)
            took = _check_stampede(reports, seeded, processes * threads)
            requests.append(server.counts["token"])
            (cold_elapsed if cold else elapsed).append((took - released) * 1000)
    result.figures["token requests seen by the server"] = summary(requests, "requests",
                                                                  per_repeat=requests)
    result.figures["time until every caller has its token"] = summary(elapsed, "ms")
    result.figures["same harness, fresh token (floor)"] = summary(fresh_elapsed, "ms")
    result.figures["ratio at expiry / fresh token"] = ratio_figure(elapsed, fresh_elapsed)
    result.figures["cold workers: time until every caller has its token"] = summary(cold_elapsed,
                                                                                     "ms")
    result.targets.append(Target("stampede", f"exactly 1 request for {processes} processes x "
                                 f"{threads} threads", 1, "==", max(requests)))
    result.targets.append(Target("stampede", "all callers served <= 2x the same harness with a "
                                 "fresh token", 2.0, "<=", ratio_of_medians(elapsed, fresh_elapsed)))
    return result


def _check_stampede(reports: list[dict[str, Any]], seeded: str, callers: int) -> float:
    """Every caller got the same new token; returns when the last one had it."""
    from tokenflow.tokens import fingerprint

    done = [t for r in reports for t in r["done"]]
    prints: dict[str, int] = {}
    for report in reports:
        for key, count in report["fingerprints"].items():
            prints[key] = prints.get(key, 0) + count
    if len(done) != callers:
        raise RuntimeError(f"only {len(done)} of {callers} callers got a token")
    if fingerprint(seeded) in prints:
        raise RuntimeError("a caller was handed the expiring token instead of the new one")
    if len(prints) != 1:
        raise RuntimeError(f"callers got {len(prints)} different tokens")
    return float(max(done))
