"""The events the engine reports to ``tokenflow_event`` observers.

One frozen dataclass with a ``kind`` rather than a class per event: observers filter on an enum,
new kinds do not break old observers, and an event is cheap to build. Events never carry a
secret: tokens appear only as a :func:`~tokenflow.tokens.fingerprint`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EventKind", "TokenEvent"]


class EventKind(enum.StrEnum):
    """What happened. ``str`` values so sinks can log or tag metrics with them directly."""

    CACHE_HIT = "cache_hit"  # a fresh token was read from the store (not from memory)
    FETCHED = "fetched"  # the profile's grant ran and succeeded
    REFRESHED = "refreshed"  # the refresh grant succeeded
    REFRESH_REJECTED = "refresh_rejected"  # the server refused the refresh token
    REAUTHENTICATED = "reauthenticated"  # the grant ran again after a refused refresh
    RETRIED = "retried"  # a request was retried after a transient failure
    STALE_SERVED = "stale_served"  # refresh failed transiently; the still-valid token was used
    FAILED = "failed"  # a request failed and the caller got an error
    STORED = "stored"  # a token was saved to the store
    DELETED = "deleted"  # a token was removed from the store (logout)
    REVOKED = "revoked"  # the server accepted a revocation
    LOGIN_REQUIRED = "login_required"  # a person must act: detail holds the URL or user code
    INVALIDATED = "invalidated"  # a resource server refused the token; it was forgotten (401)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """Something the engine did for one profile.

    :param kind: what happened.
    :param profile: the profile's name.
    :param cache_key: the store key (a hash; not secret).
    :param fingerprint: :func:`~tokenflow.tokens.fingerprint` of the access token involved, if any.
    :param duration: seconds the operation took (0 where it has no duration).
    :param error: the OAuth ``error`` code or a short error class name, for failures.
    :param detail: a short human-readable note (never a secret).
    :param retry_in: for ``retried``: seconds until the next try (the server's ``Retry-After``,
        else the backoff).
    """

    kind: EventKind
    profile: str
    cache_key: str = ""
    fingerprint: str | None = None
    duration: float = 0.0
    error: str | None = None
    detail: str = ""
    retry_in: float | None = None
