"""The ``device_code`` grant (RFC 8628): sign in on another device with a short user code.

tokenflow asks the device authorization endpoint for a device code, shows the person the
``verification_uri`` and ``user_code`` (and ``verification_uri_complete`` on a line of its own),
then polls the token endpoint: ``authorization_pending`` keeps polling, ``slow_down`` (or an HTTP
429) adds 5 s to this and every later interval (section 3.5), ``access_denied`` and
``expired_token`` end it with a clear error, and the code's ``expires_in`` is a hard deadline.
Waiting goes through the context's clock and sleep, so tests run it on a fake clock.

The device code is a credential (it is remembered by :mod:`tokenflow.redact`); the user code is
not, since it is shown to the person anyway.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any, Final
from urllib.parse import urlencode

from tokenflow.errors import ConfigError, ReauthenticationRequired, TokenRequestError, TransportError
from tokenflow.plugins.contracts import GrantContext, GrantRegistrar, HttpRequest
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import get_logger, remember_secret, scrub
from tokenflow.tokens import Token

__all__ = ["DEVICE_GRANT_TYPE", "OPTIONS_SCHEMA", "DeviceAuthorization", "DeviceCodeGrant"]

log = get_logger("tokenflow.devicecode")

DEVICE_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL: Final = 5.0
SLOW_DOWN_STEP: Final = 5.0
MAX_INTERVAL: Final = 300.0  # a server asking for longer would leave the person waiting for nothing
DEFAULT_EXPIRES_IN: Final = 600.0  # when the server omits the REQUIRED expires_in
MAX_EXPIRES_IN: Final = 3600.0

OPTIONS_SCHEMA: Final[Mapping[str, Any]] = {"type": "object", "properties": {}}


def _number(value: object, default: float, low: float, high: float) -> float:
    """Lenient parsing: ``5``, ``5.0`` and ``"5"`` all mean 5; nonsense means *default*."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) \
            else default
    except ValueError:
        number = default
    if not math.isfinite(number) or number <= 0:
        number = default
    return min(max(number, low), high)


class DeviceAuthorization:
    """The device authorization response (RFC 8628 section 3.2), checked."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        def text(name: str, *aliases: str) -> str | None:
            for key in (name, *aliases):
                value = data.get(key)
                if isinstance(value, str) and value:
                    return value
            return None

        device_code = text("device_code")
        user_code = text("user_code")
        # "verification_url" is what Google's endpoint calls it
        verification_uri = text("verification_uri", "verification_url")
        missing = [name for name, value in (("device_code", device_code), ("user_code", user_code),
                                            ("verification_uri", verification_uri)) if not value]
        if missing:
            raise TokenRequestError(
                f"the device authorization answer lacks {', '.join(missing)}", error="invalid_response"
            )
        assert device_code and user_code and verification_uri
        remember_secret(device_code)
        self.device_code = device_code
        self.user_code = user_code
        self.verification_uri = verification_uri
        self.verification_uri_complete = text("verification_uri_complete")
        self.expires_in = _number(data.get("expires_in"), DEFAULT_EXPIRES_IN, 1.0, MAX_EXPIRES_IN)
        self.interval = _number(data.get("interval"), DEFAULT_INTERVAL, 1.0, MAX_INTERVAL)

    def __repr__(self) -> str:
        return (f"DeviceAuthorization(user_code={self.user_code!r}, "
                f"verification_uri={self.verification_uri!r})")


def request_device_authorization(context: GrantContext) -> DeviceAuthorization:
    """POST the client id (and scope) to the device authorization endpoint (section 3.1)."""
    endpoint = context.endpoint("device_authorization")
    if not endpoint:
        raise ConfigError(
            f"profile {context.profile!r}: grant device_code needs the server's "
            "device_authorization_url (or an issuer whose metadata names it)"
        )
    form = {"client_id": context.client_id}
    scope = context.scope
    if scope:
        form["scope"] = scope
    response = context.send(HttpRequest(
        "POST", endpoint,
        {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        urlencode(form).encode("ascii"),
    ))
    try:
        data = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if response.status != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        description = data.get("error_description") if isinstance(data, dict) else None
        detail = f": {error}" if isinstance(error, str) else ""
        if isinstance(description, str) and description:
            detail += f": {scrub(description)[:200]}"
        raise TokenRequestError(
            f"the device authorization endpoint answered HTTP {response.status}{detail}",
            error=error if isinstance(error, str) else None,
            error_description=scrub(description) if isinstance(description, str) else None,
            status=response.status,
        )
    return DeviceAuthorization(data)


class DeviceCodeGrant:
    """``grant: device_code``: see the module docstring."""

    interactive = True
    secret_options: Collection[str] = ()
    identity_options: Collection[str] = ()

    def obtain(self, context: GrantContext) -> Token:
        profile = context.profile
        if not context.interactive:
            raise ReauthenticationRequired(
                f"profile {profile!r} needs a person to approve a device code: "
                f"run `tokenflow login {profile}`",
                error="login_required",
            )
        auth = request_device_authorization(context)
        deadline = context.clock() + auth.expires_in
        context.notify(
            f"Sign in for profile {profile!r}: open the URL below and enter the code "
            f"{auth.user_code} (waiting up to {auth.expires_in:.0f} s for the approval; "
            "Ctrl-C cancels):",
            url=auth.verification_uri, user_code=auth.user_code,
        )
        if auth.verification_uri_complete:
            context.notify("or open this URL, which carries the code:",
                           url=auth.verification_uri_complete)
        return self._poll(context, auth, deadline)

    def _poll(self, context: GrantContext, auth: DeviceAuthorization, deadline: float) -> Token:
        interval = auth.interval
        params = {"grant_type": DEVICE_GRANT_TYPE, "device_code": auth.device_code}
        expired = TokenRequestError(
            f"profile {context.profile!r}: the device code expired before the sign-in was "
            f"approved ({auth.expires_in:.0f} s); run the command again",
            error="expired_token",
        )
        while True:
            now = context.clock()
            if now >= deadline:
                raise expired
            context.sleep(min(interval, deadline - now))
            if context.clock() >= deadline:  # expires_in is a hard deadline: no poll after it
                raise expired
            try:
                return context.request_token(params)
            except TokenRequestError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down" or exc.status == 429:
                    interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
                    log.debug("device code: slow_down, polling every %.0f s now", interval)
                    continue
                if exc.error == "access_denied":
                    raise TokenRequestError(
                        f"profile {context.profile!r}: the sign-in was denied on the verification page",
                        error=exc.error, error_description=exc.error_description, status=exc.status,
                    ) from None
                if exc.error == "expired_token":
                    raise expired from None
                raise
            except TransportError as exc:
                if not exc.transient:
                    raise
                if exc.status == 429:
                    interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
                log.debug("device code: poll failed transiently (%s); polling on", exc)


@hookimpl
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    register("device_code", DeviceCodeGrant(), OPTIONS_SCHEMA)
