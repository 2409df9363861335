"""An embedded OAuth 2.0 token server for demos, tests and benchmarks.

Why this exists: tokenflow must interoperate with ER/Studio Team Server, whose
token endpoint is Spring Security OAuth2.  That endpoint has quirks no generic
mock reproduces: token requests sent as GET with every parameter in the query
string, a lowercase ``bearer`` token type, ``expires_in`` computed from the time
left (86399 rather than 86400), the same access token handed out again for a
repeated grant, refresh tokens reused on refresh, and error bodies that echo the
refresh token back.  This module reproduces those behaviours and also speaks
plain RFC 6749 / RFC 7009, so clients can be exercised against both dialects over
real HTTP on loopback with nothing but the standard library.

The server never logs requests: request lines of the GET dialect carry passwords.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import enum
import hmac
import json
import re
import socket
import socketserver
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, NamedTuple, cast
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_CLIENT_ID: Final = "6a2a39ba-9688-493d-b348-187468f599ae"
DEFAULT_CLIENT_SECRET: Final = "a28e0ca4-27cb-4361-bf97-3b26c612d66a"
DEFAULT_USERNAME: Final = "alice"
DEFAULT_PASSWORD: Final = "wonderland"
DEFAULT_SCOPE: Final = "read write"
MAX_BODY: Final = 1024 * 1024

TOKEN_PATH: Final = "/api/oauth/token"
REVOKE_PREFIX: Final = "/api/revoketoken/"
RFC7009_REVOKE_PATH: Final = "/oauth/revoke"
RESOURCE_PATH: Final = "/api/resource"

_BIND_ADDRESS = "127.0.0.1"
_JSON = "application/json;charset=UTF-8"
_FORM = "application/x-www-form-urlencoded"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]+")
_GRANTS = frozenset({"password", "client_credentials", "refresh_token"})
_DRAIN_LIMIT = 16 * MAX_BODY
_FULL_AUTH = "Full authentication is required to access this resource"
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


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


@dataclass(frozen=True)
class RequestRecord:
    """What a request looked like, without any secret values.

    Only parameter *names* are kept so a recorded history can be printed in
    a failing test without leaking passwords; ``client_auth`` is ``"basic"``,
    ``"body"``, ``"query"`` or None, telling how the client authenticated.
    """

    method: str
    path: str
    status: int
    grant_type: str | None
    client_auth: str | None
    query_params: tuple[str, ...]
    body_params: tuple[str, ...]
    content_type: str | None
    scripted: bool


@dataclass(frozen=True)
class RawRequest:
    """The last request verbatim (secrets included): tests check what was sent."""

    method: str
    target: str
    query: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class ScriptedResponse:
    """A response returned verbatim by the token endpoint (see ``script``).

    ``Content-Length`` and ``Date`` are added unless present in ``headers``;
    ``close=True`` closes the connection after the response.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    close: bool = False


class _Omit(enum.Enum):
    OMIT = "OMIT"


OMIT: Final = _Omit.OMIT
"""Pass as a field value to :func:`success_body` to drop that field."""


def _dumps(payload: Mapping[str, object]) -> bytes:
    # Spring's Jackson writes compact JSON; some clients are picky about it.
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def success_body(**fields: object) -> bytes:
    """Build a Spring-style token success body with overridden or omitted fields.

    Table tests need odd-but-real responses (``expires_in="3600"``, missing
    ``token_type``, ...); starting from the faithful shape keeps them honest.
    """
    payload: dict[str, object] = {
        "access_token": str(uuid.uuid4()),
        "token_type": "bearer",
        "refresh_token": str(uuid.uuid4()),
        "expires_in": 86399,
        "scope": DEFAULT_SCOPE,
    }
    for name, value in fields.items():
        if value is OMIT:
            payload.pop(name, None)
        else:
            payload[name] = value
    return _dumps(payload)


def success_response(status: int = 200, **fields: object) -> ScriptedResponse:
    """A :class:`ScriptedResponse` carrying :func:`success_body` with Spring's headers."""
    headers = {"Content-Type": _JSON, **dict(_NO_STORE)}
    return ScriptedResponse(status, headers, success_body(**fields))


def error_response(status: int, error: str, description: str) -> ScriptedResponse:
    """A :class:`ScriptedResponse` shaped like a Spring OAuth2 error."""
    headers = {"Content-Type": _JSON, **dict(_NO_STORE)}
    return ScriptedResponse(
        status, headers, _dumps({"error": error, "error_description": description})
    )


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False


def _json_reply(
    status: int, payload: Mapping[str, object], headers: Iterable[tuple[str, str]] = ()
) -> _Reply:
    return _Reply(status, [("Content-Type", _JSON), *_NO_STORE, *headers], _dumps(payload))


class _OAuthError(Exception):
    """Short-circuits request handling with an RFC 6749 style error body."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        super().__init__(description)
        self.reply = _json_reply(
            status, {"error": error, "error_description": description}, headers
        )
        self.reply.close = close


def _bad_request(description: str, *, close: bool = False) -> _OAuthError:
    return _OAuthError(400, "invalid_request", description, close=close)


def _method_not_allowed(method: str, allowed: str) -> _OAuthError:
    # Body as Spring's TokenEndpoint answers HttpRequestMethodNotSupportedException.
    return _OAuthError(
        405,
        "method_not_allowed",
        f"Request method '{method}' not supported",
        headers=[("Allow", allowed)],
    )


def _challenge(
    scheme: str, error: str, description: str, realm: str | None = None
) -> tuple[str, str]:
    realm_part = f'realm="{realm}", ' if realm else ""
    return (
        "WWW-Authenticate",
        f'{scheme} {realm_part}error="{error}", error_description="{description}"',
    )


def _unquote_strict(text: str, where: str, *, plus: bool) -> str:
    # Python's unquote silently keeps "%zz"; a real server would reject it.
    if _BAD_PERCENT.search(text):
        raise _bad_request(f"Malformed percent-encoding in {where}")
    if plus:
        text = text.replace("+", " ")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise _bad_request(f"Invalid UTF-8 in {where}") from None


def _parse_form(raw: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append(
                (_unquote_strict(name, where, plus=True), _unquote_strict(value, where, plus=True))
            )
    return pairs


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name for name, _ in parse_qsl(raw, keep_blank_values=True, errors="replace"))


def _is_form(ex: _Exchange) -> bool:
    # Only form bodies have parameter names; a JSON body parsed as a form would
    # be recorded whole, secrets included.
    ctype = (ex.content_type or "").split(";", 1)[0].strip().lower()
    return ex.method == "POST" and ctype == _FORM


def _normalize_scope(scope: str) -> str:
    # Spring parses scopes into a TreeSet: deduplicated and sorted.
    return " ".join(sorted(set(scope.split())))


@dataclass
class _Access:
    value: str
    client_id: str
    username: str | None
    scope: str
    expires_at: float
    refresh: str | None


@dataclass
class _Refresh:
    value: str
    client_id: str
    username: str | None
    scope: str
    expires_at: float | None
    access: str | None = None


@dataclass
class _Exchange:
    """One request in flight, filled in as handling learns more about it."""

    method: str
    target: str
    path: str
    query: str
    content_type: str | None
    authorization: str | None
    headers: dict[str, str]
    body: bytes = b""
    grant_type: str | None = None
    client_auth: str | None = None
    scripted: bool = False


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
            raise ValueError(
                "host must be '127.0.0.1' or 'localhost': the server only listens on loopback"
            )
        self.config = replace(config or ServerConfig(), **options)
        self.ssl_context = ssl_context
        self.host = host
        self._requested_port = port  # 0: an ephemeral port, chosen by start()
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: set[socket.socket] = set()
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._by_key: dict[tuple[str, str | None, str], str] = {}
        self._script: collections.deque[ScriptedResponse] = collections.deque()
        self._counts: collections.Counter[str] = collections.Counter()
        self._requests: collections.deque[RequestRecord] = collections.deque(
            maxlen=self.config.max_recorded_requests
        )
        self._last_raw: RawRequest | None = None
        self._errors: list[str] = []
        self._in_flight = 0
        self._in_flight_max = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EmbeddedServer:
        """Bind the port (an ephemeral one by default) and serve from a daemon thread; idempotent."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = _HTTPServer(self, self._requested_port)
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
        if body is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            body = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        all_headers = {"Content-Type": "text/html", **(headers or {})}
        self.script(*[ScriptedResponse(status, all_headers, body)] * n)

    def script(self, *responses: ScriptedResponse | tuple[int, Mapping[str, str], bytes]) -> None:
        """Queue responses the token endpoint returns verbatim, in order.

        Scripted responses are consumed before any validation, so they apply to
        whatever the client sends next (counted and recorded as usual).
        """
        items = [r if isinstance(r, ScriptedResponse) else ScriptedResponse(*r) for r in responses]
        with self._lock:
            self._script.extend(items)

    def clear_script(self) -> None:
        """Drop queued scripted and ``fail_next`` responses."""
        with self._lock:
            self._script.clear()

    def revoke_refresh_tokens(self) -> None:
        """Forget all refresh tokens: the next refresh gets ``invalid_grant``."""
        with self._lock:
            self._refresh.clear()

    def revoke_all(self) -> None:
        """Forget every access and refresh token, as a server restart would."""
        with self._lock:
            self._refresh.clear()
            self._access.clear()
            self._by_key.clear()

    def expire_refresh_tokens(self) -> None:
        """Expire all refresh tokens: the next refresh gets 401 ``invalid_token``."""
        with self._lock:
            now = self.config.clock()
            for refresh in self._refresh.values():
                refresh.expires_at = now - 1

    def expire_access_tokens(self) -> None:
        """Expire all access tokens (the resource endpoint then rejects them)."""
        with self._lock:
            now = self.config.clock()
            for access in self._access.values():
                access.expires_at = now - 1

    def issued_tokens(self) -> list[IssuedToken]:
        """Snapshot of the stored access tokens, expired ones included."""
        with self._lock:
            return [
                IssuedToken(a.value, a.refresh, a.client_id, a.username, a.scope, a.expires_at)
                for a in self._access.values()
            ]

    def is_valid_access_token(self, token: str) -> bool:
        with self._lock:
            access = self._access.get(token)
            return access is not None and access.expires_at > self.config.clock()

    def is_valid_refresh_token(self, token: str) -> bool:
        with self._lock:
            refresh = self._refresh.get(token)
            return refresh is not None and (
                refresh.expires_at is None or refresh.expires_at > self.config.clock()
            )

    @property
    def counts(self) -> collections.Counter[str]:
        """Request counts (a copy; missing keys read as 0).

        Keys: ``token`` (every token endpoint request), its grant type
        (``password``, ``client_credentials``, ``refresh_token``, or
        ``invalid`` when missing/unsupported), ``revoke`` and ``resource``.
        """
        with self._lock:
            return collections.Counter(self._counts)

    def reset_counts(self) -> None:
        """Zero the counters, the request history and ``in_flight_max``."""
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._in_flight_max = 0

    @property
    def requests(self) -> list[RequestRecord]:
        """Recorded requests, oldest first (bounded by ``max_recorded_requests``)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_raw_request(self) -> RawRequest | None:
        """The most recent request with its raw query string, body and headers."""
        with self._lock:
            return self._last_raw

    @property
    def in_flight_max(self) -> int:
        """Most token requests ever processed at once (1 means single flight)."""
        with self._lock:
            return self._in_flight_max

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected handler errors (answered as 500, never printed)."""
        with self._lock:
            return list(self._errors)

    # -- request handling ----------------------------------------------------

    def _http_date(self) -> str:
        return formatdate(self.config.clock() + self.config.date_offset, usegmt=True)

    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _record(self, ex: _Exchange, reply: _Reply) -> None:
        record = RequestRecord(
            method=ex.method,
            path=ex.path,
            status=reply.status,
            grant_type=ex.grant_type,
            client_auth=ex.client_auth,
            query_params=_names(ex.query),
            body_params=_names(ex.body.decode("latin-1")) if _is_form(ex) else (),
            content_type=ex.content_type,
            scripted=ex.scripted,
        )
        raw = RawRequest(ex.method, ex.target, ex.query, ex.body, ex.headers)
        with self._lock:
            self._requests.append(record)
            self._last_raw = raw

    def _route(self, ex: _Exchange) -> _Reply:
        if ex.path == TOKEN_PATH:
            return self._token_endpoint(ex)
        if ex.path == RFC7009_REVOKE_PATH:
            return self._rfc7009_revoke(ex)
        if ex.path.startswith(REVOKE_PREFIX):
            return self._team_revoke(ex)
        if ex.path == RESOURCE_PATH:
            return self._resource(ex)
        return _json_reply(404, {"error": "not_found", "error_description": "Not Found"})

    def _count(self, *keys: str) -> None:
        with self._lock:
            self._counts.update(keys)

    def _params(self, ex: _Exchange) -> tuple[dict[str, str], dict[str, str]]:
        """Merge query and form body like a servlet, rejecting repeated names (RFC 6749 3.2)."""
        pairs = [(n, v, "query") for n, v in _parse_form(ex.query, "query string")]
        if ex.method == "POST" and ex.body:
            if not _is_form(ex):
                raise _bad_request(f"Unsupported Content-Type: expected {_FORM}")
            try:
                text = ex.body.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad_request("Invalid UTF-8 in request body") from None
            pairs += [(n, v, "body") for n, v in _parse_form(text, "request body")]
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for name, value, source in pairs:
            if name in values:
                raise _bad_request(f"Parameter must not be repeated: {name}")
            values[name] = value
            sources[name] = source
        return values, sources

    def _invalid_client(self, description: str) -> _OAuthError:
        status = self.config.invalid_client_status
        headers = (
            [_challenge("Bearer", "invalid_client", description, "oauth")] if status == 401 else []
        )
        return _OAuthError(status, "invalid_client", description, headers=headers)

    def _authenticate(
        self, ex: _Exchange, params: Mapping[str, str], sources: Mapping[str, str]
    ) -> str:
        """Authenticate the client by HTTP Basic or parameters; return its id."""
        scheme, _, credentials = (ex.authorization or "").strip().partition(" ")
        if scheme.lower() == "basic":
            ex.client_auth = "basic"
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except ValueError:  # binascii.Error and UnicodeDecodeError both are
                raise _bad_request("Failed to decode basic authentication token") from None
            raw_id, colon, raw_secret = decoded.partition(":")
            if not colon:
                raise _bad_request("Invalid basic authentication token")
            # RFC 6749 2.3.1: id and secret are form-urlencoded (Appendix B: a space is "+")
            # before base64.
            client_id = _unquote_strict(raw_id, "basic credentials", plus=True)
            secret = _unquote_strict(raw_secret, "basic credentials", plus=True)
            if params.get("client_id", client_id) != client_id:
                raise self._invalid_client("Given client ID does not match authenticated client")
        elif "client_id" in params:
            ex.client_auth = sources["client_id"]
            client_id, secret = params["client_id"], params.get("client_secret", "")
        else:
            raise _OAuthError(
                401,
                "unauthorized",
                _FULL_AUTH,
                headers=[_challenge("Basic", "unauthorized", _FULL_AUTH, "oauth2/client")],
            )
        expected = self.config.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise self._invalid_client("Bad client credentials")
        return client_id

    def _token_endpoint(self, ex: _Exchange) -> _Reply:
        for source in (ex.query, ex.body.decode("latin-1") if _is_form(ex) else ""):
            for name, value in parse_qsl(source, keep_blank_values=True, errors="replace"):
                if name == "grant_type" and ex.grant_type is None:
                    ex.grant_type = value
        with self._lock:
            self._counts.update(("token", ex.grant_type if ex.grant_type in _GRANTS else "invalid"))
            self._in_flight += 1
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
        try:
            if self.config.latency > 0:
                time.sleep(self.config.latency)
            with self._lock:
                scripted = self._script.popleft() if self._script else None
            if scripted is not None:
                ex.scripted = True
                return _Reply(
                    scripted.status, list(scripted.headers.items()), scripted.body, scripted.close
                )
            return self._grant(ex)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _grant(self, ex: _Exchange) -> _Reply:
        allowed = [
            m for m, ok in (("GET", self.config.allow_get), ("POST", self.config.allow_post)) if ok
        ]
        if ex.method not in allowed:
            raise _method_not_allowed(ex.method, ", ".join(allowed))
        params, sources = self._params(ex)
        client_id = self._authenticate(ex, params, sources)
        grant = params.get("grant_type")
        if not grant:
            raise _bad_request("Missing grant type")
        requested = params.get("scope", "").strip()
        if grant == "password":
            username, password = params.get("username"), params.get("password")
            if username is None:
                raise _bad_request("Missing parameter: username")
            if password is None:
                raise _bad_request("Missing parameter: password")
            expected = self.config.accounts.get(username)
            if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
                raise _OAuthError(400, "invalid_grant", "Bad credentials")
            scope = _normalize_scope(requested or self.config.default_scope)
            return self._issue(client_id, username, scope, with_refresh=True)
        if grant == "client_credentials":
            # Spring's ClientCredentialsTokenGranter never returns a refresh token.
            scope = _normalize_scope(requested or self.config.default_scope)
            return self._issue(client_id, None, scope, with_refresh=False)
        if grant == "refresh_token":
            value = params.get("refresh_token")
            if not value:
                raise _bad_request("Missing parameter: refresh_token")
            return self._refresh_grant(client_id, value, requested)
        raise _OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")

    def _token_reply(self, access: _Access) -> _Reply:
        # Like Spring, expires_in is the time left, truncated: 86399 when fresh.
        payload: dict[str, object] = {"access_token": access.value, "token_type": "bearer"}
        if access.refresh is not None:
            payload["refresh_token"] = access.refresh
        payload["expires_in"] = max(0, int(access.expires_at - self.config.clock()))
        payload["scope"] = access.scope
        return _json_reply(200, payload)

    def _store(self, access: _Access) -> None:
        self._access[access.value] = access
        self._by_key[(access.client_id, access.username, access.scope)] = access.value
        if access.refresh is not None and access.refresh in self._refresh:
            self._refresh[access.refresh].access = access.value

    def _new_refresh(
        self, client_id: str, username: str | None, scope: str, now: float
    ) -> _Refresh:
        lifetime = self.config.refresh_token_lifetime
        refresh = _Refresh(
            str(uuid.uuid4()),
            client_id,
            username,
            scope,
            None if lifetime is None else now + lifetime,
        )
        self._refresh[refresh.value] = refresh
        return refresh

    def _issue(
        self, client_id: str, username: str | None, scope: str, *, with_refresh: bool
    ) -> _Reply:
        """Issue a token, or reuse the live one for this grant (Spring's DefaultTokenServices)."""
        with self._lock:
            now = self.config.clock()
            existing = self._access.get(self._by_key.get((client_id, username, scope), ""))
            if existing is not None and existing.expires_at > now:
                return self._token_reply(existing)
            refresh: _Refresh | None = None
            if existing is not None:
                # Spring drops the expired access token but keeps its refresh token if still valid.
                self._access.pop(existing.value, None)
                refresh = self._refresh.get(existing.refresh or "")
                if (
                    refresh is not None
                    and refresh.expires_at is not None
                    and refresh.expires_at <= now
                ):
                    del self._refresh[refresh.value]
                    refresh = None
            if with_refresh and refresh is None:
                refresh = self._new_refresh(client_id, username, scope, now)
            access = _Access(
                str(uuid.uuid4()),
                client_id,
                username,
                scope,
                now + self.config.access_token_lifetime,
                refresh.value if with_refresh and refresh is not None else None,
            )
            self._store(access)
            return self._token_reply(access)

    def _refresh_grant(self, client_id: str, value: str, requested: str) -> _Reply:
        """Refresh like Spring: checks in its order, errors echo the token (faithfully)."""
        with self._lock:
            now = self.config.clock()
            refresh = self._refresh.get(value)
            if refresh is None:
                raise _OAuthError(400, "invalid_grant", f"Invalid refresh token: {value}")
            if refresh.client_id != client_id:
                raise _OAuthError(
                    400, "invalid_grant", f"Wrong client for this refresh token: {value}"
                )
            self._drop_access(refresh.access)
            if refresh.expires_at is not None and refresh.expires_at <= now:
                del self._refresh[value]
                description = f"Invalid refresh token (expired): {value}"
                raise _OAuthError(
                    401,
                    "invalid_token",
                    description,
                    headers=[_challenge("Bearer", "invalid_token", description)],
                )
            scope = refresh.scope
            if requested:
                wanted = set(requested.split())
                if not wanted <= set(scope.split()):
                    shown = "[" + ", ".join(sorted(wanted)) + "]"
                    raise _OAuthError(
                        400,
                        "invalid_scope",
                        f"Unable to narrow the scope of the client authentication to {shown}.",
                    )
                scope = _normalize_scope(requested)
            if self.config.rotate_refresh_tokens:
                del self._refresh[value]
                refresh = self._new_refresh(client_id, refresh.username, refresh.scope, now)
            access = _Access(
                str(uuid.uuid4()),
                client_id,
                refresh.username,
                scope,
                now + self.config.access_token_lifetime,
                refresh.value,
            )
            self._store(access)
            return self._token_reply(access)

    def _drop_access(self, value: str | None, *, with_refresh: bool = False) -> bool:
        access = self._access.pop(value or "", None)
        if access is None:
            return False
        key = (access.client_id, access.username, access.scope)
        if self._by_key.get(key) == access.value:
            del self._by_key[key]
        if with_refresh and access.refresh is not None:
            self._refresh.pop(access.refresh, None)
        return True

    def _team_revoke(self, ex: _Exchange) -> _Reply:
        """``DELETE /api/revoketoken/<access token>``: revokes it and its refresh token."""
        self._count("revoke")
        raw = ex.path[len(REVOKE_PREFIX) :]
        if not raw or "/" in raw:
            return _json_reply(404, {"error": "not_found", "error_description": "Not Found"})
        if ex.method != "DELETE":
            raise _method_not_allowed(ex.method, "DELETE")
        token = _unquote_strict(raw, "path", plus=False)
        with self._lock:
            self._drop_access(token, with_refresh=True)
        return _Reply(200, [("Content-Type", "text/plain;charset=UTF-8")], b"revoke")

    def _rfc7009_revoke(self, ex: _Exchange) -> _Reply:
        """RFC 7009 revocation of an access token, or a refresh token and its access token."""
        self._count("revoke")
        if ex.method != "POST":
            raise _method_not_allowed(ex.method, "POST")
        params, sources = self._params(ex)
        client_id = self._authenticate(ex, params, sources)
        token = params.get("token")
        if not token:
            raise _bad_request("Missing parameter: token")
        with self._lock:
            found = self._access.get(token) or self._refresh.get(token)
            if found is not None and found.client_id != client_id:
                raise _OAuthError(400, "unauthorized_client", "Token was not issued to this client")
            if not self._drop_access(token):
                refresh = self._refresh.pop(token, None)
                if refresh is not None:
                    self._drop_access(refresh.access)
        return _Reply(200, list(_NO_STORE), b"")

    def _resource(self, ex: _Exchange) -> _Reply:
        """A protected resource, so clients can prove the tokens they got work."""
        self._count("resource")
        if ex.method != "GET":
            raise _method_not_allowed(ex.method, "GET")
        params, _ = self._params(ex)
        scheme, _, credentials = (ex.authorization or "").strip().partition(" ")
        token = (
            credentials.strip() if scheme.lower() == "bearer" else params.get("access_token", "")
        )
        if not token:
            challenge = _challenge("Bearer", "unauthorized", _FULL_AUTH, "oauth")
            raise _OAuthError(401, "unauthorized", _FULL_AUTH, headers=[challenge])
        with self._lock:
            access = self._access.get(token)
            now = self.config.clock()
            if access is not None and access.expires_at > now:
                return _json_reply(
                    200,
                    {
                        "ok": True,
                        "user": access.username,
                        "client_id": access.client_id,
                        "scope": access.scope,
                    },
                )
        if access is None:
            description = f"Invalid access token: {token}"
        else:
            description = f"Access token expired: {token}"
        challenge = _challenge("Bearer", "invalid_token", description, "oauth")
        raise _OAuthError(401, "invalid_token", description, headers=[challenge])


class _HTTPServer(ThreadingHTTPServer):
    """Loopback HTTP server that hands TLS handshakes to the handler threads."""

    daemon_threads = True

    def __init__(self, owner: EmbeddedServer, port: int = 0) -> None:
        self.owner = owner
        super().__init__((_BIND_ADDRESS, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = _BIND_ADDRESS, self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        context = self.owner.ssl_context
        if context is not None:
            # Handshake later, in the handler thread, so a slow client cannot block accept().
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: a test server must never print tracebacks (or requests)."""


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time on a keep-alive connection and replies."""

    protocol_version = "HTTP/1.1"
    server_version = "tokenflow-embedded"
    sys_version = ""
    timeout = 30
    # Without TCP_NODELAY, Nagle plus delayed ACKs can add ~40 ms to a response
    # (e.g. send_error's split writes), which would swamp keep-alive benchmarks.
    disable_nagle_algorithm = True

    @property
    def _owner(self) -> EmbeddedServer:
        return cast(_HTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: request lines of the GET dialect carry passwords."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return self._owner._http_date()

    def setup(self) -> None:
        super().setup()
        self._owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._owner._track(self.connection, False)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except OSError:
                return
        super().handle()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _handle(self) -> None:
        owner = self._owner
        split = urlsplit(self.path)
        ex = _Exchange(
            method=self.command,
            target=self.path,
            path=split.path,
            query=split.query,
            content_type=self.headers.get("Content-Type"),
            authorization=self.headers.get("Authorization"),
            headers=dict(self.headers.items()),
        )
        try:
            ex.body = self._read_body(owner.config.max_body)
            reply = owner._route(ex)
        except _OAuthError as exc:
            reply = exc.reply
        except Exception:
            owner._note_error(traceback.format_exc())
            reply = _json_reply(
                500, {"error": "server_error", "error_description": "Internal error"}
            )
        owner._record(ex, reply)
        self._write(reply)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            if self.headers["Transfer-Encoding"].strip().lower() != "chunked":
                raise _bad_request("Unsupported Transfer-Encoding", close=True)
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.command in ("POST", "PUT", "PATCH"):
                raise _OAuthError(411, "invalid_request", "Content-Length required", close=True)
            return b""
        if not _DIGITS.fullmatch(length_text.strip()):
            raise _bad_request("Invalid Content-Length", close=True)
        length = int(length_text)
        if length > limit:
            # Drain what we can so the client reads our 413 rather than a TCP reset.
            remaining = length if length <= _DRAIN_LIMIT else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise _OAuthError(413, "invalid_request", "Request body too large", close=True)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _bad_request("Truncated request body", close=True)
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self.rfile.readline(1026).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _bad_request("Malformed chunked body", close=True) from None
            if size < 0:
                raise _bad_request("Malformed chunked body", close=True)
            if size == 0:
                break
            total += size
            if total > limit:
                raise _OAuthError(413, "invalid_request", "Request body too large", close=True)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1026)
        while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):
            pass  # skip trailers
        return b"".join(chunks)

    def _write(self, reply: _Reply) -> None:
        """Send status line, headers and body in one write (one segment when small)."""
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = ""
        headers = list(reply.headers)
        present = {name.lower() for name, _ in headers}
        if "date" not in present:
            headers.insert(0, ("Date", self.date_time_string()))
        if "content-length" not in present:
            headers.append(("Content-Length", str(len(reply.body))))
        if reply.close or any(
            name.lower() == "connection" and value.lower() == "close" for name, value in headers
        ):
            self.close_connection = True
            if "connection" not in present:
                headers.append(("Connection", "close"))
        lines = [f"{self.protocol_version} {reply.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head + reply.body)
