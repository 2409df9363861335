"""Token issuing and the server's token state, with Spring's DefaultTokenServices semantics.

:class:`TokenIssuer` owns every access and refresh token the embedded server handed out and
decides what a grant or a refresh answers, the way Team Server does:

- a repeated grant for the same client, user and scope gets the *same* live access token
  back (with less time left); an expired one is dropped but its refresh token is kept;
- a refresh keeps the refresh token (unless ``rotate_refresh_tokens``), invalidates the old
  access token, may only narrow the scope, and its errors echo the refresh token back
  (faithfully: clients must scrub what servers echo);
- revocation drops an access token with its refresh token (Team Server), or an access token
  or a refresh token and its access token (RFC 7009).

Every method is thread-safe; times come from ``ServerConfig.clock`` so tests expire tokens
without sleeping.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from tokenflow.testing.model import IssuedToken, ServerConfig
from tokenflow.testing.quirks import challenge, normalize_scope, token_payload
from tokenflow.testing.wire import OAuthError, Reply, json_reply


@dataclass
class Access:
    value: str
    client_id: str
    username: str | None
    scope: str
    expires_at: float
    refresh: str | None


@dataclass
class Refresh:
    value: str
    client_id: str
    username: str | None
    scope: str
    expires_at: float | None
    access: str | None = None


class TokenIssuer:
    """Issues, refreshes, revokes and checks tokens; the state a test inspects."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._access: dict[str, Access] = {}
        self._refresh: dict[str, Refresh] = {}
        self._by_key: dict[tuple[str, str | None, str], str] = {}

    # -- grants ----------------------------------------------------------------

    def issue(self, client_id: str, username: str | None, scope: str, *, with_refresh: bool) -> Reply:
        """Issue a token, or reuse the live one for this grant (Spring's DefaultTokenServices)."""
        return json_reply(200, self.issue_payload(client_id, username, scope, with_refresh=with_refresh))

    def issue_payload(
        self, client_id: str, username: str | None, scope: str, *, with_refresh: bool
    ) -> dict[str, object]:
        """:meth:`issue`'s reply body."""
        with self._lock:
            now = self.config.clock()
            existing = self._access.get(self._by_key.get((client_id, username, scope), ""))
            if existing is not None and existing.expires_at > now:
                return self._payload(existing)
            refresh: Refresh | None = None
            if existing is not None:
                # Spring drops the expired access token but keeps its refresh token if still valid.
                self._access.pop(existing.value, None)
                refresh = self._refresh.get(existing.refresh or "")
                if refresh is not None and refresh.expires_at is not None and refresh.expires_at <= now:
                    del self._refresh[refresh.value]
                    refresh = None
            if with_refresh and refresh is None:
                refresh = self._new_refresh(client_id, username, scope, now)
            access = Access(
                str(uuid.uuid4()),
                client_id,
                username,
                scope,
                now + self.config.access_token_lifetime,
                refresh.value if with_refresh and refresh is not None else None,
            )
            self._store(access)
            return self._payload(access)

    def refresh(self, client_id: str, value: str, requested: str) -> Reply:
        """Refresh like Spring: checks in its order, errors echo the token (faithfully)."""
        with self._lock:
            now = self.config.clock()
            refresh = self._refresh.get(value)
            if refresh is None:
                raise OAuthError(400, "invalid_grant", f"Invalid refresh token: {value}")
            if refresh.client_id != client_id:
                raise OAuthError(400, "invalid_grant", f"Wrong client for this refresh token: {value}")
            self.drop_access(refresh.access)
            if refresh.expires_at is not None and refresh.expires_at <= now:
                del self._refresh[value]
                description = f"Invalid refresh token (expired): {value}"
                raise OAuthError(
                    401,
                    "invalid_token",
                    description,
                    headers=[challenge("Bearer", "invalid_token", description)],
                )
            scope = refresh.scope
            if requested:
                wanted = set(requested.split())
                if not wanted <= set(scope.split()):
                    shown = "[" + ", ".join(sorted(wanted)) + "]"
                    raise OAuthError(
                        400,
                        "invalid_scope",
                        f"Unable to narrow the scope of the client authentication to {shown}.",
                    )
                scope = normalize_scope(requested)
            if self.config.rotate_refresh_tokens:
                del self._refresh[value]
                refresh = self._new_refresh(client_id, refresh.username, refresh.scope, now)
            access = Access(
                str(uuid.uuid4()),
                client_id,
                refresh.username,
                scope,
                now + self.config.access_token_lifetime,
                refresh.value,
            )
            self._store(access)
            return json_reply(200, self._payload(access))

    # -- revocation and checks -------------------------------------------------

    def drop_access(self, value: str | None, *, with_refresh: bool = False) -> bool:
        """Forget an access token (and its refresh token); False if it was unknown."""
        with self._lock:
            access = self._access.pop(value or "", None)
            if access is None:
                return False
            key = (access.client_id, access.username, access.scope)
            if self._by_key.get(key) == access.value:
                del self._by_key[key]
            if with_refresh and access.refresh is not None:
                self._refresh.pop(access.refresh, None)
            return True

    def revoke(self, client_id: str, token: str) -> None:
        """RFC 7009: an access token, or a refresh token with its access token."""
        with self._lock:
            found = self._access.get(token) or self._refresh.get(token)
            if found is not None and found.client_id != client_id:
                raise OAuthError(400, "unauthorized_client", "Token was not issued to this client")
            if not self.drop_access(token):
                refresh = self._refresh.pop(token, None)
                if refresh is not None:
                    self.drop_access(refresh.access)

    def live_access(self, token: str) -> Access:
        """The access token if it is known and unexpired; raises a Spring 401 otherwise."""
        with self._lock:
            access = self._access.get(token)
            if access is not None and access.expires_at > self.config.clock():
                return access
        if access is None:
            description = f"Invalid access token: {token}"
        else:
            description = f"Access token expired: {token}"
        raise OAuthError(
            401,
            "invalid_token",
            description,
            headers=[challenge("Bearer", "invalid_token", description, "oauth")],
        )

    # -- test hooks ------------------------------------------------------------

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def revoke_all(self) -> None:
        with self._lock:
            self._refresh.clear()
            self._access.clear()
            self._by_key.clear()

    def expire_refresh_tokens(self) -> None:
        with self._lock:
            now = self.config.clock()
            for refresh in self._refresh.values():
                refresh.expires_at = now - 1

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = self.config.clock()
            for access in self._access.values():
                access.expires_at = now - 1

    def issued_tokens(self) -> list[IssuedToken]:
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

    # -- internals -------------------------------------------------------------

    def _payload(self, access: Access) -> dict[str, object]:
        return token_payload(
            access.value, access.refresh, access.expires_at, access.scope, self.config.clock()
        )

    def _store(self, access: Access) -> None:
        self._access[access.value] = access
        self._by_key[(access.client_id, access.username, access.scope)] = access.value
        if access.refresh is not None and access.refresh in self._refresh:
            self._refresh[access.refresh].access = access.value

    def _new_refresh(self, client_id: str, username: str | None, scope: str, now: float) -> Refresh:
        lifetime = self.config.refresh_token_lifetime
        refresh = Refresh(
            str(uuid.uuid4()), client_id, username, scope, None if lifetime is None else now + lifetime
        )
        self._refresh[refresh.value] = refresh
        return refresh
