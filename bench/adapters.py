"""The cost of the adapters: ``python bench/adapters.py [--smoke] [--json PATH] [--no-check]``.

For each client (requests, httpx sync, httpx async, urllib3 with ``session.apply``) it measures
a GET of the embedded server's protected resource (``/api/resource``, which checks the token)
over keep-alive, through tokenflow with a fresh token in memory, against the same client
sending a fixed ``Authorization`` header. Target (issue 11): tokenflow / fixed <= 1.05x.

The server runs in a process of its own (``bench/server_process.py``), so the client's timings
do not include waiting for the server's threads. Rounds alternate the two variants, and each
figure is the median over rounds with the minimum and maximum; the ratio is the ratio of the
medians. ``run(url, config, rounds, calls)`` returns the figures; ``bench/run.py`` shows them
as its ``adapters`` row (``adapters_bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tokenflow
from tokenflow.api import Tokenflow

HERE = Path(__file__).resolve().parent

TARGET = 1.05
WARMUP = 50


@contextlib.contextmanager
def server_process() -> Iterator[dict[str, str]]:
    """The embedded server in its own process (``server_process.py``): its hello line."""
    proc = subprocess.Popen([sys.executable, str(HERE / "server_process.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.write("quit\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config_for(token_url: str, client_id: str, client_secret: str, username: str, password: str,
               cache_dir: Path) -> Tokenflow:
    data = {
        "version": 1,
        "servers": {"ts": {"token_url": token_url, "dialect": "rfc6749", "client_auth": "basic"}},
        "clients": {"app": {"client_id": client_id, "client_secret": client_secret}},
        "profiles": {"prod": {"server": "ts", "client": "app", "grant": "password",
                              "username": username, "password": password, "store": "memory"}},
    }
    return tokenflow.config_from_mapping(data, source="bench", cache_dir=cache_dir)


def _timed(call: Callable[[], int], calls: int) -> float:
    for _ in range(WARMUP):
        assert call() == 200
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


Measure = Callable[[int], float]  # takes the number of calls, returns seconds per call


def _clients(url: str, config: Tokenflow) -> dict[str, tuple[Measure, Measure]]:
    """Per client: (through tokenflow, fixed header) measurers taking ``calls``."""
    import httpx
    import requests
    import urllib3

    from tokenflow.adapters.httpx import TokenflowAuth as HttpxAuth
    from tokenflow.adapters.requests import TokenflowAuth as RequestsAuth

    session = config.session()
    fixed = session.headers()
    out: dict[str, Any] = {}

    req_auth, req_fixed = requests.Session(), requests.Session()
    req_auth.auth = RequestsAuth(session)
    req_fixed.headers.update(fixed)
    out["requests"] = (lambda n: _timed(lambda: req_auth.get(url).status_code, n),
                       lambda n: _timed(lambda: req_fixed.get(url).status_code, n))

    hx_auth, hx_fixed = httpx.Client(auth=HttpxAuth(session)), httpx.Client(headers=fixed)
    out["httpx"] = (lambda n: _timed(lambda: hx_auth.get(url).status_code, n),
                    lambda n: _timed(lambda: hx_fixed.get(url).status_code, n))

    def async_measure(auth: bool) -> Callable[[int], float]:
        def measure(n: int) -> float:
            async def main() -> float:
                kwargs: dict[str, Any] = {"auth": HttpxAuth(session)} if auth else {"headers": fixed}
                async with httpx.AsyncClient(**kwargs) as client:
                    async def call() -> int:
                        return (await client.get(url)).status_code
                    for _ in range(WARMUP):
                        assert await call() == 200
                    started = time.perf_counter()
                    for _ in range(n):
                        await call()
                    return (time.perf_counter() - started) / n
            return asyncio.run(main())
        return measure

    out["httpx-async"] = (async_measure(True), async_measure(False))

    pool = urllib3.PoolManager()

    def through_apply() -> int:
        target, headers = session.apply(url)
        return pool.request("GET", target, headers=headers).status

    out["urllib3"] = (lambda n: _timed(through_apply, n),
                      lambda n: _timed(lambda: pool.request("GET", url, headers=fixed).status, n))
    return out


def overheads(url: str, config: Tokenflow, calls: int) -> dict[str, float]:
    """Seconds each adapter adds to a request in this process, without the network: what the
    latency ratio measures, free of the noise of a loopback round trip on a busy machine."""
    import httpx
    import requests

    from tokenflow.adapters.httpx import TokenflowAuth as HttpxAuth
    from tokenflow.adapters.requests import TokenflowAuth as RequestsAuth

    session = config.session()
    fixed = session.headers()

    def per_call(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - started) / calls)
        return best

    prepared = requests.Request("GET", url).prepare()
    req_auth = RequestsAuth(session)
    hx_auth = HttpxAuth(session)
    request = httpx.Request("GET", url)

    def hx_sync() -> None:
        next(hx_auth.sync_auth_flow(request))

    async def hx_async() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await hx_auth.async_auth_flow(request).__anext__()
        return (time.perf_counter() - started) / calls

    async def hx_async_best() -> float:
        return min([await hx_async() for _ in range(5)])

    return {
        "requests": per_call(lambda: req_auth(prepared.copy())) - per_call(prepared.copy),
        "httpx": per_call(hx_sync),
        "httpx-async": asyncio.run(hx_async_best()),
        "urllib3": per_call(lambda: session.apply(url)) - per_call(lambda: dict(fixed)),
    }


def run(url: str, config: Tokenflow, rounds: int, calls: int) -> dict[str, dict[str, Any]]:
    """Figures per client: ``tokenflow`` and ``fixed`` latency (s; median, min, max and the
    per-round ``runs``, paired by index), their ``ratio`` (of the medians), and the
    ``overhead`` (s) the adapter adds in-process."""
    results: dict[str, dict[str, Any]] = {}
    added = overheads(url, config, max(calls * 10, 1000))
    for name, (through, fixed) in _clients(url, config).items():
        ours: list[float] = []
        theirs: list[float] = []
        for index in range(rounds):
            pair = [(ours, through), (theirs, fixed)]
            for sink, measure in pair if index % 2 == 0 else reversed(pair):
                sink.append(measure(calls))
        ratio = statistics.median(ours) / statistics.median(theirs)
        results[name] = {
            "tokenflow": {"median": statistics.median(ours), "min": min(ours), "max": max(ours),
                          "runs": ours},
            "fixed": {"median": statistics.median(theirs), "min": min(theirs), "max": max(theirs),
                      "runs": theirs},
            "ratio": ratio,
            "overhead": added[name],
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no target check")
    parser.add_argument("--no-check", action="store_true", help="report the target, never fail")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rounds, calls = (2, 20) if args.smoke else (21, 100)
    with server_process() as server, tempfile.TemporaryDirectory() as cache:
        url = server["url"] + "/api/resource"
        config = config_for(server["token_url"], server["client_id"], server["client_secret"],
                            server["username"], server["password"], Path(cache))
        results = run(url, config, rounds, calls)
        config.close()
    failed = False
    print(f"{'adapter':<12} {'tokenflow us':>13} {'fixed us':>10} {'ratio':>7} {'adds us':>8}"
          f"  target <= {TARGET}x")
    for name, figure in results.items():
        ok = figure["ratio"] <= TARGET
        failed = failed or not ok
        verdict = "" if args.smoke else ("PASS" if ok else "FAIL")
        print(f"{name:<12} {figure['tokenflow']['median'] * 1e6:>13.1f} "
              f"{figure['fixed']['median'] * 1e6:>10.1f} {figure['ratio']:>6.3f}x "
              f"{figure['overhead'] * 1e6:>8.1f}  {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 1 if failed and not (args.smoke or args.no_check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
