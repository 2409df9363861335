"""An independent RFC 6749 token endpoint built on oauthlib, for testing tokenflow against it.

tokenflow's own embedded server (``tokenflow.testing``) was written together with the client, so
both could share a misreading of the RFC. This server shares nothing with tokenflow: oauthlib's
``TokenEndpoint`` and ``RevocationEndpoint`` do the protocol work (parameter checks, error codes
and statuses, token responses), this module only supplies the ``RequestValidator`` (accounts,
clients, in-memory tokens) and an HTTP front (``http.server.ThreadingHTTPServer`` on 127.0.0.1).

* Grants: ``password``, ``client_credentials`` (no refresh token, as RFC 6749 section 4.4.3
  advises) and ``refresh_token``, with rotation on or off (``rotate_refresh_tokens``).
* Client authentication: HTTP Basic with the form-urlencoded id and secret of RFC 6749 section
  2.3.1 (``client_secret_basic``), or ``client_id``/``client_secret`` body parameters
  (``client_secret_post``); using both at once is refused, as the RFC requires.
* RFC 7009 revocation at :attr:`IndependentServer.revoke_url`.
* POST only: any other method gets 405 with ``Allow: POST``.
* Faults: :meth:`IndependentServer.fail_next` (n answers with a status, 503 by default, before
  oauthlib sees the request), :attr:`IndependentServer.latency` (seconds to wait before answering),
  :meth:`IndependentServer.revoke_refresh_tokens`.
* Inspection: :attr:`IndependentServer.counts` (requests by grant type, plus ``total``, ``revoke``,
  ``failed`` for injected faults), :attr:`IndependentServer.requests` (method, path, grant type,
  client authentication method, status).

Fixtures ``independent_server`` and ``independent_server_factory(**options)``: a test module
imports ``independent_server_fixture`` and ``independent_server_factory_fixture`` (the functions
have other names than the fixtures, so a test's parameter does not shadow the import).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_plus

import pytest
from oauthlib.common import Request
from oauthlib.oauth2 import (
    BearerToken,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    RequestValidator,
    ResourceOwnerPasswordCredentialsGrant,
    RevocationEndpoint,
    TokenEndpoint,
)

__all__ = [
    "REVOKE_PATH",
    "TOKEN_PATH",
    "IndependentServer",
    "IndependentServerFactory",
    "RecordedRequest",
    "independent_server_factory_fixture",
    "independent_server_fixture",
]

TOKEN_PATH = "/oauth2/token"
REVOKE_PATH = "/oauth2/revoke"
GRANTS = ("password", "client_credentials", "refresh_token")
DEFAULT_SCOPES = ("read", "write")
ALLOWED_SCOPES = frozenset({"read", "write", "admin"})
# characters that must survive form-urlencoding in Basic credentials and in form bodies
DEFAULT_ACCOUNTS = {"carol": "c0rrect horse+battery&staple"}
DEFAULT_CLIENTS = {"tokenflow-interop": "s3cret:+/ é&=%"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received (parameter values are not kept: they hold secrets)."""

    method: str
    path: str
    grant_type: str | None
    client_auth: str | None  # "basic", "body" or None (not authenticated / not reached)
    status: int
    param_names: tuple[str, ...]


@dataclass
class _Grant:
    """What a token stands for."""

    client_id: str
    user: str | None
    scopes: list[str]


@dataclass
class _Access:
    grant: _Grant
    expires_at: float


@dataclass
class _Refresh:
    grant: _Grant
    revoked: bool = False


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _State:
    """Everything the validator reads and writes; guarded by ``lock``."""

    accounts: dict[str, str]
    clients: dict[str, str]
    clock: Callable[[], float]
    rotate: bool
    lock: threading.RLock = field(default_factory=threading.RLock)
    access: dict[str, _Access] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    last_client_auth: str | None = None  # how the current request's client authenticated


@dataclass
class _Client:
    """What oauthlib wants in ``request.client``: an object with ``client_id``."""

    client_id: str


class _Validator(RequestValidator):  # type: ignore[misc]
    """The policy oauthlib asks about: who the clients and users are, where tokens live."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state

    # -- clients -------------------------------------------------------------------------------
    def client_authentication_required(self, request: Request, *args: Any, **kwargs: Any) -> bool:
        return True  # every client of this server is confidential

    def authenticate_client(self, request: Request, *args: Any, **kwargs: Any) -> bool:
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            if request.client_secret is not None:
                return False  # RFC 6749 2.3: a client MUST NOT use more than one method
            try:
                pair = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            raw_id, colon, raw_secret = pair.partition(":")
            if not colon:
                return False
            # RFC 6749 2.3.1: both are application/x-www-form-urlencoded before base64
            client_id, secret, method = unquote_plus(raw_id), unquote_plus(raw_secret), "basic"
            if request.client_id is not None and request.client_id != client_id:
                return False
        else:
            client_id, secret, method = request.client_id, request.client_secret, "body"
            if client_id is None or secret is None:
                return False
        self.state.last_client_auth = method
        expected = self.state.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return False
        request.client = _Client(client_id)
        return True

    def authenticate_client_id(self, client_id: str, request: Request, *args: Any, **kwargs: Any) -> bool:
        return False  # no public clients

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        return grant_type in GRANTS

    # -- scopes --------------------------------------------------------------------------------
    def get_default_scopes(self, client_id: str, request: Request, *args: Any, **kwargs: Any) -> list[str]:
        return list(DEFAULT_SCOPES)

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        return all(scope in ALLOWED_SCOPES for scope in scopes)

    def get_original_scopes(
        self, refresh_token: str, request: Request, *args: Any, **kwargs: Any
    ) -> list[str]:
        with self.state.lock:
            return list(self.state.refresh[refresh_token].grant.scopes)

    # -- users and refresh tokens ---------------------------------------------------------------
    def validate_user(
        self, username: str, password: str, client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        expected = self.state.accounts.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return False
        request.user = username
        return True

    def validate_refresh_token(
        self, refresh_token: str, client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        with self.state.lock:
            record = self.state.refresh.get(refresh_token)
            if record is None or record.revoked or record.grant.client_id != client.client_id:
                return False
            request.user = record.grant.user
            return True

    def rotate_refresh_token(self, request: Request) -> bool:
        return self.state.rotate

    def save_bearer_token(
        self, token: Mapping[str, Any], request: Request, *args: Any, **kwargs: Any
    ) -> None:
        grant = _Grant(request.client.client_id, request.user, list(request.scopes or []))
        with self.state.lock:
            self.state.access[token["access_token"]] = _Access(
                grant, self.state.clock() + float(token["expires_in"])
            )
            new = token.get("refresh_token")
            old = request.refresh_token if request.grant_type == "refresh_token" else None
            if new and new != old:
                self.state.refresh[new] = _Refresh(grant)
                if old is not None:
                    self.state.refresh[old].revoked = True  # rotated: the old one is spent

    # -- RFC 7009 --------------------------------------------------------------------------------
    def revoke_token(
        self, token: str, token_type_hint: str | None, request: Request, *args: Any, **kwargs: Any
    ) -> None:
        with self.state.lock:
            record = self.state.refresh.get(token)
            if record is not None:
                record.revoked = True
                # revoking the refresh token revokes the grant's access tokens too
                for value, access in list(self.state.access.items()):
                    if access.grant is record.grant:
                        del self.state.access[value]
            self.state.access.pop(token, None)


class _Endpoint(TokenEndpoint, RevocationEndpoint):  # type: ignore[misc]
    """oauthlib's token and revocation endpoints with the three grants this server offers."""

    def __init__(self, validator: _Validator, token_expires_in: int) -> None:
        bearer = BearerToken(validator, expires_in=token_expires_in)
        TokenEndpoint.__init__(
            self,
            default_grant_type="password",
            grant_types={
                "password": ResourceOwnerPasswordCredentialsGrant(validator),
                "client_credentials": ClientCredentialsGrant(validator),
                "refresh_token": RefreshTokenGrant(validator),
            },
            default_token_type=bearer,
        )
        RevocationEndpoint.__init__(self, validator)


class IndependentServer:
    """An oauthlib-backed token endpoint on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        access_token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = False,
        clock: Callable[[], float] = time.time,
        latency: float = 0.0,
    ) -> None:
        self._state = _State(
            accounts=dict(accounts or DEFAULT_ACCOUNTS),
            clients=dict(clients or DEFAULT_CLIENTS),
            clock=clock,
            rotate=rotate_refresh_tokens,
        )
        self.username, self.password = next(iter(self._state.accounts.items()))
        self.client_id, self.client_secret = next(iter(self._state.clients.items()))
        self.access_token_lifetime = access_token_lifetime
        self.latency = latency
        self._endpoint = _Endpoint(_Validator(self._state), access_token_lifetime)
        self._faults: collections.deque[_Fault] = collections.deque()
        self._counts: collections.Counter[str] = collections.Counter()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> IndependentServer:
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
            name="independent-oauth-server", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._state.lock:
            connections = list(self._connections)
        for conn in connections:  # wake handler threads parked on keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> IndependentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def revoke_url(self) -> str:
        return self.url + REVOKE_PATH

    # -- faults ----------------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 503, headers: Mapping[str, str] | None = None) -> None:
        """Answer the next *n* requests with *status* (an HTML page) before oauthlib sees them."""
        body = f"<html><body><h1>{status}</h1>try again later</body></html>".encode()
        with self._state.lock:
            for _ in range(n):
                self._faults.append(_Fault(status, {"Content-Type": "text/html", **(headers or {})}, body))

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far (as an administrator would)."""
        with self._state.lock:
            for record in self._state.refresh.values():
                record.revoked = True

    # -- inspection ------------------------------------------------------------------------------
    @property
    def counts(self) -> collections.Counter[str]:
        with self._state.lock:
            return collections.Counter(self._counts)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._requests)

    def is_valid_access_token(self, value: str) -> bool:
        with self._state.lock:
            access = self._state.access.get(value)
            return access is not None and self._state.clock() < access.expires_at

    def is_valid_refresh_token(self, value: str) -> bool:
        with self._state.lock:
            record = self._state.refresh.get(value)
            return record is not None and not record.revoked

    def access_token_user(self, value: str) -> str | None:
        with self._state.lock:
            access = self._state.access.get(value)
            return None if access is None else access.grant.user

    # -- serving ---------------------------------------------------------------------------------
    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._state.lock:
            if active:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[
            int, dict[str, str], bytes]:
        """Answer one request: (status, headers, body)."""
        names = tuple(name for name, _ in parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        grant = dict(parse_qsl(body.decode("latin-1"))).get("grant_type") if path == TOKEN_PATH else None
        with self._state.lock:
            self._counts["total"] += 1
            if path == TOKEN_PATH:
                self._counts[grant if grant in GRANTS else "other"] += 1
            elif path == REVOKE_PATH:
                self._counts["revoke"] += 1
        if self.latency > 0:
            time.sleep(self.latency)
        status, out_headers, out_body, client_auth = self._answer(method, path, headers, body)
        with self._state.lock:
            self._requests.append(RecordedRequest(method, path, grant, client_auth, status, names))
        return status, out_headers, out_body

    def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[
            int, dict[str, str], bytes, str | None]:
        with self._state.lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            with self._state.lock:
                self._counts["failed"] += 1
            return fault.status, dict(fault.headers), fault.body, None
        if method != "POST":
            return 405, {"Allow": "POST", "Content-Type": "application/json"}, json.dumps(
                {"error": "invalid_request", "error_description": f"{method} is not allowed"}
            ).encode(), None
        if path not in (TOKEN_PATH, REVOKE_PATH):
            return 404, {"Content-Type": "application/json"}, b'{"error": "not_found"}', None
        uri = self.url + path
        text = body.decode("utf-8", "replace")
        with self._state.lock:  # oauthlib's endpoint and the validator serve one request at a time
            self._state.last_client_auth = None
            if path == TOKEN_PATH:
                out_headers, out_body, status = self._endpoint.create_token_response(
                    uri, http_method="POST", body=text, headers=dict(headers)
                )
            else:
                out_headers, out_body, status = self._endpoint.create_revocation_response(
                    uri, http_method="POST", body=text, headers=dict(headers)
                )
            client_auth = self._state.last_client_auth
        result_headers = {str(k): str(v) for k, v in (out_headers or {}).items()}
        result_headers.setdefault("Content-Type", "application/json")
        return int(status), result_headers, (out_body or "").encode("utf-8"), client_auth


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: IndependentServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        import socketserver

        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a test server stays silent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length and length.isdigit() else b""
        path = self.path.split("?", 1)[0]
        status, headers, payload = self.server.owner.handle(
            self.command, path, {k: v for k, v in self.headers.items()}, body
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _serve


class IndependentServerFactory(Protocol):
    def __call__(self, **options: Any) -> IndependentServer: ...


@pytest.fixture(name="independent_server_factory")
def independent_server_factory_fixture() -> Iterator[IndependentServerFactory]:
    """``independent_server_factory(**options)``: started servers, all stopped at teardown."""
    servers: list[IndependentServer] = []

    def make(**options: Any) -> IndependentServer:
        server = IndependentServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture(name="independent_server")
def independent_server_fixture(independent_server_factory: IndependentServerFactory) -> IndependentServer:
    """A started :class:`IndependentServer` with default options."""
    return independent_server_factory()
