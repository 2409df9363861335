"""An event observer: one JSON line per tokenflow event, appended to ``$TOKENFLOW_EXAMPLE_EVENTS``.

Nothing is written while the variable is unset. Each line looks like::

    {"cache_key": "3f1c…", "detail": "", "duration_ms": 41.7, "error": null,
     "fingerprint": "a94a8fe5ccb1", "kind": "fetched", "pid": 4242, "profile": "prod",
     "time": 1800000000.123}

Events carry no secrets (a token appears only as its fingerprint), so neither does the file.

Observers are called synchronously, from whichever thread caused the event, possibly several at
once and from several processes: each line is written with a single ``write`` to a file opened
with ``O_APPEND``, so lines never interleave and no lock is needed. A failure to write raises;
tokenflow logs it on the ``tokenflow.plugins`` logger and carries on (an observer can never break
the token flow).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tokenflow.events import TokenEvent

__all__ = ["ENV_VAR", "append_event", "event_record"]

ENV_VAR = "TOKENFLOW_EXAMPLE_EVENTS"


def event_record(event: TokenEvent) -> dict[str, Any]:
    """The JSON object written for *event*."""
    return {
        "time": round(time.time(), 3),
        "pid": os.getpid(),
        "kind": event.kind.value,
        "profile": event.profile,
        "cache_key": event.cache_key,
        "fingerprint": event.fingerprint,
        "duration_ms": round(event.duration * 1000, 3),
        "error": event.error,
        "detail": event.detail,
    }


def append_event(event: TokenEvent) -> None:
    """Append *event* as one JSON line to the file named by ``$TOKENFLOW_EXAMPLE_EVENTS``."""
    target = os.environ.get(ENV_VAR)
    if not target:
        return
    line = (json.dumps(event_record(event), sort_keys=True) + "\n").encode()
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
