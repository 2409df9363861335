"""The ``authorization_code`` grant: browser sign-in with PKCE and a loopback redirect.

RFC 6749 section 4.1 as a native app does it (RFC 8252): tokenflow listens on a loopback port,
sends the browser to the authorization endpoint with a PKCE challenge (RFC 7636, always S256, the
verifier from 32 random bytes) and a random ``state``, waits for the redirect, checks ``state``
(and ``iss``, RFC 9207), and exchanges the code through the server's dialect. The authorization
URL is always shown too, so a person on a headless machine can open it elsewhere.

Profile keys (validated by :data:`OPTIONS_SCHEMA`): ``redirect_uri`` (one URI or a list tried in
order; default ``http://127.0.0.1:0/callback``, port 0 = any free port), ``login_timeout``
(seconds to wait for the browser, default 180), ``browser`` (``false`` never opens one; so does
``$TOKENFLOW_NO_BROWSER`` and the CLI's ``--no-browser``) and ``authorize_params`` (extra
parameters for the authorization request, such as ``prompt`` or ``login_hint``).

The code, the verifier, the state and the callback URL are credentials: they are remembered by
:mod:`tokenflow.redact`, so no log line or message can show them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sys
import threading
from collections.abc import Collection, Mapping
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from tokenflow.errors import ConfigError, ReauthenticationRequired
from tokenflow.plugins.contracts import GrantContext, GrantRegistrar
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import get_logger, remember_secret
from tokenflow.tokens import Token

__all__ = ["OPTIONS_SCHEMA", "AuthorizationCodeGrant", "pkce_pair"]

log = get_logger("tokenflow.authcode")

DEFAULT_LOGIN_TIMEOUT: Final = 180.0
NO_BROWSER_ENV: Final = "TOKENFLOW_NO_BROWSER"

OPTIONS_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "redirect_uri": {
            "description": "Loopback redirect URI, or a list tried in order (authorization_code "
                           "grant; default http://127.0.0.1:0/callback, port 0 = any free port).",
            "oneOf": [
                {"type": "string", "pattern": "^http://"},
                {"type": "array", "items": {"type": "string", "pattern": "^http://"}, "minItems": 1},
            ],
        },
        "login_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                          "description": "Seconds to wait for the browser sign-in (default 180)."},
        "browser": {"type": "boolean",
                    "description": "Open the system browser (default true); the URL is always printed."},
        "authorize_params": {
            "description": "Extra parameters for the authorization request (prompt, login_hint...).",
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {"not": {"enum": [
                "response_type", "client_id", "redirect_uri", "state", "code_challenge",
                "code_challenge_method",
            ]}},
        },
    },
}


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(verifier, S256 challenge)`` (RFC 7636 section 4.1-4.2).

    The verifier is 32 random bytes, base64url without padding: 43 characters, the shortest the
    RFC allows and 256 bits of entropy, as it recommends.
    """
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def authorization_url(endpoint: str, params: Mapping[str, str]) -> str:
    """*endpoint* with *params* added to its query (keeping any query it has)."""
    parts = urlsplit(endpoint)
    query = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


_stdout_lock = threading.Lock()


def open_browser(url: str) -> bool:
    """Try the system browser; ``False`` when there is none to try (or it failed).

    Where no graphical session is visible (Linux/BSD without ``$DISPLAY``/``$WAYLAND_DISPLAY``)
    nothing is tried: :mod:`webbrowser` would start a text browser in this very terminal. While
    the browser starts, file descriptor 1 points at stderr, so neither ``webbrowser`` nor the
    launcher it spawns can write into stdout, where the token goes.
    """
    import webbrowser

    if (
        sys.platform not in ("darwin", "win32")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and not os.environ.get("BROWSER")
    ):
        return False
    with _stdout_lock:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError):
            saved = -1
        try:
            if saved >= 0:
                os.dup2(2, 1)
            return bool(webbrowser.open(url, new=1, autoraise=True))
        except Exception as exc:  # a broken launcher must not break the sign-in: the URL is shown
            log.debug("could not start a browser: %s", type(exc).__name__)
            return False
        finally:
            if saved >= 0:
                os.dup2(saved, 1)
                os.close(saved)


def _wants_browser(options: Mapping[str, Any]) -> bool:
    if os.environ.get(NO_BROWSER_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return bool(options.get("browser", True))


class AuthorizationCodeGrant:
    """``grant: authorization_code``: see the module docstring."""

    interactive = True
    secret_options: Collection[str] = ()
    identity_options: Collection[str] = ()

    def obtain(self, context: GrantContext) -> Token:
        profile = context.profile
        if not context.interactive:
            raise ReauthenticationRequired(
                f"profile {profile!r} needs a browser sign-in: run `tokenflow login {profile}`",
                error="login_required",
            )
        endpoint = context.endpoint("authorization")
        if not endpoint:
            raise ConfigError(
                f"profile {profile!r}: grant authorization_code needs the server's "
                "authorization_url (or an issuer whose metadata names it)"
            )
        # http.server costs milliseconds to import: only a sign-in pays for it, not plugin loading
        from tokenflow.builtins.loopback import LoopbackListener, parse_redirect_uris

        options = context.options
        targets = parse_redirect_uris(options.get("redirect_uri"))
        timeout = float(options.get("login_timeout", DEFAULT_LOGIN_TIMEOUT))
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        remember_secret(verifier)
        remember_secret(state)
        with LoopbackListener(targets) as listener:
            redirect_uri = listener.redirect_uri
            params: dict[str, str] = {
                "response_type": "code",
                "client_id": context.client_id,
                "redirect_uri": redirect_uri,
            }
            scope = context.scope
            if scope:
                params["scope"] = scope
            params.update(options.get("authorize_params") or {})
            params.update({"state": state, "code_challenge": challenge, "code_challenge_method": "S256"})
            url = authorization_url(endpoint, params)
            opened = _wants_browser(options) and open_browser(url)
            how = "a browser window was opened; if it did not appear, open" if opened else "open"
            context.notify(
                f"Sign in for profile {profile!r}: {how} this URL in a browser "
                f"(waiting up to {timeout:.0f} s; Ctrl-C cancels):",
                url=url,
            )
            callback = listener.wait(state, timeout, issuer=context.issuer)
        code = callback.params["code"]
        remember_secret(code)
        log.debug("browser sign-in for profile %r came back; exchanging the code", profile)
        return context.request_token({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        })


@hookimpl
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    register("authorization_code", AuthorizationCodeGrant(), OPTIONS_SCHEMA)
