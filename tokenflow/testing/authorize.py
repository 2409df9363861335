"""The authorization code grant: the authorization endpoint, PKCE and the code exchange.

Served at ``/authorize`` (RFC 6749 §4.1) and ``/api/oauth/authorize`` (Team Server style);
both behave the same.  A test's HTTP client plays the browser (never a real one):

1. ``GET`` (or ``POST`` form) with ``response_type=code``, ``client_id``, ``redirect_uri``,
   ``state``, ``scope`` and PKCE's ``code_challenge`` + ``code_challenge_method=S256``.
   An unknown client or a redirect URI that is not registered gets a 400 JSON error and
   *no* redirect (RFC 6749 §4.1.2.1: never send the user agent to an unverified URI).
   Loopback redirect URIs match on any port (RFC 8252 §7.3): ``http://127.0.0.1:53124/cb``
   matches the registered ``http://127.0.0.1/callback`` only with the same host, path and
   query; port 0, user-info and fragments never match.  Every other problem is answered
   by a redirect carrying ``error`` (``invalid_request``, ``unsupported_response_type``):
   ``plain`` PKCE and a missing challenge from a public client are refused.
2. The request is approved at once (``auto_approve``) or parked until a test calls
   :meth:`Authorizations.approve` / :meth:`Authorizations.deny`; the reply is then a 302 to
   ``redirect_uri?code=…&state=…`` (``&iss=…`` with ``send_iss``, RFC 9207) or
   ``?error=access_denied&error_description=…&state=…``.
3. At the token endpoint, ``grant_type=authorization_code`` with ``code``, ``redirect_uri``
   (exactly the one authorized) and ``code_verifier`` (S256-checked, RFC 7636 §4.6) gets
   a token with a refresh token.  A code is single use and short-lived; the first
   presentation consumes it, whatever its outcome (as Spring does), and a second one also
   revokes what the first one got (RFC 6749 §4.1.2).

Codes and verifiers are never logged (the server logs nothing) nor kept in the request
history (which holds parameter names only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode, urlsplit

from tokenflow.testing.issuer import TokenIssuer
from tokenflow.testing.model import ServerConfig
from tokenflow.testing.quirks import method_not_allowed, normalize_scope
from tokenflow.testing.wire import Exchange, OAuthError, Reply, bad_request, json_reply, request_params

AUTHORIZE_PATH: Final = "/authorize"
TEAMSERVER_AUTHORIZE_PATH: Final = "/api/oauth/authorize"

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, unpadded
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_MAX_STATE = 2048


def is_loopback_redirect(uri: str) -> bool:
    """An ``http`` URI whose host is a loopback name or address."""
    split = urlsplit(uri)
    return split.scheme == "http" and split.hostname in _LOOPBACK_HOSTS


def redirect_matches(registered: str, presented: str) -> bool:
    """Does ``presented`` match the ``registered`` redirect URI?

    Exact string match, except that a registered loopback URI matches the same scheme,
    host, path and query on any port (RFC 8252 §7.3).  A presented URI with user-info, a
    backslash, a fragment or port 0 never matches.
    """
    if "#" in presented or "\\" in presented:
        return False
    try:
        split = urlsplit(presented)
        port = split.port
    except ValueError:
        return False
    if port == 0 or "@" in split.netloc:
        return False
    if registered == presented:
        return True
    if not is_loopback_redirect(registered):
        return False
    want = urlsplit(registered)
    return (
        split.scheme == "http"
        and split.hostname == want.hostname
        and split.path == want.path
        and split.query == want.query
    )


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PendingAuthorization:
    """An authorization request waiting for a test to approve or deny it (no secrets)."""

    id: str
    client_id: str
    redirect_uri: str
    scope: str
    state: str | None


@dataclass
class _Parked:
    request: PendingAuthorization
    done: threading.Event = field(default_factory=threading.Event)
    username: str | None = None
    denial: str | None = None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    challenge: str | None
    expires_at: float
    used: bool = False
    access_token: str | None = None


class Authorizations:
    """Authorization requests, their codes and the test hooks that decide them."""

    def __init__(
        self, config: ServerConfig, issuer: TokenIssuer, issuer_id: Callable[[], str]
    ) -> None:
        self.config = config
        self.issuer = issuer
        self._issuer_id = issuer_id
        self._cond = threading.Condition()
        self._parked: list[_Parked] = []
        self._codes: dict[str, _Code] = {}
        self._closed = False

    # -- the authorization endpoint ----------------------------------------------

    def authorize(self, ex: Exchange) -> Reply:
        if ex.method not in ("GET", "POST"):
            raise method_not_allowed(ex.method, "GET, POST")
        params, _ = request_params(ex)
        client_id = params.get("client_id", "")
        if not client_id:
            raise bad_request("Missing parameter: client_id")
        if not self.config.is_known(client_id):
            raise bad_request(f"Unknown client: {client_id}")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            raise bad_request("Missing parameter: redirect_uri")
        if not any(redirect_matches(r, redirect_uri) for r in self.config.redirect_uris):
            raise bad_request("redirect_uri is not registered for this client")
        state = params.get("state")
        problem = self._problem(client_id, params)
        if problem is not None:
            return self._redirect(redirect_uri, {"error": problem[0], "error_description": problem[1]}, state)
        scope = normalize_scope(params.get("scope", "").strip() or self.config.default_scope)
        request = PendingAuthorization(uuid.uuid4().hex, client_id, redirect_uri, scope, state)
        if self.config.auto_approve:
            username: str | None = next(iter(self.config.accounts))
            denial = None
        else:
            username, denial = self._park(request)
        if username is None:
            fields = {"error": "access_denied", "error_description": denial or "The request was denied"}
            return self._redirect(redirect_uri, fields, state)
        code = secrets.token_urlsafe(32)
        with self._cond:
            self._purge()
            self._codes[code] = _Code(
                client_id,
                redirect_uri,
                scope,
                username,
                params.get("code_challenge"),
                self.config.clock() + self.config.authorization_code_lifetime,
            )
        return self._redirect(redirect_uri, {"code": code}, state)

    def _problem(self, client_id: str, params: Mapping[str, str]) -> tuple[str, str] | None:
        """What is wrong with an authorization request whose client and redirect are good."""
        response_type = params.get("response_type")
        if not response_type:
            return "invalid_request", "Missing parameter: response_type"
        if response_type != "code":
            return "unsupported_response_type", f"Unsupported response type: {response_type}"
        state = params.get("state")
        if state is None and self.config.require_state:
            return "invalid_request", "Missing parameter: state"
        if state is not None and len(state) > _MAX_STATE:
            return "invalid_request", "state is too long"
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is None:
            if method is not None:
                return "invalid_request", "code_challenge_method without code_challenge"
            if self.config.is_public(client_id):
                return "invalid_request", "PKCE code_challenge is required for public clients"
            if self.config.require_pkce:
                return "invalid_request", "PKCE code_challenge is required"
            return None
        if method != "S256":
            # RFC 7636 §4.3: no method means plain, which this server does not accept.
            return "invalid_request", "Transform algorithm not supported: only S256 is accepted"
        if not _CHALLENGE.fullmatch(challenge):
            return "invalid_request", "Malformed code_challenge"
        return None

    def _redirect(self, redirect_uri: str, fields: dict[str, str], state: str | None) -> Reply:
        if state is not None:
            fields["state"] = state
        if self.config.send_iss:
            fields["iss"] = self._issuer_id()
        separator = "&" if urlsplit(redirect_uri).query else "?"
        headers = [
            ("Location", redirect_uri + separator + urlencode(fields)),
            ("Cache-Control", "no-store"),
            ("Referrer-Policy", "no-referrer"),
        ]
        return Reply(302, headers, b"")

    def _park(self, request: PendingAuthorization) -> tuple[str | None, str | None]:
        """Wait for a test's decision: (username, None) approved, (None, why) denied."""
        parked = _Parked(request)
        with self._cond:
            if self._closed:
                return None, "The server is stopping"
            self._parked.append(parked)
            self._cond.notify_all()
        if not parked.done.wait(self.config.authorization_wait):
            with self._cond:
                if parked in self._parked:
                    self._parked.remove(parked)
                    return None, "The request was not approved in time"
        return parked.username, parked.denial

    # -- the token endpoint's part --------------------------------------------------

    def exchange(self, client_id: str, params: Mapping[str, str]) -> Reply:
        """``grant_type=authorization_code``: check and consume the code, issue a token."""
        code = params.get("code")
        if not code:
            raise bad_request("An authorization code must be supplied.")
        with self._cond:
            record = self._codes.get(code)
            if record is None:
                # Spring echoes the code (faithfully: clients must scrub what servers echo).
                raise OAuthError(400, "invalid_grant", f"Invalid authorization code: {code}")
            if record.used:
                if record.access_token is not None:
                    self.issuer.drop_access(record.access_token, with_refresh=True)
                raise OAuthError(400, "invalid_grant", "Authorization code was already used")
            record.used = True
        if record.expires_at <= self.config.clock():
            raise OAuthError(400, "invalid_grant", "Authorization code expired")
        if record.client_id != client_id:
            raise OAuthError(400, "invalid_grant", "Client ID mismatch")
        if params.get("redirect_uri") != record.redirect_uri:
            raise OAuthError(400, "invalid_grant", "Redirect URI mismatch.")
        verifier = params.get("code_verifier")
        if record.challenge is None:
            if verifier is not None:
                # OAuth 2.1 §4.1.3: a verifier for a code issued without a challenge is a downgrade.
                raise OAuthError(400, "invalid_grant", "code_verifier sent but no code_challenge was")
        else:
            if verifier is None:
                raise bad_request("Missing parameter: code_verifier")
            if not _VERIFIER.fullmatch(verifier):
                raise OAuthError(400, "invalid_grant", "Malformed code_verifier")
            if not hmac.compare_digest(s256(verifier), record.challenge):
                raise OAuthError(400, "invalid_grant", "PKCE verification failed")
        payload = self.issuer.issue_payload(client_id, record.username, record.scope, with_refresh=True)
        with self._cond:
            record.access_token = str(payload["access_token"])
        return json_reply(200, payload)

    def _purge(self) -> None:
        """Forget codes long expired, so a long-running server does not grow (lock held)."""
        horizon = self.config.clock() - self.config.authorization_code_lifetime
        for code in [c for c, r in self._codes.items() if r.expires_at < horizon]:
            del self._codes[code]

    # -- test hooks ------------------------------------------------------------------

    def pending(self) -> list[PendingAuthorization]:
        with self._cond:
            return [p.request for p in self._parked]

    def decide(
        self, state: str | None, timeout: float, *, username: str | None, denial: str | None
    ) -> PendingAuthorization:
        """Approve (``username``) or deny (``denial``) the oldest pending request.

        With ``state``, the oldest one carrying that state.  Waits up to ``timeout`` seconds
        for one to arrive, so a test may decide before its client's request got here.
        """

        def find() -> _Parked | None:
            for parked in self._parked:
                if state is None or parked.request.state == state:
                    return parked
            return None

        with self._cond:
            parked = self._cond.wait_for(find, timeout)
            if parked is None:
                which = "" if state is None else " with that state"
                raise TimeoutError(f"no authorization request{which} arrived within {timeout} s")
            self._parked.remove(parked)
            parked.username, parked.denial = username, denial
            parked.done.set()
            return parked.request

    def expire_codes(self) -> None:
        with self._cond:
            now = self.config.clock()
            for record in self._codes.values():
                record.expires_at = now - 1

    def close(self) -> None:
        """Release parked requests (denied) so their threads end with the server."""
        with self._cond:
            self._closed = True
            for parked in self._parked:
                parked.denial = "The server is stopping"
                parked.done.set()
            self._parked.clear()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
