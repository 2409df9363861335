"""``adapters``: a request through each adapter against the same client with a fixed header.

The measuring is :func:`adapters.run` (issue 11, also runnable alone as ``bench/adapters.py``):
for requests, httpx (sync and async) and urllib3 with ``session.apply``, a GET of the embedded
server's protected resource (``/api/resource``, which checks the token) over keep-alive, through
tokenflow with a fresh token in memory, against the same client sending a fixed
``Authorization`` header: the floor. Rounds alternate the two variants. The server runs in a
process of its own (``fixtures.server_process``), as for ``fetch``/``refresh``.

Target per client: tokenflow / fixed header <= 1.05x (the ratio of the medians). The in-process
cost each adapter adds (no network) is shown beside it: it is what the ratio measures, free of
the noise of a loopback round trip on a busy machine.
"""

from __future__ import annotations

from pathlib import Path

import adapters
from fixtures import mapping_config, server_process
from harness import Result, Settings, Target, peer_available, ratio_figure, summary

from tokenflow.testing import EmbeddedServer

NEEDS = ("requests", "httpx")


def bench_adapters(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    """``server`` is unused: the resource is served by a server in a process of its own."""
    result = Result("adapters")
    missing = [name for name in NEEDS if not peer_available(name)]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install 'tokenflow[requests,httpx]')"
        result.notes.append(f"skipped: {reason}")
        result.targets.append(Target("adapters", f"through tokenflow <= {adapters.TARGET}x the "
                                     "same client with a fixed header", adapters.TARGET, "<=",
                                     note=reason))
        return result
    rounds, calls = settings.adapter_rounds, settings.adapter_calls
    result.info.update(rounds=rounds, calls_per_round=calls)
    with server_process() as remote:
        config = mapping_config(remote, "rfc6749", work / "adapters")
        try:
            figures = adapters.run(remote.url + "/api/resource", config, rounds, calls)
        finally:
            config.close()
    for name, fig in figures.items():
        ours = [s * 1e6 for s in fig["tokenflow"]["runs"]]
        fixed = [s * 1e6 for s in fig["fixed"]["runs"]]
        result.figures[f"{name} through tokenflow"] = summary(ours, "us")
        result.figures[f"{name} fixed header (floor)"] = summary(fixed, "us")
        result.figures[f"ratio {name} tokenflow / fixed header"] = ratio_figure(ours, fixed)
        result.figures[f"{name} adapter's in-process cost"] = summary([fig["overhead"] * 1e6],
                                                                      "us")
        result.targets.append(Target("adapters", f"{name} through tokenflow <= "
                                     f"{adapters.TARGET}x the same client with a fixed header",
                                     adapters.TARGET, "<=", fig["ratio"]))
    return result
