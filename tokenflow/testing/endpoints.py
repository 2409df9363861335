"""The embedded server's endpoints: which path does what, and how each request is checked.

:class:`Endpoints` routes a parsed request (:class:`~tokenflow.testing.wire.Exchange`) to

- the token endpoint (``/api/oauth/token``): scripted faults first, then method gating (GET
  for the Team Server dialect, POST for RFC 6749), client authentication and the grant;
- revocation, Team Server style (``DELETE /api/revoketoken/<access token>``) and RFC 7009
  (``POST /oauth/revoke``);
- a protected resource (``/api/resource``) that accepts a Bearer header or Team Server's
  ``?access_token=``, so clients can prove the tokens they got work;
- interactive sign-in: the authorization endpoints (``/authorize``, ``/api/oauth/authorize``,
  :mod:`~tokenflow.testing.authorize`), device authorization and its verification page
  (``/device_authorization``, ``/device``, :mod:`~tokenflow.testing.device`), and the
  metadata documents (:mod:`~tokenflow.testing.discovery`).

The token endpoint takes the grants ``password``, ``client_credentials``, ``refresh_token``,
``authorization_code`` and ``urn:ietf:params:oauth:grant-type:device_code``, in either
dialect; public clients (no secret) may use all but ``client_credentials``.

Answers follow :mod:`~tokenflow.testing.quirks`; token state is the
:class:`~tokenflow.testing.issuer.TokenIssuer`'s; every request is counted in the
:class:`~tokenflow.testing.ledger.Ledger`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Final

from tokenflow.testing.authorize import AUTHORIZE_PATH, TEAMSERVER_AUTHORIZE_PATH, Authorizations
from tokenflow.testing.device import DEVICE_AUTHORIZATION_PATH, DEVICE_GRANT, VERIFICATION_PATH, DeviceFlow
from tokenflow.testing.discovery import document_paths, issuer_id, metadata
from tokenflow.testing.faults import ResponseQueue
from tokenflow.testing.issuer import TokenIssuer
from tokenflow.testing.ledger import Ledger
from tokenflow.testing.model import ServerConfig
from tokenflow.testing.quirks import (
    FULL_AUTH,
    authenticate,
    challenge,
    method_not_allowed,
    normalize_scope,
)
from tokenflow.testing.wire import (
    NO_STORE,
    Exchange,
    OAuthError,
    Reply,
    bad_request,
    first_value,
    json_reply,
    not_found,
    request_params,
    unquote_strict,
)

TOKEN_PATH: Final = "/api/oauth/token"
REVOKE_PREFIX: Final = "/api/revoketoken/"
RFC7009_REVOKE_PATH: Final = "/oauth/revoke"
RESOURCE_PATH: Final = "/api/resource"

# Grant type -> its key in the request counts (the device grant's URN is long to type).
COUNT_KEYS: Final = {
    "password": "password",
    "client_credentials": "client_credentials",
    "refresh_token": "refresh_token",
    "authorization_code": "authorization_code",
    DEVICE_GRANT: "device_code",
}


class Endpoints:
    """Answers requests from the server's state; one instance per server."""

    def __init__(
        self,
        config: ServerConfig,
        issuer: TokenIssuer,
        ledger: Ledger,
        script: ResponseQueue,
        base_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.issuer = issuer
        self.ledger = ledger
        self.script = script
        self.base_url = base_url
        self.authorizations = Authorizations(config, issuer, self.issuer_id)
        self.devices = DeviceFlow(config, issuer, base_url)

    def issuer_id(self) -> str:
        return issuer_id(self.config, self.base_url())

    def route(self, ex: Exchange) -> Reply:
        if ex.path == TOKEN_PATH:
            return self.token(ex)
        if ex.path == RFC7009_REVOKE_PATH:
            return self.rfc7009_revoke(ex)
        if ex.path.startswith(REVOKE_PREFIX):
            return self.team_revoke(ex)
        if ex.path == RESOURCE_PATH:
            return self.resource(ex)
        if ex.path in (AUTHORIZE_PATH, TEAMSERVER_AUTHORIZE_PATH):
            self.ledger.count("authorize")
            return self.authorizations.authorize(ex)
        if ex.path == DEVICE_AUTHORIZATION_PATH:
            return self.device_authorization(ex)
        if ex.path == VERIFICATION_PATH:
            self.ledger.count("device_verification")
            return self.devices.verification_page(ex)
        if "/.well-known/" in ex.path and ex.path in document_paths(self.config, self.base_url()):
            return self.metadata(ex)
        return not_found()

    # -- token endpoint ----------------------------------------------------------

    def token(self, ex: Exchange) -> Reply:
        """Count, then answer a scripted response if one is queued, else run the grant."""
        ex.grant_type = first_value(ex, "grant_type")
        self.ledger.count("token", COUNT_KEYS.get(ex.grant_type or "", "invalid"))
        with self.ledger.in_flight():
            if self.config.latency > 0:
                time.sleep(self.config.latency)
            scripted = self.script.pop()
            if scripted is None and ex.grant_type == DEVICE_GRANT:
                scripted = self.devices.poll_script.pop()
            if scripted is not None:
                ex.scripted = True
                return scripted.reply()
            return self._grant(ex)

    def _grant(self, ex: Exchange) -> Reply:
        allowed = [m for m, ok in (("GET", self.config.allow_get), ("POST", self.config.allow_post)) if ok]
        if ex.method not in allowed:
            raise method_not_allowed(ex.method, ", ".join(allowed))
        params, sources = request_params(ex)
        client_id = authenticate(ex, params, sources, self.config)
        grant = params.get("grant_type")
        if not grant:
            raise bad_request("Missing grant type")
        requested = params.get("scope", "").strip()
        if grant == "authorization_code":
            return self.authorizations.exchange(client_id, params)
        if grant == DEVICE_GRANT:
            return self.devices.poll(client_id, params)
        if grant == "password":
            username, password = params.get("username"), params.get("password")
            if username is None:
                raise bad_request("Missing parameter: username")
            if password is None:
                raise bad_request("Missing parameter: password")
            expected = self.config.accounts.get(username)
            if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
                raise OAuthError(400, "invalid_grant", "Bad credentials")
            scope = normalize_scope(requested or self.config.default_scope)
            return self.issuer.issue(client_id, username, scope, with_refresh=True)
        if grant == "client_credentials":
            if self.config.is_public(client_id):
                raise OAuthError(
                    400, "unauthorized_client", "A public client may not use the client_credentials grant"
                )
            # Spring's ClientCredentialsTokenGranter never returns a refresh token.
            scope = normalize_scope(requested or self.config.default_scope)
            return self.issuer.issue(client_id, None, scope, with_refresh=False)
        if grant == "refresh_token":
            value = params.get("refresh_token")
            if not value:
                raise bad_request("Missing parameter: refresh_token")
            return self.issuer.refresh(client_id, value, requested)
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")

    # -- device authorization and metadata -----------------------------------------

    def device_authorization(self, ex: Exchange) -> Reply:
        """RFC 8628 §3.1: POST with client authentication (public clients: ``client_id``)."""
        self.ledger.count("device_authorization")
        if ex.method != "POST":
            raise method_not_allowed(ex.method, "POST")
        params, sources = request_params(ex)
        client_id = authenticate(ex, params, sources, self.config)
        return self.devices.authorization(client_id, params)

    def metadata(self, ex: Exchange) -> Reply:
        """RFC 8414 / OpenID Connect discovery document."""
        self.ledger.count("metadata")
        if ex.method != "GET":
            raise method_not_allowed(ex.method, "GET")
        endpoints = {
            "authorization_endpoint": AUTHORIZE_PATH,
            "token_endpoint": TOKEN_PATH,
            "device_authorization_endpoint": DEVICE_AUTHORIZATION_PATH,
            "revocation_endpoint": RFC7009_REVOKE_PATH,
        }
        return json_reply(200, metadata(self.config, self.base_url(), endpoints))

    # -- revocation and resource ---------------------------------------------------

    def team_revoke(self, ex: Exchange) -> Reply:
        """``DELETE /api/revoketoken/<access token>``: revokes it and its refresh token."""
        self.ledger.count("revoke")
        raw = ex.path[len(REVOKE_PREFIX) :]
        if not raw or "/" in raw:
            return not_found()
        if ex.method != "DELETE":
            raise method_not_allowed(ex.method, "DELETE")
        token = unquote_strict(raw, "path", plus=False)
        self.issuer.drop_access(token, with_refresh=True)
        return Reply(200, [("Content-Type", "text/plain;charset=UTF-8")], b"revoke")

    def rfc7009_revoke(self, ex: Exchange) -> Reply:
        """RFC 7009 revocation of an access token, or a refresh token and its access token."""
        self.ledger.count("revoke")
        if ex.method != "POST":
            raise method_not_allowed(ex.method, "POST")
        params, sources = request_params(ex)
        client_id = authenticate(ex, params, sources, self.config)
        token = params.get("token")
        if not token:
            raise bad_request("Missing parameter: token")
        self.issuer.revoke(client_id, token)
        return Reply(200, list(NO_STORE), b"")

    def resource(self, ex: Exchange) -> Reply:
        """A protected resource, so clients can prove the tokens they got work."""
        self.ledger.count("resource")
        if ex.method != "GET":
            raise method_not_allowed(ex.method, "GET")
        params, _ = request_params(ex)
        scheme, _, credentials = (ex.authorization or "").strip().partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else params.get("access_token", "")
        if not token:
            auth_challenge = challenge("Bearer", "unauthorized", FULL_AUTH, "oauth")
            raise OAuthError(401, "unauthorized", FULL_AUTH, headers=[auth_challenge])
        access = self.issuer.live_access(token)
        return json_reply(
            200,
            {"ok": True, "user": access.username, "client_id": access.client_id, "scope": access.scope},
        )
