"""The embedded server's public values: its defaults, its configuration and what it issued.

Everything here is plain data a test builds or asserts on: :class:`ServerConfig` (every knob of
:class:`~tokenflow.testing.EmbeddedServer`), the default client and account, and
:class:`IssuedToken`, the server-side view of a token.  Behaviour lives elsewhere: the HTTP
plumbing in :mod:`~tokenflow.testing.wire`, token state in :mod:`~tokenflow.testing.issuer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DEFAULT_CLIENT_ID: Final = "6a2a39ba-9688-493d-b348-187468f599ae"
DEFAULT_CLIENT_SECRET: Final = "a28e0ca4-27cb-4361-bf97-3b26c612d66a"
DEFAULT_USERNAME: Final = "alice"
DEFAULT_PASSWORD: Final = "wonderland"
DEFAULT_SCOPE: Final = "read write"
MAX_BODY: Final = 1024 * 1024


class Account(NamedTuple):
    """A resource owner accepted by the password grant."""

    username: str
    password: str


class Client(NamedTuple):
    """A registered OAuth client (confidential: it always has a secret)."""

    client_id: str
    secret: str


def _default_accounts() -> dict[str, str]:
    return {DEFAULT_USERNAME: DEFAULT_PASSWORD}


def _default_clients() -> dict[str, str]:
    return {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}


@dataclass(frozen=True)
class ServerConfig:
    """Behaviour of an :class:`EmbeddedServer`; defaults model Team Server.

    Every knob exists because some real server behaves that way: ``allow_get``
    / ``allow_post`` model GET-only legacy servers and servers refusing GET,
    ``invalid_client_status=400`` models servers that answer bad client
    credentials with 400 and no ``WWW-Authenticate``, ``clock`` lets tests
    expire tokens without sleeping, ``date_offset`` skews the ``Date`` header
    like a server with a wrong clock, and ``latency`` makes token requests slow.
    Lifetimes are in seconds; ``refresh_token_lifetime=None`` never expires.
    """

    accounts: Mapping[str, str] = field(default_factory=_default_accounts)
    clients: Mapping[str, str] = field(default_factory=_default_clients)
    default_scope: str = DEFAULT_SCOPE
    access_token_lifetime: float = 86400
    refresh_token_lifetime: float | None = 30 * 86400
    rotate_refresh_tokens: bool = False
    allow_get: bool = True
    allow_post: bool = True
    invalid_client_status: int = 401
    clock: Callable[[], float] = time.time
    date_offset: float = 0.0
    latency: float = 0.0
    max_body: int = MAX_BODY
    max_recorded_requests: int = 10_000


@dataclass(frozen=True)
class IssuedToken:
    """Server-side view of an access token, for assertions in tests."""

    access_token: str
    refresh_token: str | None
    client_id: str
    username: str | None
    scope: str
    expires_at: float
