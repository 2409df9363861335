"""``fleet``: H hosts x T threads sharing one token through the redis store, at its expiry.

The measuring is :func:`fleet.bench_fleet` (issue 12, also runnable alone as
``bench/fleet.py``): its own ``redis-server`` and its own embedded server (rotating refresh
tokens, 50 ms latency so the refresh is in flight while the others arrive); each repeat seeds
the shared record inside its refresh margin and releases every thread of every host
(``stampede_worker.py`` processes) at once. Figures: the token requests the server saw and the
time until every caller had the new token. Target: exactly 1 request in every repeat.

Skipped, with a note and the target reported as not run, when the ``redis`` package or
``redis-server`` is missing: the rest of the suite must not depend on a Redis install.
"""

from __future__ import annotations

from pathlib import Path

import fleet
from harness import Result, Settings, Target, summary

from tokenflow.testing import EmbeddedServer


def bench_fleet(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    """``server`` is unused: the fleet needs a server with latency and rotation of its own."""
    hosts, threads = settings.fleet_hosts, settings.fleet_threads
    result = Result("fleet")
    target = Target("fleet", f"exactly 1 request for {hosts} hosts x {threads} threads", 1, "==")
    result.targets.append(target)
    reason = fleet.unavailable()
    if reason is not None:
        result.notes.append(f"skipped: {reason}")
        target.note = reason
        return result
    home = work / "fleet"
    home.mkdir()
    measured = fleet.bench_fleet(hosts, threads, settings.fleet_repeats, home)
    requests: list[int] = measured["requests"]
    result.info.update(hosts=hosts, threads_per_host=threads)
    result.figures["token requests seen by the server"] = summary(requests, "requests",
                                                                  per_repeat=requests)
    result.figures["time until every caller has its token"] = summary(measured["ms_per_repeat"],
                                                                      "ms")
    target.value = max(requests)
    return result
