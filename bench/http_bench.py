"""``fetch`` and ``refresh``: latency of a password grant and of a refresh over keep-alive.

Every client of :mod:`peers` does the same request against the embedded server running in a
process of its own; rounds rotate the order of the clients so all share the same noise. Each
round times ``http_calls`` calls per client (after untimed warm-ups that open the keep-alive
connection and import what is imported lazily) and keeps the median and the p99. The server's
request count must equal the calls made: a client that answered from a cache would be caught.

Targets (each a ratio to its floor): tokenflow with the memory store <= 1.2x a bare urllib3
request; <= 0.6x requests-oauthlib; tokenflow with the default file store <= 1.3x urllib3 plus
the floor write; and the file store as fast with 10,000 token files as with 3 (<= 1.1x).
"""

from __future__ import annotations

import statistics
import time

from harness import Result, Settings, Target, percentile, ratio_figure, ratio_of_medians, summary
from peers import FLOOR, FLOOR_WRITE, HttpClients, file_store_label

FEW_TOKEN_FILES = 3


def bench_http(kind: str, clients: HttpClients, settings: Settings) -> Result:
    result = Result(kind)
    ops = clients.fetchers if kind == "fetch" else clients.refreshers
    grant = "password" if kind == "fetch" else "refresh_token"
    names = list(ops)
    for name in names:  # open the keep-alive connection, import lazily loaded modules
        for _ in range(settings.http_warmups):
            op = ops[name]
            if op.prepare is not None:
                op.prepare()
            op.call()
    medians: dict[str, list[float]] = {n: [] for n in names}
    p99s: dict[str, list[float]] = {n: [] for n in names}
    clients.server.reset_counts()
    for round_ in range(settings.http_rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            op = ops[name]
            samples = []
            for _ in range(settings.http_calls):
                if op.prepare is not None:
                    op.prepare()
                started = time.perf_counter()
                op.call()
                samples.append((time.perf_counter() - started) * 1e6)
            medians[name].append(statistics.median(samples))
            p99s[name].append(percentile(samples, 99))
    # the floor + write client refreshes with the floor's refresh token: both count
    expected = settings.http_rounds * settings.http_calls * len(names)
    seen = clients.server.counts().get(grant, 0)
    result.info["server_requests"] = seen
    if seen != expected:
        raise RuntimeError(f"{kind}: the server saw {seen} {grant} requests, expected {expected}")
    for name in names:
        result.figures[f"median {name}"] = summary(medians[name], "us")
        result.figures[f"p99 {name}"] = summary(p99s[name], "us")
    for name in names:
        if name in ("tokenflow", FLOOR, FLOOR_WRITE):
            continue
        if name.startswith("tokenflow file store"):
            result.figures[f"ratio {name} / {FLOOR_WRITE}"] = ratio_figure(medians[name],
                                                                           medians[FLOOR_WRITE])
            continue
        result.figures[f"ratio tokenflow / {name}"] = ratio_figure(medians["tokenflow"],
                                                                   medians[name])
    result.figures[f"ratio tokenflow / {FLOOR}"] = ratio_figure(medians["tokenflow"], medians[FLOOR])
    result.figures[f"p99 ratio tokenflow / {FLOOR}"] = ratio_figure(p99s["tokenflow"], p99s[FLOOR])
    result.targets.append(Target(kind, "tokenflow (memory store) <= 1.2x bare urllib3", 1.2, "<=",
                                 ratio_of_medians(medians["tokenflow"], medians[FLOOR])))
    target = Target(kind, "tokenflow (memory store) <= 0.6x requests-oauthlib", 0.6, "<=")
    if "requests-oauthlib" in medians:
        target.value = ratio_of_medians(medians["tokenflow"], medians["requests-oauthlib"])
    else:
        target.note = "requests-oauthlib not installed"
    result.targets.append(target)
    few = file_store_label(FEW_TOKEN_FILES)
    many = file_store_label(settings.many_token_files)
    if few in medians:
        result.targets.append(Target(kind, f"{few} <= 1.3x {FLOOR_WRITE}", 1.3, "<=",
                                     ratio_of_medians(medians[few], medians[FLOOR_WRITE])))
    if few in medians and many in medians:
        result.figures[f"ratio {many} / {FEW_TOKEN_FILES} files"] = ratio_figure(medians[many],
                                                                                  medians[few])
        result.targets.append(Target(
            kind, f"file store flat: {settings.many_token_files:,} token files <= 1.1x "
            f"{FEW_TOKEN_FILES} files", 1.1, "<=", ratio_of_medians(medians[many], medians[few])))
    return result
