"""The logging sink: every event becomes a record on the ``tokenflow.events`` logger.

A stale token served because a refresh failed is a WARNING (the caller got a token and would
not otherwise know); failures and refused refreshes are INFO (the caller gets the exception, or
tokenflow recovers by signing in again); everything else is DEBUG. The CLI's ``-v`` shows all.
"""

from __future__ import annotations

import logging

from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import get_logger

log = get_logger("tokenflow.events")

_LEVELS = {
    EventKind.STALE_SERVED: logging.WARNING,
    EventKind.FAILED: logging.INFO,
    EventKind.REFRESH_REJECTED: logging.INFO,
    EventKind.REAUTHENTICATED: logging.INFO,
}


@hookimpl
def tokenflow_event(event: TokenEvent) -> None:
    level = _LEVELS.get(event.kind, logging.DEBUG)
    if not log.isEnabledFor(level):
        return
    parts = [f"{event.kind.value} profile={event.profile}"]
    if event.fingerprint:
        parts.append(f"fingerprint={event.fingerprint}")
    if event.duration:
        parts.append(f"took={event.duration * 1000:.1f}ms")
    if event.error:
        parts.append(f"error={event.error}")
    if event.detail:
        parts.append(event.detail)
    log.log(level, " ".join(parts))


def _wants(kind: EventKind) -> bool:
    """Whether the sink would write a record for *kind* now (the engine skips the event if not)."""
    return log.isEnabledFor(_LEVELS.get(kind, logging.DEBUG))


tokenflow_event.wants = _wants  # type: ignore[attr-defined]  # see the hook's spec
