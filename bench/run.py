"""tokenflow's benchmark suite: ``python bench/run.py [--smoke] [--json PATH] [--no-check]``.

Starts the embedded OAuth server (:class:`tokenflow.testing.EmbeddedServer`) on loopback and
runs, in this order (each in its own module of ``bench/``):

``cli-cached`` (``cli_bench.py``)
    the cached ``tokenflow token`` process: wall time and peak RSS, beside its floor (a minimal
    script reading the token file), ``python -c pass`` and the peers' imports.
``cli-profiles`` (``cli_bench.py``)
    the cached ``tokenflow token`` with 10,000 profiles beside the same with 10.
``cli-renewal`` (``cli_bench.py``)
    ``tokenflow token --force-refresh`` beside its floor, a urllib3 one-shot script.
``hot-path`` (``hot_path_bench.py``)
    ``session.token()`` calls per second with a fresh in-memory token, 1 and 8 threads.
``fetch`` / ``refresh`` (``http_bench.py``, clients in ``peers.py``)
    latency of a password grant and of a refresh over keep-alive: tokenflow with the memory
    store and with the default file store (3 and 10,000 token files), against a bare urllib3
    request, urllib3 plus the floor write, requests-oauthlib and Authlib.
``stampede`` (``stampede_bench.py``)
    M processes x N threads asking for one token at the moment it must be refreshed (file
    store): token requests the server saw (must be 1) and the time until every caller has it,
    beside the same harness with a fresh token.
``profiles-scale`` (``scale_bench.py``)
    ``load_config`` (parse + validate) of generated configs of 1, 100 and 1,000 profiles.
``adapters`` (``adapters_bench.py``, the measuring in ``adapters.py``)
    a GET of the server's protected resource through each adapter (requests, httpx sync and
    async, urllib3 with ``session.apply``) with a fresh token, beside the same client sending a
    fixed ``Authorization`` header: <= 1.05x it.
``fleet`` (``fleet_bench.py``, the measuring in ``fleet.py``)
    H hosts x T threads at the moment a token shared through the redis store must be refreshed,
    against a ``redis-server`` of its own: token requests (must be 1) and the time until every
    caller has the new token. Skipped with a note without ``redis-server`` or the redis package.

``harness.py`` holds the settings, figures, targets and the table; ``children.py`` runs and
times child processes; ``memory.py`` measures their peak RSS; ``fixtures.py`` the servers and
configs; ``floors.py`` the floors every target is a ratio to.

Every figure is the median over repeated runs with the minimum and maximum. The table goes to
stdout; the JSON goes to ``bench/results/<UTC timestamp>.json`` or ``--json PATH``. Without
``--smoke`` the targets are checked (``--no-check`` skips that): PASS/FAIL per target, and the
exit status is 1 if one fails. ``--smoke`` runs everything with tiny counts, no targets.

POSIX only (``os.wait4``). See ``bench/README.md`` for the results and how to reproduce them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however run

from adapters_bench import bench_adapters
from cli_bench import bench_cli_cached, bench_cli_profiles, bench_cli_renewal
from fixtures import server_process
from fleet_bench import bench_fleet
from harness import (
    Result,
    Settings,
    default_json_path,
    log,
    machine,
    print_table,
    workdir,
)
from hot_path_bench import bench_hot_path
from http_bench import FEW_TOKEN_FILES, bench_http
from peers import HttpClients
from scale_bench import bench_profiles_scale
from stampede_bench import bench_stampede

from tokenflow.testing import EmbeddedServer

BENCHMARKS = ("cli-cached", "cli-profiles", "cli-renewal", "hot-path", "fetch", "refresh",
              "stampede", "profiles-scale", "adapters", "fleet")


def _http(name: str) -> Callable[[EmbeddedServer, Settings, Path], Result]:
    """fetch/refresh: against the server in a process of its own, see ``fixtures.py``."""

    def run(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
        notes: list[str] = []
        with server_process() as remote:
            clients = HttpClients(remote, work / name, notes,
                                  (FEW_TOKEN_FILES, settings.many_token_files))
            try:
                result = bench_http(name, clients, settings)
            finally:
                clients.close()
        result.notes[:0] = notes
        return result

    return run


RUNNERS: dict[str, Callable[[EmbeddedServer, Settings, Path], Result]] = {
    "cli-cached": bench_cli_cached,
    "cli-profiles": bench_cli_profiles,
    "cli-renewal": bench_cli_renewal,
    "hot-path": bench_hot_path,
    "fetch": _http("fetch"),
    "refresh": _http("refresh"),
    "stampede": bench_stampede,
    "profiles-scale": bench_profiles_scale,
    "adapters": bench_adapters,
    "fleet": bench_fleet,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny iteration counts, no thresholds (CI keeps the suite working)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="write the JSON results here (default bench/results/<timestamp>.json)")
    parser.add_argument("--no-check", action="store_true", help="do not check the targets")
    parser.add_argument("--only", metavar="NAMES",
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--processes", type=int, help="stampede processes (default 8; smoke 2)")
    parser.add_argument("--threads", type=int, help="stampede threads per process (32; smoke 4)")
    args = parser.parse_args(argv)
    if not hasattr(os, "wait4"):
        parser.error("the benchmarks need a POSIX system (os.wait4)")
    wanted = BENCHMARKS if not args.only else tuple(n.strip() for n in args.only.split(","))
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    settings = Settings.make(args.smoke, args.processes, args.threads)
    checked = not (args.smoke or args.no_check)

    started = time.perf_counter()
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results: list[Result] = []
    saved_env = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("TOKENFLOW_"):
            del os.environ[name]
    try:
        with workdir() as work, EmbeddedServer() as server:
            os.environ["TOKENFLOW_CACHE_DIR"] = str(work / "cache")
            os.environ["NO_PROXY"] = "127.0.0.1,localhost"
            for name in BENCHMARKS:
                if name not in wanted:
                    continue
                log(f"{name} ...")
                t0 = time.perf_counter()
                results.append(RUNNERS[name](server, settings, work))
                log(f"{name} done in {time.perf_counter() - t0:.1f}s")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)

    print_table(results, checked)
    if load_before is not None:
        sys.stdout.write(f"\nload average at start {', '.join(f'{x:.2f}' for x in load_before)} "
                         f"on {machine()['nproc']} CPUs (figures are noisy when it is high)\n")
    targets = [t for r in results for t in r.targets]
    document = {
        "meta": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": "smoke" if args.smoke else "full",
            "checked": checked,
            "duration_s": time.perf_counter() - started,
            "argv": ["bench/run.py", *(argv if argv is not None else sys.argv[1:])],
            "settings": dataclasses.asdict(settings),
            "machine": machine(),
            "loadavg_before": load_before,
        },
        "benchmarks": {r.name: r.as_dict() for r in results},
        "targets": [t.as_dict() for t in targets],
    }
    path = args.json or default_json_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(f"\nresults written to {path}\n")
    if checked and any(t.status == "FAIL" for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
