"""The embedded server's public values: its defaults, its configuration and what it issued.

Everything here is plain data a test builds or asserts on: :class:`ServerConfig` (every knob of
:class:`~tokenflow.testing.EmbeddedServer`), the default client and account, and
:class:`IssuedToken`, the server-side view of a token.  Behaviour lives elsewhere: the HTTP
plumbing in :mod:`~tokenflow.testing.wire`, token state in :mod:`~tokenflow.testing.issuer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DEFAULT_CLIENT_ID: Final = "6a2a39ba-9688-493d-b348-187468f599ae"
DEFAULT_CLIENT_SECRET: Final = "a28e0ca4-27cb-4361-bf97-3b26c612d66a"
DEFAULT_USERNAME: Final = "alice"
DEFAULT_PASSWORD: Final = "wonderland"
DEFAULT_SCOPE: Final = "read write"
MAX_BODY: Final = 1024 * 1024
DEFAULT_PUBLIC_CLIENT_ID: Final = "tokenflow-cli"
# RFC 8252 §7.3: a loopback redirect URI is registered without a port and matches any port.
DEFAULT_REDIRECT_URIS: Final = (
    "http://127.0.0.1/callback",
    "http://localhost/callback",
    "http://[::1]/callback",
)
METADATA_DOCUMENTS: Final = ("oauth-authorization-server", "openid-configuration")


class Account(NamedTuple):
    """A resource owner accepted by the password grant."""

    username: str
    password: str


class Client(NamedTuple):
    """A registered confidential OAuth client (it always has a secret).

    Public clients (no secret, RFC 6749 §2.1) are only ids: ``ServerConfig.public_clients``.
    """

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

    Interactive sign-in (authorization code, device code) and discovery:

    - ``public_clients``: ids of clients without a secret; they must use PKCE and may not
      use ``client_credentials``.  ``redirect_uris``: registered for every client; a
      loopback one (``http://127.0.0.1/…``, ``localhost``, ``[::1]``) matches any port.
    - ``auto_approve=True`` answers ``/authorize`` at once with a redirect carrying a code,
      as the default account; ``False`` parks the request until a test calls
      ``approve_authorization`` or ``deny_authorization`` (or ``authorization_wait``
      seconds of real time pass: then ``access_denied``).
    - ``require_state`` refuses an authorization request without ``state``;
      ``require_pkce`` makes PKCE mandatory for confidential clients too (always for
      public ones; only ``S256`` is accepted).  ``send_iss`` adds RFC 9207's ``iss`` to
      authorization responses.
    - ``issuer`` is the issuer identifier in metadata and ``iss``; ``"{url}"`` stands for the
      server's base URL, so ``"{url}/realms/x"`` gives an issuer with a path and
      ``"https://wrong.example"`` a deliberately wrong one.  ``metadata_documents`` says
      which well-known documents are served (drop one to test a client's fallback);
      ``metadata_overrides`` replaces fields (``OMIT`` drops one).
    - ``device_code_lifetime`` and ``device_poll_interval`` (RFC 8628): polling faster than
      the interval answers ``slow_down`` and adds 5 s to it; ``0`` never says slow_down.
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
    public_clients: Sequence[str] = (DEFAULT_PUBLIC_CLIENT_ID,)
    redirect_uris: Sequence[str] = DEFAULT_REDIRECT_URIS
    auto_approve: bool = True
    authorization_wait: float = 60.0
    authorization_code_lifetime: float = 60.0
    require_state: bool = True
    require_pkce: bool = False
    send_iss: bool = False
    issuer: str = "{url}"
    metadata_documents: Sequence[str] = METADATA_DOCUMENTS
    metadata_overrides: Mapping[str, object] = field(default_factory=dict)
    device_code_lifetime: float = 600.0
    device_poll_interval: int = 5

    def is_public(self, client_id: str) -> bool:
        """A known client without a secret (a confidential id of the same name wins)."""
        return client_id not in self.clients and client_id in self.public_clients

    def is_known(self, client_id: str) -> bool:
        return client_id in self.clients or client_id in self.public_clients


@dataclass(frozen=True)
class IssuedToken:
    """Server-side view of an access token, for assertions in tests."""

    access_token: str
    refresh_token: str | None
    client_id: str
    username: str | None
    scope: str
    expires_at: float
