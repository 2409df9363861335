"""The ``fleet`` benchmark: H hosts x T threads sharing one token through the redis store.

``python bench/fleet.py [--hosts 4] [--threads 16] [--repeats 5] [--smoke] [--json PATH]``

Starts its own ``redis-server`` (temporary directory, no persistence, unix socket) and the
embedded OAuth server (rotating refresh tokens, 50 ms latency so the refresh is in flight while
the other callers arrive). Each repeat seeds the shared record with a token inside its refresh
margin, starts H "hosts" (``bench/stampede_worker.py`` processes, each with its own HOME and
cache directory), releases all their threads at once and reports the token requests the server
saw (must be 1) and the time until every caller had the new token. Figures are the median over
the repeats with the minimum and maximum, as in ``bench/run.py``; the exit status is 1 when a
repeat saw more than one request.

``bench/run.py`` shows it as its ``fleet`` row (``fleet_bench.py`` turns the dict of
:func:`bench_fleet` into a ``Result``). Needs ``tokenflow[redis]`` and ``redis-server`` on PATH;
skipped with a note otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however run
from stampede_bench import release_workers

HERE = Path(__file__).resolve().parent
PROFILE = "prod"


def unavailable() -> str | None:
    """Why the benchmark cannot run here (the ``redis`` package or ``redis-server`` missing)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install 'tokenflow[redis]')"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (not on PATH)"
    return None


def _start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = directory / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            if redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping():
                return proc, f"unix://{sock}"
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
        time.sleep(0.02)


def _config(server: Any, url: str) -> str:
    client, account = server.default_client, server.default_account
    store = "{redis: " + json.dumps({"url": url, "prefix": "bench"}) + "}"
    return "\n".join([
        "version: 1",
        "servers:",
        "  ts:",
        f"    token_url: {json.dumps(server.token_url)}",
        "    dialect: teamserver",
        "    retries: 0",
        "clients:",
        "  app:",
        f"    client_id: {json.dumps(client.client_id)}",
        f"    client_secret: {json.dumps(client.secret)}",
        "profiles:",
        f"  {PROFILE}:",
        "    server: ts",
        "    client: app",
        "    grant: password",
        f"    username: {json.dumps(account.username)}",
        f"    password: {json.dumps(account.password)}",
        f"    store: {store}",
        "    refresh_margin: 60",
        "",
    ])


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_fleet(hosts: int, threads: int, repeats: int, work: Path) -> dict[str, Any]:
    """Run the benchmark in *work*; returns requests per repeat and the time to serve all (ms)."""
    import tokenflow
    from tokenflow.testing import EmbeddedServer
    from tokenflow.tokens import fingerprint

    redis_dir = Path(tempfile.mkdtemp(prefix="tfbench"))  # short: unix socket path limit
    redis_proc, url = _start_redis(redis_dir)
    server = EmbeddedServer(rotate_refresh_tokens=True, latency=0.05).start()
    try:
        config_path = work / "tokenflow.yaml"
        config_path.write_text(_config(server, url), encoding="utf-8")
        session = tokenflow.load_config(config_path).session(PROFILE)
        session.token()  # a real token, whose refresh token the server knows
        requests: list[int] = []
        elapsed: list[float] = []
        worker = [sys.executable, str(HERE / "stampede_worker.py"), str(config_path), PROFILE,
                  str(threads)]
        for _ in range(repeats):
            current = session.store.load(session.cache_key)
            assert current is not None
            now = time.time()
            seeded = replace(current, expires_at=now + 30, obtained_at=now - 3600)
            session.store.save(session.cache_key, seeded)  # inside the 60 s refresh margin
            envs = [dict(os.environ, HOME=str(work / f"host{index}"),
                         TOKENFLOW_CACHE_DIR=str(work / f"host{index}" / "cache"),
                         NO_PROXY="127.0.0.1,localhost") for index in range(hosts)]
            released, reports = release_workers(worker, envs, server, what="fleet host")
            done = [t for r in reports for t in r["done"]]
            prints = {key for r in reports for key in r["fingerprints"]}
            if len(done) != hosts * threads or len(prints) != 1 or fingerprint(
                    seeded.access_token) in prints:
                raise RuntimeError(f"{len(done)} callers served with {len(prints)} tokens")
            requests.append(server.counts["token"])
            elapsed.append((max(done) - released) * 1000)
    finally:
        server.stop()
        redis_proc.terminate()  # by its own PID
        redis_proc.wait(timeout=10)
        shutil.rmtree(redis_dir, ignore_errors=True)
    return {"hosts": hosts, "threads_per_host": threads, "requests": requests,
            "ms": _summary(elapsed), "ms_per_repeat": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2 hosts x 4 threads, 1 repeat")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hosts, args.threads, args.repeats = 2, 4, 1
    reason = unavailable()
    if reason is not None:
        print(f"fleet: skipped ({reason})")
        return 0
    with tempfile.TemporaryDirectory(prefix="tokenflow-fleet-") as work:
        result = bench_fleet(args.hosts, args.threads, args.repeats, Path(work))
    ms = result["ms"]
    print(f"{'benchmark':<10} {'callers':>14} {'requests':>10} {'ms to serve all (median [min-max])':>36}")
    print(f"{'fleet':<10} {f'{args.hosts} x {args.threads}':>14} {max(result['requests']):>10} "
          f"{ms['median']:>20.1f} [{ms['min']:.1f}-{ms['max']:.1f}]")
    if args.json:
        args.json.write_text(json.dumps({"fleet": result}, indent=2), encoding="utf-8")
    return 0 if max(result["requests"]) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
