"""Test support: an embedded OAuth 2.0 token server and its pytest plugin.

Shipped inside the package (not only in the project's tests) so the demo,
benchmarks and users' own test suites can run tokenflow against a realistic
Team Server / RFC 6749 endpoint without network access.  Standard library only;
the pytest plugin lives in :mod:`tokenflow.testing.pytest_plugin` so importing
this package never imports pytest.

The server is split by job (see :mod:`tokenflow.testing.server` for the map): ``server`` is the
:class:`EmbeddedServer` facade; ``model``, ``wire``, ``quirks``, ``issuer``, ``endpoints``,
``faults``, ``ledger``, ``authorize``, ``device`` and ``discovery`` are its parts;
:class:`HeadlessBrowser` (``browser``) stands in for a user's browser in tests of interactive
sign-in.  Import from this package: the names below are the public API; the modules behind
them may move.
"""

from __future__ import annotations

from tokenflow.testing.browser import HeadlessBrowser, Visit
from tokenflow.testing.server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID,
    DEFAULT_REDIRECT_URIS,
    DEFAULT_SCOPE,
    DEFAULT_USERNAME,
    OMIT,
    Account,
    Client,
    DeviceRequest,
    EmbeddedServer,
    IssuedToken,
    PendingAuthorization,
    RawRequest,
    RequestRecord,
    ScriptedResponse,
    ServerConfig,
    error_response,
    success_body,
    success_response,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_PUBLIC_CLIENT_ID",
    "DEFAULT_REDIRECT_URIS",
    "DEFAULT_SCOPE",
    "DEFAULT_USERNAME",
    "OMIT",
    "Account",
    "Client",
    "DeviceRequest",
    "EmbeddedServer",
    "HeadlessBrowser",
    "IssuedToken",
    "PendingAuthorization",
    "RawRequest",
    "RequestRecord",
    "ScriptedResponse",
    "ServerConfig",
    "Visit",
    "error_response",
    "success_body",
    "success_response",
]
