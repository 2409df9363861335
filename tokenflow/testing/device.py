"""The device authorization grant (RFC 8628): codes, polling, the verification page.

- ``POST /device_authorization`` (client authentication as at the token endpoint; public
  clients name themselves with ``client_id``) answers ``device_code``, ``user_code``
  (``BCDF-GHJK``: consonants only, RFC 8628 §6.1), ``verification_uri``,
  ``verification_uri_complete``, ``expires_in`` and ``interval``.
- The token endpoint's ``grant_type=urn:ietf:params:oauth:grant-type:device_code`` answers
  ``authorization_pending`` until the user code is approved, then a token (with a refresh
  token) once; ``slow_down`` when polled sooner than the interval after the previous poll
  (the interval then grows by 5 s for the rest of that code's life, §3.5);
  ``access_denied`` once denied; ``expired_token`` after ``expires_in``.
- Tests decide without a browser: :meth:`DeviceFlow.decide` approves or denies a user code
  (or the oldest pending one), :meth:`DeviceFlow.expire` ends codes, and a poll script
  makes the next polls answer what a test wants (``slow_down``, HTTP 429, ...) before any
  check.  A person can use the page at ``verification_uri``: ``GET`` shows a form,
  ``POST`` with ``user_code`` approves (or denies with ``action=deny``) as the default
  account.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from tokenflow.testing.faults import ResponseQueue
from tokenflow.testing.issuer import TokenIssuer
from tokenflow.testing.model import ServerConfig
from tokenflow.testing.quirks import method_not_allowed, normalize_scope
from tokenflow.testing.wire import Exchange, OAuthError, Reply, bad_request, json_reply, request_params

DEVICE_AUTHORIZATION_PATH: Final = "/device_authorization"
VERIFICATION_PATH: Final = "/device"
DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"

_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_NOT_CODE = re.compile(r"[^A-Z]")
_PAGE_HEADERS = (
    ("Content-Type", "text/html;charset=UTF-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; form-action 'self'"),
)


def normalize_user_code(text: str) -> str:
    """Upper case without dashes or spaces, as users type codes (RFC 8628 §6.1)."""
    return _NOT_CODE.sub("", text.upper())


@dataclass(frozen=True)
class DeviceRequest:
    """A device authorization as a test sees it (the device code is not shown).

    ``status`` is ``pending``, ``approved``, ``denied``, ``expired`` or ``used`` (a token
    was issued for it).
    """

    user_code: str
    client_id: str
    scope: str
    status: str
    interval: int


@dataclass
class _Device:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: int
    status: str = "pending"
    username: str | None = None
    last_poll: float | None = None
    denial: str = "The user denied the request"

    def view(self, now: float) -> DeviceRequest:
        status = "expired" if self.status == "pending" and self.expires_at <= now else self.status
        return DeviceRequest(self.user_code, self.client_id, self.scope, status, self.interval)


class DeviceFlow:
    """Device authorizations, their polls and the test hooks that decide them."""

    def __init__(self, config: ServerConfig, issuer: TokenIssuer, base_url: Callable[[], str]) -> None:
        self.config = config
        self.issuer = issuer
        self._base_url = base_url
        self._cond = threading.Condition()
        self._by_device: dict[str, _Device] = {}
        self._by_user: dict[str, _Device] = {}
        self.poll_script = ResponseQueue()

    # -- endpoints ---------------------------------------------------------------------

    def authorization(self, client_id: str, params: Mapping[str, str]) -> Reply:
        """The device authorization response (RFC 8628 §3.2)."""
        now = self.config.clock()
        scope = normalize_scope(params.get("scope", "").strip() or self.config.default_scope)
        with self._cond:
            user_code = self._new_user_code()
            device = _Device(
                secrets.token_urlsafe(32),
                user_code,
                client_id,
                scope,
                now + self.config.device_code_lifetime,
                self.config.device_poll_interval,
            )
            self._by_device[device.device_code] = device
            self._by_user[user_code] = device
            self._cond.notify_all()
        shown = f"{user_code[:4]}-{user_code[4:]}"
        verification_uri = self._base_url() + VERIFICATION_PATH
        return json_reply(
            200,
            {
                "device_code": device.device_code,
                "user_code": shown,
                "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?{urlencode({'user_code': shown})}",
                "expires_in": int(self.config.device_code_lifetime),
                "interval": self.config.device_poll_interval,
            },
        )

    def poll(self, client_id: str, params: Mapping[str, str]) -> Reply:
        """One token request of the device grant (RFC 8628 §3.4, §3.5)."""
        value = params.get("device_code")
        if not value:
            raise bad_request("Missing parameter: device_code")
        now = self.config.clock()
        with self._cond:
            device = self._by_device.get(value)
            if device is None:
                raise OAuthError(400, "invalid_grant", "Invalid device code")
            if device.client_id != client_id:
                raise OAuthError(400, "invalid_grant", "Device code was issued to another client")
            if device.status == "used":
                raise OAuthError(400, "invalid_grant", "Device code was already used")
            if device.expires_at <= now:
                raise OAuthError(400, "expired_token", "The device code has expired")
            last, device.last_poll = device.last_poll, now
            if device.interval > 0 and last is not None and now - last < device.interval:
                device.interval += 5
                raise OAuthError(400, "slow_down", f"Poll at most every {device.interval} seconds")
            if device.status == "denied":
                raise OAuthError(400, "access_denied", device.denial)
            if device.status == "pending":
                raise OAuthError(400, "authorization_pending", "The user has not yet approved the request")
            device.status = "used"
            username = device.username
        return self.issuer.issue(client_id, username, device.scope, with_refresh=True)

    def verification_page(self, ex: Exchange) -> Reply:
        """A minimal page for a person: GET shows a form, POST approves or denies a code."""
        if ex.method not in ("GET", "POST"):
            raise method_not_allowed(ex.method, "GET, POST")
        params, _ = request_params(ex)
        typed = params.get("user_code", "")
        if ex.method == "GET":
            return self._page(
                200,
                "<h1>Device sign-in</h1>"
                f'<form method="post"><label>Code <input name="user_code" value="{html.escape(typed)}">'
                "</label> <button name=\"action\" value=\"approve\">Approve</button>"
                " <button name=\"action\" value=\"deny\">Deny</button></form>",
            )
        approve = params.get("action", "approve") != "deny"
        try:
            self.decide(
                typed,
                0,
                username=next(iter(self.config.accounts)) if approve else None,
                denial="The user denied the request",
            )
        except TimeoutError:
            return self._page(400, "<h1>Unknown or expired code</h1>")
        return self._page(200, "<h1>Approved: return to your device</h1>" if approve else "<h1>Denied</h1>")

    @staticmethod
    def _page(status: int, body: str) -> Reply:
        document = f"<!doctype html><html><head><title>tokenflow</title></head><body>{body}</body></html>"
        return Reply(status, list(_PAGE_HEADERS), document.encode("utf-8"))

    # -- test hooks -----------------------------------------------------------------

    def requests(self) -> list[DeviceRequest]:
        now = self.config.clock()
        with self._cond:
            return [device.view(now) for device in self._by_device.values()]

    def decide(
        self, user_code: str | None, timeout: float, *, username: str | None, denial: str
    ) -> DeviceRequest:
        """Approve (``username``) or deny a pending user code, or the oldest pending one.

        Waits up to ``timeout`` seconds for a matching pending request; raises
        ``TimeoutError`` when none comes.
        """
        wanted = None if user_code is None else normalize_user_code(user_code)

        def find() -> _Device | None:
            now = self.config.clock()
            for device in self._by_device.values():
                if device.status == "pending" and device.expires_at > now and (
                    wanted is None or device.user_code == wanted
                ):
                    return device
            return None

        with self._cond:
            device = self._cond.wait_for(find, timeout)
            if device is None:
                which = "" if user_code is None else f" with user code {user_code}"
                raise TimeoutError(f"no pending device authorization{which}")
            if username is None:
                device.status, device.denial = "denied", denial
            else:
                device.status, device.username = "approved", username
            return device.view(self.config.clock())

    def expire(self, user_code: str | None = None) -> None:
        """Expire one user code's device authorization, or all of them."""
        wanted = None if user_code is None else normalize_user_code(user_code)
        with self._cond:
            now = self.config.clock()
            for device in self._by_device.values():
                if wanted is None or device.user_code == wanted:
                    device.expires_at = now - 1

    def _new_user_code(self) -> str:
        while True:
            code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            if code not in self._by_user:
                return code
