"""The embedded OAuth 2.0 server: :class:`EmbeddedServer`, the one object tests hold.

Why this exists: tokenflow must interoperate with ER/Studio Team Server, whose token
endpoint is Spring Security OAuth2, with quirks no generic mock reproduces (token requests
sent as GET with every parameter in the query string, a lowercase ``bearer`` token type,
``expires_in`` counted from the time left, the same access token handed out again for a
repeated grant, refresh tokens reused on refresh, error bodies that echo the refresh token).
The embedded server reproduces them and also speaks plain RFC 6749 / RFC 7009, so clients
can be exercised against both dialects over real HTTP on loopback with nothing but the
standard library.

This module is the facade: lifecycle (start, stop, context manager), addresses, fault
injection and test hooks, inspection.  The parts behind it, one job each:

========================================  ==================================================
:mod:`~tokenflow.testing.model`           ``ServerConfig``, defaults, ``IssuedToken``
:mod:`~tokenflow.testing.wire`            HTTP/1.1: sockets, bodies (chunked too), params
:mod:`~tokenflow.testing.quirks`          Team Server's (Spring's) answer shapes and client checks
:mod:`~tokenflow.testing.issuer`          token state: issue, reuse, refresh, rotate, revoke
:mod:`~tokenflow.testing.endpoints`       paths and what each endpoint checks
:mod:`~tokenflow.testing.faults`          scripted responses: ``fail_next``, ``script``
:mod:`~tokenflow.testing.ledger`          request counts, history, the last raw request
========================================  ==================================================

The server never logs requests: request lines of the GET dialect carry passwords.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import replace
from email.utils import formatdate
from types import TracebackType
from typing import Any

from tokenflow.testing.endpoints import (
    RESOURCE_PATH,
    REVOKE_PREFIX,
    RFC7009_REVOKE_PATH,
    TOKEN_PATH,
    Endpoints,
)
from tokenflow.testing.faults import (
    OMIT,
    ResponseQueue,
    ScriptedResponse,
    error_response,
    proxy_error,
    success_body,
    success_response,
)
from tokenflow.testing.issuer import TokenIssuer
from tokenflow.testing.ledger import Ledger, RawRequest, RequestRecord
from tokenflow.testing.model import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SCOPE,
    DEFAULT_USERNAME,
    MAX_BODY,
    Account,
    Client,
    IssuedToken,
    ServerConfig,
)
from tokenflow.testing.wire import Exchange, LoopbackHTTPServer, Reply

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_SCOPE",
    "DEFAULT_USERNAME",
    "MAX_BODY",
    "OMIT",
    "RESOURCE_PATH",
    "REVOKE_PREFIX",
    "RFC7009_REVOKE_PATH",
    "TOKEN_PATH",
    "Account",
    "Client",
    "EmbeddedServer",
    "IssuedToken",
    "RawRequest",
    "RequestRecord",
    "ScriptedResponse",
    "ServerConfig",
    "error_response",
    "success_body",
    "success_response",
]


class _App:
    """What the HTTP layer calls back: routing, accounting, the clock, open connections."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._server.ssl_context

    @property
    def max_body(self) -> int:
        return self._server.config.max_body

    def http_date(self) -> str:
        config = self._server.config
        return formatdate(config.clock() + config.date_offset, usegmt=True)

    def track(self, conn: socket.socket, active: bool) -> None:
        self._server._track(conn, active)

    def route(self, ex: Exchange) -> Reply:
        return self._server._endpoints.route(ex)

    def note_error(self, text: str) -> None:
        self._server._ledger.note_error(text)

    def record(self, ex: Exchange, reply: Reply) -> None:
        self._server._ledger.record(ex, reply)


class EmbeddedServer:
    """A threaded OAuth 2.0 token server on 127.0.0.1, in the Team Server dialect.

    Options are a :class:`ServerConfig`, keyword overrides of its fields, or
    both (``EmbeddedServer(rotate_refresh_tokens=True)``).  ``ssl_context``
    serves HTTPS; ``host`` (``"127.0.0.1"`` or ``"localhost"``) is the name
    used in URLs, so it can match a test certificate.  The port is ephemeral
    and bound by :meth:`start`; fault injection and inspection helpers are all
    thread-safe.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        /,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("host must be '127.0.0.1' or 'localhost': the server only listens on loopback")
        self.config = replace(config or ServerConfig(), **options)
        self.ssl_context = ssl_context
        self.host = host
        self._requested_port = port  # 0: an ephemeral port, chosen by start()
        self._lock = threading.RLock()
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: set[socket.socket] = set()
        self._issuer = TokenIssuer(self.config)
        self._ledger = Ledger(self.config.max_recorded_requests)
        self._script = ResponseQueue()
        self._endpoints = Endpoints(self.config, self._issuer, self._ledger, self._script)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EmbeddedServer:
        """Bind the port (an ephemeral one by default) and serve from a daemon thread; idempotent."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = LoopbackHTTPServer(_App(self), self._requested_port)
            self._port = httpd.server_address[1]
            self._httpd = httpd
            # A short poll interval keeps stop() fast: tests start many servers.
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"tokenflow-embedded-{self._port}",
                daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections; idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<EmbeddedServer {where}>"

    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port; raises RuntimeError before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("EmbeddedServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:PORT`` (https with ``ssl_context``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def revoke_url_template(self) -> str:
        """Team Server revocation URL with a literal ``{token}`` placeholder."""
        return self.url + REVOKE_PREFIX + "{token}"

    @property
    def rfc7009_revoke_url(self) -> str:
        return self.url + RFC7009_REVOKE_PATH

    @property
    def resource_url(self) -> str:
        return self.url + RESOURCE_PATH

    @property
    def default_account(self) -> Account:
        """The first configured account, so tests need not repeat credentials."""
        username, password = next(iter(self.config.accounts.items()))
        return Account(username, password)

    @property
    def default_client(self) -> Client:
        """The first configured client."""
        client_id, secret = next(iter(self.config.clients.items()))
        return Client(client_id, secret)

    # -- fault injection and test hooks -------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``n`` token requests fail, e.g. with ``Retry-After``.

        Default body is the HTML error page a proxy in front of the server sends.
        """
        self.script(*[proxy_error(status, body, headers)] * n)

    def script(self, *responses: ScriptedResponse | tuple[int, Mapping[str, str], bytes]) -> None:
        """Queue responses the token endpoint returns verbatim, in order.

        Scripted responses are consumed before any validation, so they apply to
        whatever the client sends next (counted and recorded as usual).
        """
        self._script.extend(
            r if isinstance(r, ScriptedResponse) else ScriptedResponse(*r) for r in responses
        )

    def clear_script(self) -> None:
        """Drop queued scripted and ``fail_next`` responses."""
        self._script.clear()

    def revoke_refresh_tokens(self) -> None:
        """Forget all refresh tokens: the next refresh gets ``invalid_grant``."""
        self._issuer.revoke_refresh_tokens()

    def revoke_all(self) -> None:
        """Forget every access and refresh token, as a server restart would."""
        self._issuer.revoke_all()

    def expire_refresh_tokens(self) -> None:
        """Expire all refresh tokens: the next refresh gets 401 ``invalid_token``."""
        self._issuer.expire_refresh_tokens()

    def expire_access_tokens(self) -> None:
        """Expire all access tokens (the resource endpoint then rejects them)."""
        self._issuer.expire_access_tokens()

    def issued_tokens(self) -> list[IssuedToken]:
        """Snapshot of the stored access tokens, expired ones included."""
        return self._issuer.issued_tokens()

    def is_valid_access_token(self, token: str) -> bool:
        return self._issuer.is_valid_access_token(token)

    def is_valid_refresh_token(self, token: str) -> bool:
        return self._issuer.is_valid_refresh_token(token)

    # -- inspection ------------------------------------------------------------

    @property
    def counts(self) -> collections.Counter[str]:
        """Request counts (a copy; missing keys read as 0).

        Keys: ``token`` (every token endpoint request), its grant type
        (``password``, ``client_credentials``, ``refresh_token``, or
        ``invalid`` when missing/unsupported), ``revoke`` and ``resource``.
        """
        return self._ledger.counts

    def reset_counts(self) -> None:
        """Zero the counters, the request history and ``in_flight_max``."""
        self._ledger.reset()

    @property
    def requests(self) -> list[RequestRecord]:
        """Recorded requests, oldest first (bounded by ``max_recorded_requests``)."""
        return self._ledger.requests

    @property
    def last_raw_request(self) -> RawRequest | None:
        """The most recent request with its raw query string, body and headers."""
        return self._ledger.last_raw

    @property
    def in_flight_max(self) -> int:
        """Most token requests ever processed at once (1 means single flight)."""
        return self._ledger.in_flight_max

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected handler errors (answered as 500, never printed)."""
        return self._ledger.errors
