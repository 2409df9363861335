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
* Interactive grants (issue 10): oauthlib's ``AuthorizationCodeGrant`` with PKCE required (S256
  only) at :attr:`IndependentServer.authorize_url`, which auto-approves as :attr:`user` and
  redirects to the client's loopback ``redirect_uri`` on any port (RFC 8252 section 7.3), or
  answers ``access_denied`` when :attr:`IndependentServer.deny_authorization` is set; oauthlib's
  RFC 8628 ``DeviceAuthorizationEndpoint`` and ``DeviceCodeGrant`` at
  :attr:`IndependentServer.device_url`, with :meth:`IndependentServer.approve_device`,
  :meth:`IndependentServer.deny_device` and :meth:`IndependentServer.script_device` (statuses such
  as ``slow_down`` or ``expired_token`` for the next polls); a public client (no secret,
  :data:`PUBLIC_CLIENT`); and RFC 8414 metadata built by oauthlib's ``MetadataEndpoint`` at
  ``/.well-known/oauth-authorization-server`` (or only at ``/.well-known/openid-configuration``
  with ``metadata_at="openid"``).
* POST only for the token, revocation and device endpoints: any other method gets 405 with
  ``Allow: POST``; the authorization and metadata endpoints are GET.
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
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import pytest
from oauthlib.common import Request
from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    AuthorizationEndpoint,
    BearerToken,
    ClientCredentialsGrant,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    MetadataEndpoint,
    OAuth2Error,
    RefreshTokenGrant,
    RequestValidator,
    ResourceOwnerPasswordCredentialsGrant,
    RevocationEndpoint,
    TokenEndpoint,
)

__all__ = [
    "DEVICE_GRANT",
    "PUBLIC_CLIENT",
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
AUTHORIZE_PATH = "/oauth2/authorize"
DEVICE_PATH = "/oauth2/device"
VERIFY_PATH = "/device"  # the verification page a person would open (not served: tests approve)
RFC8414_PATH = "/.well-known/oauth-authorization-server"
OIDC_PATH = "/.well-known/openid-configuration"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANTS = ("password", "client_credentials", "refresh_token", "authorization_code", DEVICE_GRANT)
PUBLIC_CLIENT = "tokenflow-public"
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
class _Code:
    """An authorization code waiting to be exchanged."""

    client_id: str
    redirect_uri: str
    user: str
    scopes: list[str]
    challenge: str | None
    challenge_method: str | None
    used: bool = False


@dataclass
class _Device:
    """A device authorization waiting for the person (RFC 8628)."""

    client_id: str
    user_code: str
    scopes: list[str]
    status: str = "authorization_pending"
    script: list[str] = field(default_factory=list)  # statuses for the next polls, in order


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
    public_clients: frozenset[str] = frozenset({PUBLIC_CLIENT})
    user: str = "carol"  # who approves browser and device sign-ins
    lock: threading.RLock = field(default_factory=threading.RLock)
    codes: dict[str, _Code] = field(default_factory=dict)
    devices: dict[str, _Device] = field(default_factory=dict)
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
        # public clients (RFC 6749 2.1) identify themselves with client_id alone
        return request.client_id not in self.state.public_clients or "Authorization" in request.headers

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
        if client_id not in self.state.public_clients:
            return False
        self.state.last_client_auth = "none"
        request.client = _Client(client_id)
        return True

    def validate_client_id(self, client_id: str, request: Request, *args: Any, **kwargs: Any) -> bool:
        return client_id in self.state.clients or client_id in self.state.public_clients

    # -- authorization code + PKCE (RFC 6749 4.1, RFC 7636, RFC 8252) ---------------------------
    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        # RFC 8252 7.3: a loopback redirect matches on any port
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost") \
            and parts.path == "/callback" and not parts.query

    def get_default_redirect_uri(self, client_id: str, request: Request, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect_uri must always be sent

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        return response_type == "code"

    def is_pkce_required(self, client_id: str, request: Request) -> bool:
        return True

    def save_authorization_code(
        self, client_id: str, code: Mapping[str, str], request: Request, *args: Any, **kwargs: Any
    ) -> None:
        with self.state.lock:
            self.state.codes[code["code"]] = _Code(
                client_id, request.redirect_uri, request.user, list(request.scopes or []),
                request.code_challenge, request.code_challenge_method,
            )

    def validate_code(
        self, client_id: str, code: str, client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        with self.state.lock:
            record = self.state.codes.get(code)
            if record is None or record.used or record.client_id != client_id:
                return False
            request.user = record.user
            request.scopes = list(record.scopes)
            return True

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: _Client, request: Request,
        *args: Any, **kwargs: Any,
    ) -> bool:
        with self.state.lock:
            record = self.state.codes.get(code)
            return record is not None and record.redirect_uri == redirect_uri

    def get_code_challenge(self, code: str, request: Request) -> str | None:
        with self.state.lock:
            record = self.state.codes.get(code)
            return None if record is None else record.challenge

    def get_code_challenge_method(self, code: str, request: Request) -> str | None:
        with self.state.lock:
            record = self.state.codes.get(code)
            return None if record is None else record.challenge_method

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Request, *args: Any, **kwargs: Any
    ) -> None:
        with self.state.lock:
            record = self.state.codes.get(code)
            if record is not None:
                record.used = True

    # -- device authorization (RFC 8628) ----------------------------------------------------------
    def validate_device_code(
        self, client_id: str, device_code: str, request: Request, *args: Any, **kwargs: Any
    ) -> str | None:
        with self.state.lock:
            record = self.state.devices.get(device_code)
            if record is None or record.client_id != client_id:
                return None
            status = record.script.pop(0) if record.script else record.status
            if status == "authorized":
                request.user = self.state.user
                request.scopes = list(record.scopes)
            return status

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: _Client, request: Request, *args: Any, **kwargs: Any
    ) -> bool:
        if client_id in self.state.public_clients:  # a public client cannot use these
            return grant_type not in ("password", "client_credentials")
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

    def save_token(self, token: Mapping[str, Any], request: Request, *args: Any, **kwargs: Any) -> None:
        self.save_bearer_token(token, request, *args, **kwargs)

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


class _Endpoint(TokenEndpoint, RevocationEndpoint, AuthorizationEndpoint):  # type: ignore[misc]
    """oauthlib's token, revocation and authorization endpoints with the grants this server offers."""

    def __init__(self, validator: _Validator, token_expires_in: int) -> None:
        bearer = BearerToken(validator, expires_in=token_expires_in)
        code_grant = AuthorizationCodeGrant(validator)
        code_grant._code_challenge_methods = {"S256": code_grant._code_challenge_methods["S256"]}
        TokenEndpoint.__init__(
            self,
            default_grant_type="password",
            grant_types={
                "password": ResourceOwnerPasswordCredentialsGrant(validator),
                "client_credentials": ClientCredentialsGrant(validator),
                "refresh_token": RefreshTokenGrant(validator),
                "authorization_code": code_grant,
                DEVICE_GRANT: DeviceCodeGrant(validator),
            },
            default_token_type=bearer,
        )
        RevocationEndpoint.__init__(self, validator)
        AuthorizationEndpoint.__init__(
            self, default_response_type="code", response_types={"code": code_grant},
            default_token_type=bearer,
        )


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
        device_interval: int | None = None,
        device_expires_in: int = 600,
        metadata_at: str = "rfc8414",
    ) -> None:
        self._state = _State(
            accounts=dict(accounts or DEFAULT_ACCOUNTS),
            clients=dict(clients or DEFAULT_CLIENTS),
            clock=clock,
            rotate=rotate_refresh_tokens,
        )
        self.user = self._state.user = next(iter(self._state.accounts))
        self.public_client_id = PUBLIC_CLIENT
        self.deny_authorization = False
        self.callback_iss: str | None = None  # sent as the callback's iss (RFC 9207) when set
        self.device_interval = device_interval
        self.device_expires_in = device_expires_in
        self.metadata_at = metadata_at
        self.metadata_issuer: str | None = None  # a wrong issuer for the metadata, in tests
        self.metadata_auth_methods = ["client_secret_post", "client_secret_basic", "none"]
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

    @property
    def authorize_url(self) -> str:
        return self.url + AUTHORIZE_PATH

    @property
    def device_url(self) -> str:
        return self.url + DEVICE_PATH

    @property
    def issuer(self) -> str:
        return self.url

    # -- the person's side -------------------------------------------------------------------------
    def _device_by_user_code(self, user_code: str) -> _Device:
        with self._state.lock:
            for record in self._state.devices.values():
                if record.user_code == user_code:
                    return record
        raise KeyError(f"no pending device authorization for user code {user_code!r}")

    def approve_device(self, user_code: str) -> None:
        """What the person does on the verification page: approve the sign-in as :attr:`user`."""
        with self._state.lock:
            self._device_by_user_code(user_code).status = "authorized"

    def deny_device(self, user_code: str) -> None:
        with self._state.lock:
            self._device_by_user_code(user_code).status = "access_denied"

    def script_device(self, statuses: list[str], user_code: str | None = None) -> None:
        """Answer the next polls with *statuses* (``slow_down``, ``expired_token``...) in order,
        for the device authorization of *user_code* (the only pending one when ``None``)."""
        with self._state.lock:
            records = [self._device_by_user_code(user_code)] if user_code else list(
                self._state.devices.values())
            assert len(records) == 1, "script_device needs the user code when several are pending"
            records[0].script.extend(statuses)

    def device_user_codes(self) -> list[str]:
        with self._state.lock:
            return [record.user_code for record in self._state.devices.values()]

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

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
               query: str = "") -> tuple[int, dict[str, str], bytes]:
        """Answer one request: (status, headers, body)."""
        names = tuple(name for name, _ in parse_qsl(body.decode("latin-1") or query, keep_blank_values=True))
        grant = dict(parse_qsl(body.decode("latin-1"))).get("grant_type") if path == TOKEN_PATH else None
        with self._state.lock:
            self._counts["total"] += 1
            if path == TOKEN_PATH:
                self._counts[grant if grant in GRANTS else "other"] += 1
            elif path == REVOKE_PATH:
                self._counts["revoke"] += 1
            elif path == AUTHORIZE_PATH:
                self._counts["authorize"] += 1
            elif path == DEVICE_PATH:
                self._counts["device_authorization"] += 1
            elif path in (RFC8414_PATH, OIDC_PATH):
                self._counts["metadata"] += 1
        if self.latency > 0:
            time.sleep(self.latency)
        if method == "GET" and path in (AUTHORIZE_PATH, RFC8414_PATH, OIDC_PATH):
            status, out_headers, out_body = self._get(path, query, headers)
            with self._state.lock:
                self._requests.append(RecordedRequest(method, path, None, None, status, names))
            return status, out_headers, out_body
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
        if path not in (TOKEN_PATH, REVOKE_PATH, DEVICE_PATH):
            return 404, {"Content-Type": "application/json"}, b'{"error": "not_found"}', None
        if path == DEVICE_PATH:
            status, out, payload = self._device_authorization(body.decode("utf-8", "replace"), headers)
            return status, out, payload, self._state.last_client_auth
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

    def _device_authorization(self, body: str, headers: Mapping[str, str]) -> tuple[
            int, dict[str, str], bytes]:
        """RFC 8628 section 3.1-3.2 through oauthlib's DeviceAuthorizationEndpoint."""
        endpoint = DeviceAuthorizationEndpoint(
            self._endpoint.request_validator, verification_uri=self.url + VERIFY_PATH,
            expires_in=self.device_expires_in, interval=self.device_interval,
            verification_uri_complete=self.url + VERIFY_PATH + "?user_code={user_code}",
        )
        with self._state.lock:
            self._state.last_client_auth = None
            out_headers, data, status = endpoint.create_device_authorization_response(
                self.url + DEVICE_PATH, http_method="POST", body=body, headers=dict(headers)
            )
            if status == 200 and isinstance(data, dict):
                scopes = str(data.get("scope") or "").split()
                self._state.devices[data["device_code"]] = _Device(
                    self._endpoint_client_id(body), data["user_code"], scopes)
        payload = data if isinstance(data, str) else json.dumps(data)
        return int(status), {"Content-Type": "application/json", "Cache-Control": "no-store",
                             **{str(k): str(v) for k, v in (out_headers or {}).items()}}, payload.encode()

    @staticmethod
    def _endpoint_client_id(body: str) -> str:
        return dict(parse_qsl(body)).get("client_id", "")

    def _get(self, path: str, query: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == AUTHORIZE_PATH:
            return self._authorize(query, headers)
        wanted = RFC8414_PATH if self.metadata_at == "rfc8414" else OIDC_PATH
        if path != wanted:
            return 404, {"Content-Type": "application/json"}, b'{"error": "not_found"}'
        claims = {
            "issuer": self.metadata_issuer or self.issuer,
            "token_endpoint": self.token_url,
            "authorization_endpoint": self.authorize_url,
            "revocation_endpoint": self.revoke_url,
            "device_authorization_endpoint": self.device_url,
            "grant_types_supported": list(GRANTS),
            "token_endpoint_auth_methods_supported": list(self.metadata_auth_methods),
        }
        out_headers, out_body, status = MetadataEndpoint(
            [self._endpoint], claims=claims, raise_errors=False
        ).create_metadata_response(self.url + path)
        return int(status), {"Content-Type": "application/json", **{str(k): str(v) for k, v in
                                                                  out_headers.items()}}, out_body.encode()

    def _authorize(self, query: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The person's browser at the authorization endpoint: auto-approve (or deny) and redirect."""
        uri = self.authorize_url + "?" + query
        with self._state.lock:
            try:
                scopes, info = self._endpoint.validate_authorization_request(uri, headers=dict(headers))
            except OAuth2Error as exc:  # no redirect to an unverified redirect_uri (RFC 6749 4.1.2.1)
                return exc.status_code, {"Content-Type": "application/json"}, exc.json.encode()
            if self.deny_authorization:
                target = info["redirect_uri"] + "?" + "&".join(
                    f"{k}={v}" for k, v in (
                        ("error", "access_denied"),
                        ("error_description", "The+user+said+no+%3Cb%3Eloudly%3C%2Fb%3E"),
                        ("state", info["request"].state or ""),
                    ))
                return 302, {"Location": target}, b""
            out_headers, _, status = self._endpoint.create_authorization_response(
                uri, headers=dict(headers), scopes=scopes, credentials={"user": self._state.user}
            )
        location = str(out_headers["Location"])
        if self.callback_iss is not None:
            location += "&iss=" + self.callback_iss
        return int(status), {"Location": location}, b""


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
        path, _, query = self.path.partition("?")
        status, headers, payload = self.server.owner.handle(
            self.command, path, {k: v for k, v in self.headers.items()}, body, query
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
