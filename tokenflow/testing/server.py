"""The embedded OAuth 2.0 server: :class:`EmbeddedServer`, the one object tests hold.

Why this exists: tokenflow must interoperate with ER/Studio Team Server, whose token
endpoint is Spring Security OAuth2, with quirks no generic mock reproduces (token requests
sent as GET with every parameter in the query string, a lowercase ``bearer`` token type,
``expires_in`` counted from the time left, the same access token handed out again for a
repeated grant, refresh tokens reused on refresh, error bodies that echo the refresh token).
The embedded server reproduces them and also speaks plain RFC 6749 / RFC 7009, so clients
can be exercised against both dialects over real HTTP on loopback with nothing but the
standard library.

It also signs people in, for clients' interactive grants, with a test's HTTP client as the
browser: the authorization code grant with PKCE S256 and loopback redirects on any port
(``/authorize``, ``/api/oauth/authorize``), the device grant (``/device_authorization``, a
verification page at ``/device``), and RFC 8414 / OpenID Connect metadata.  Tests decide
what the "user" does with :meth:`EmbeddedServer.approve_authorization`,
:meth:`~EmbeddedServer.deny_authorization`, :meth:`~EmbeddedServer.approve_device`,
:meth:`~EmbeddedServer.deny_device`, :meth:`~EmbeddedServer.expire_device` and
:meth:`~EmbeddedServer.script_device_polls`.

This module is the facade: lifecycle (start, stop, context manager), addresses, fault
injection and test hooks, inspection.  The parts behind it, one job each:

========================================  ==================================================
:mod:`~tokenflow.testing.model`           ``ServerConfig``, defaults, ``IssuedToken``
:mod:`~tokenflow.testing.wire`            HTTP/1.1: sockets, bodies (chunked too), params
:mod:`~tokenflow.testing.quirks`          Team Server's (Spring's) answer shapes and client checks
:mod:`~tokenflow.testing.issuer`          token state: issue, reuse, refresh, rotate, revoke
:mod:`~tokenflow.testing.endpoints`       paths and what each endpoint checks
:mod:`~tokenflow.testing.authorize`       authorization code grant: redirects, PKCE, codes
:mod:`~tokenflow.testing.device`          device authorization grant (RFC 8628)
:mod:`~tokenflow.testing.discovery`       RFC 8414 / OpenID Connect metadata
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

from tokenflow.testing.authorize import AUTHORIZE_PATH, TEAMSERVER_AUTHORIZE_PATH, PendingAuthorization
from tokenflow.testing.device import DEVICE_AUTHORIZATION_PATH, VERIFICATION_PATH, DeviceRequest
from tokenflow.testing.discovery import OAUTH_METADATA, OPENID_CONFIGURATION, WELL_KNOWN
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
    DEFAULT_PUBLIC_CLIENT_ID,
    DEFAULT_REDIRECT_URIS,
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
    "DEFAULT_PUBLIC_CLIENT_ID",
    "DEFAULT_REDIRECT_URIS",
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
    "DeviceRequest",
    "EmbeddedServer",
    "IssuedToken",
    "PendingAuthorization",
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
        self._endpoints = Endpoints(
            self.config, self._issuer, self._ledger, self._script, lambda: self.url
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EmbeddedServer:
        """Bind the port (an ephemeral one by default) and serve from a daemon thread; idempotent."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = LoopbackHTTPServer(_App(self), self._requested_port)
            self._endpoints.authorizations.reopen()
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
        self._endpoints.authorizations.close()  # parked /authorize requests answer at once
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
    def issuer(self) -> str:
        """The issuer identifier of the metadata and of ``iss`` (``ServerConfig.issuer``)."""
        return self._endpoints.issuer_id()

    @property
    def authorize_url(self) -> str:
        """The RFC 6749 authorization endpoint (``/authorize``)."""
        return self.url + AUTHORIZE_PATH

    @property
    def teamserver_authorize_url(self) -> str:
        """Team Server's authorization endpoint (``/api/oauth/authorize``); same behaviour."""
        return self.url + TEAMSERVER_AUTHORIZE_PATH

    @property
    def device_authorization_url(self) -> str:
        return self.url + DEVICE_AUTHORIZATION_PATH

    @property
    def verification_url(self) -> str:
        """The device grant's ``verification_uri``: a page where a code is approved."""
        return self.url + VERIFICATION_PATH

    @property
    def metadata_url(self) -> str:
        """RFC 8414 metadata location for an issuer on this server (path inserted, §3.1)."""
        return self.url + WELL_KNOWN + OAUTH_METADATA + self._issuer_path()

    @property
    def openid_configuration_url(self) -> str:
        """OpenID Connect discovery location for an issuer on this server (path appended)."""
        return self.url + self._issuer_path() + WELL_KNOWN + OPENID_CONFIGURATION

    def _issuer_path(self) -> str:
        issuer = self.issuer
        return issuer[len(self.url) :].rstrip("/") if issuer.startswith(self.url + "/") else ""

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

    @property
    def default_public_client_id(self) -> str:
        """The first public client (no secret), for authorization and device code grants."""
        return next(iter(self.config.public_clients))

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

    # -- interactive sign-in hooks ---------------------------------------------

    def approve_authorization(
        self, state: str | None = None, *, user: str | None = None, timeout: float = 10.0
    ) -> PendingAuthorization:
        """Approve a parked authorization request (with ``auto_approve=False``).

        The oldest pending one, or the oldest with ``state``; as ``user`` (default: the
        first account).  Waits up to ``timeout`` seconds for the request to arrive, so a
        test may call it before its client's request reached the server; raises
        ``TimeoutError`` if none does.  The request is then answered with a redirect
        carrying a code.
        """
        username = user if user is not None else self.default_account.username
        return self._endpoints.authorizations.decide(state, timeout, username=username, denial=None)

    def deny_authorization(
        self,
        state: str | None = None,
        *,
        description: str = "The user denied the request",
        timeout: float = 10.0,
    ) -> PendingAuthorization:
        """Deny a parked authorization request: its redirect carries ``error=access_denied``."""
        return self._endpoints.authorizations.decide(
            state, timeout, username=None, denial=description
        )

    def pending_authorizations(self) -> list[PendingAuthorization]:
        """Authorization requests waiting for :meth:`approve_authorization`, oldest first."""
        return self._endpoints.authorizations.pending()

    def expire_authorization_codes(self) -> None:
        """Expire every authorization code issued so far: exchanging one is ``invalid_grant``."""
        self._endpoints.authorizations.expire_codes()

    def approve_device(
        self, user_code: str | None = None, *, user: str | None = None, timeout: float = 10.0
    ) -> DeviceRequest:
        """Approve a device authorization by its user code (any case, dashes optional).

        Without ``user_code``, the oldest pending one.  Waits up to ``timeout`` seconds for
        a matching request; raises ``TimeoutError`` if none comes.  The next poll gets a
        token (unless it is too early: ``slow_down``).
        """
        username = user if user is not None else self.default_account.username
        return self._endpoints.devices.decide(
            user_code, timeout, username=username, denial=""
        )

    def deny_device(
        self,
        user_code: str | None = None,
        *,
        description: str = "The user denied the request",
        timeout: float = 10.0,
    ) -> DeviceRequest:
        """Deny a device authorization: polls then answer ``access_denied``."""
        return self._endpoints.devices.decide(user_code, timeout, username=None, denial=description)

    def expire_device(self, user_code: str | None = None) -> None:
        """Expire one device authorization, or all: polls then answer ``expired_token``."""
        self._endpoints.devices.expire(user_code)

    def device_requests(self) -> list[DeviceRequest]:
        """Every device authorization so far, with its status, oldest first."""
        return self._endpoints.devices.requests()

    def script_device_polls(self, *responses: str | int | ScriptedResponse) -> None:
        """Make the next device-grant polls answer these, in order, before any check.

        A string is an RFC 8628 error (``"authorization_pending"``, ``"slow_down"``,
        ``"access_denied"``, ``"expired_token"``) as a 400 JSON body; an int is an HTTP
        status with a proxy's HTML page (``429`` adds ``Retry-After: 1``); a
        :class:`ScriptedResponse` is sent verbatim.  Other grants are not affected.
        """
        items: list[ScriptedResponse] = []
        for response in responses:
            if isinstance(response, str):
                items.append(error_response(400, response, f"Scripted {response}"))
            elif isinstance(response, int):
                headers = {"Retry-After": "1"} if response == 429 else None
                items.append(proxy_error(response, headers=headers))
            else:
                items.append(response)
        self._endpoints.devices.poll_script.extend(items)

    # -- inspection ------------------------------------------------------------

    @property
    def counts(self) -> collections.Counter[str]:
        """Request counts (a copy; missing keys read as 0).

        Keys: ``token`` (every token endpoint request), its grant type
        (``password``, ``client_credentials``, ``refresh_token``,
        ``authorization_code``, ``device_code`` for RFC 8628's URN, or ``invalid``
        when missing/unsupported), ``revoke``, ``resource``, ``authorize``,
        ``device_authorization``, ``device_verification`` and ``metadata``.
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
