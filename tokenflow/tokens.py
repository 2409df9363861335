"""The :class:`Token` value and the parser that turns a token endpoint's reply into one.

The parser is lenient where real servers differ and strict where a mistake would hurt
(the same balance as golang.org/x/oauth2's ``internal/token.go``):

* ``token_type`` in any case (Team Server sends ``bearer``), or missing; the header we send is
  ``Bearer``. Any other type (``DPoP``, ``mac``...) is refused: printing ``Bearer`` for a token
  that must be sent another way would fail later and obscurely.
* ``access_token`` must be an RFC 6750 ``b64token``: it ends up in headers and on terminals,
  where CR/LF or escape sequences do harm. A :class:`Token` checks this however it is made,
  so a tampered token store is caught too.
* ``expires_in`` as an integer, a float or a numeric string; missing or null means unknown, and
  then the JWT ``exp`` claim (read, not verified) or the profile's ``default_lifetime`` is used.
  Anything else ("abc", NaN, infinities, under a second, over a year) is reported with a warning
  and replaced by the default: never silently.
* A reply without ``scope`` was granted the requested scope (RFC 6749 section 5.1).
* A 200 carrying ``error`` is a failure; a reply without ``access_token`` is a failure; a body
  that is not JSON (an HTML error page from a proxy) is a failure with a short, scrubbed excerpt.
  The token fields of every reply are remembered as secrets before any message is built.
* A reply without ``refresh_token`` keeps the previous one (RFC 6749 section 6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeGuard

from tokenflow.base import cachefile
from tokenflow.base.freshness import refresh_at
from tokenflow.base.tokensyntax import b64token_problem
from tokenflow.errors import TokenRequestError
from tokenflow.redact import (
    excerpt,
    get_logger,
    printable,
    remember_reply_secrets,
    remember_secret,
    scrub,
)

if TYPE_CHECKING:
    from tokenflow.wire import HttpResponse

__all__ = ["Token", "fingerprint", "parse_error_response", "parse_token_response",
           "token_from_reply"]

log = get_logger("tokenflow.tokens")

MAX_SANE_LIFETIME = 366 * 24 * 3600  # over a year is a server bug or a unit mix-up
SKEW_TOLERANCE = 5.0  # seconds of difference between the server's Date and ours we ignore
_EXCERPT_CHARS = 200
_ERROR_CODE_CHARS = 80  # RFC 6749 error codes are short words; a longer one is cut
_DESCRIPTION_CHARS = 300
_STANDARD_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
)


def fingerprint(secret: str) -> str:
    """A short, stable, one-way name for a token: safe for logs, events and status output."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and what came with it. Immutable; ``repr`` hides the secrets.

    ``expires_at`` and ``obtained_at`` are wall-clock epoch seconds: a monotonic clock stops
    while a laptop sleeps, and a token keeps expiring meanwhile.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_at: float
    obtained_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # checked however the token is made (a reply, a store, a plugin): ValueError, which the
        # stores treat as a damaged entry; parse_token_response checks first for a clear error
        problem = token_problem(self.access_token, self.token_type, self.scope)
        if problem is not None:
            raise ValueError(problem)
        if self.token_type != "Bearer":
            object.__setattr__(self, "token_type", "Bearer")
        remember_secret(self.access_token, pinned=False)
        if self.refresh_token:
            remember_secret(self.refresh_token, pinned=False)

    def __repr__(self) -> str:
        return (
            f"Token(access_token=<{fingerprint(self.access_token)}>, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, refresh_token={'<set>' if self.refresh_token else None}, "
            f"scope={self.scope!r})"
        )

    @property
    def lifetime(self) -> float:
        """Seconds between obtaining the token and its expiry."""
        return self.expires_at - self.obtained_at

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint` (computed once: every event of this token carries it)."""
        cached: str | None = self._fingerprint
        if cached is None:
            cached = fingerprint(self.access_token)
            object.__setattr__(self, "_fingerprint", cached)
        return cached

    def expires_in(self, now: float) -> float:
        """Seconds left at *now* (negative once expired)."""
        return self.expires_at - now

    def refresh_at(self, margin: float) -> float:
        """When this token should be refreshed: *margin* before expiry, at most half its life."""
        return refresh_at(self.expires_at, self.obtained_at, margin)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by stores (it includes the refresh token: stores hold secrets)."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on anything malformed."""
        access = data.get("access_token")
        token_type = data.get("token_type")
        expires_at = data.get("expires_at")
        obtained_at = data.get("obtained_at", expires_at)
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        extra = data.get("extra") or {}
        if not isinstance(access, str) or not access:
            raise ValueError("access_token missing")
        if not isinstance(token_type, str):
            raise ValueError("token_type missing")
        if not _is_number(expires_at) or not _is_number(obtained_at):
            raise ValueError("expires_at/obtained_at not numbers")
        if refresh is not None and not isinstance(refresh, str):
            raise ValueError("refresh_token not a string")
        if scope is not None and not isinstance(scope, str):
            raise ValueError("scope not a string")
        if not isinstance(extra, dict):
            raise ValueError("extra not an object")
        return cls(
            access_token=access,
            token_type=token_type,
            expires_at=float(expires_at),
            obtained_at=float(obtained_at),
            refresh_token=refresh,
            scope=scope,
            extra=extra,
        )


def token_problem(access_token: object, token_type: object, scope: object = None) -> str | None:
    """Why these fields cannot make a usable :class:`Token`, or ``None``; quotes no secret."""
    if not isinstance(access_token, str):
        return "the access_token is not a string"
    bad = b64token_problem(access_token)
    if bad is not None:
        return f"the access_token was refused: {bad}"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = ascii(token_type)[:40] if isinstance(token_type, str) else type(token_type).__name__
        return (f"the token_type is {shown}, not Bearer: tokenflow only hands out Bearer tokens "
                "(DPoP, mac and other types need the client to sign each request)")
    if scope is not None and (not isinstance(scope, str) or printable(scope) != scope):
        return "the scope holds control characters"
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _excerpt(body: bytes) -> str:
    return excerpt(body, _EXCERPT_CHARS)


def _decode_json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = cachefile.loads(body)  # json.loads, through the C scanner directly for UTF-8
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _decode_body(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The reply's fields: JSON (RFC 6749), or a form-encoded body as some older servers send."""
    data = _decode_json_object(body)
    if data is None and content_type.lower().startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qsl

        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return None
        if "access_token" in fields or "error" in fields:
            data = fields
    return data


_CHALLENGE_PARAM = re.compile(r'(error|error_description)\s*=\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)


def _challenge_fields(www_authenticate: str | None) -> dict[str, str]:
    """``error`` and ``error_description`` from a ``WWW-Authenticate`` challenge (RFC 6750 3)."""
    if not www_authenticate:
        return {}
    return {m[1].lower(): m[2] for m in _CHALLENGE_PARAM.finditer(www_authenticate)}


def parse_error_response(
    status: int, body: bytes, content_type: str = "", www_authenticate: str | None = None
) -> TokenRequestError:
    """Build the error for a non-2xx reply (or a 2xx carrying ``error``).

    The fields come from the body (JSON, or form-encoded), else from a ``WWW-Authenticate``
    challenge (some servers answer a bad client with a bare 401 and the error in the header).
    The server's ``error_description`` is scrubbed: Spring repeats the refresh token it refuses.
    """
    data = _decode_body(body, content_type)
    remember_reply_secrets(data)  # before any message: the reply may repeat a token
    if (data is None or "error" not in data) and status == 401:
        challenge = _challenge_fields(www_authenticate)
        if "error" in challenge:
            data = challenge
    if data is not None and isinstance(data.get("error"), str):
        code = _field_text(data["error"], _ERROR_CODE_CHARS)
        raw_description = data.get("error_description")
        description = (_field_text(str(raw_description), _DESCRIPTION_CHARS)
                       if raw_description is not None else None)
        message = f"{code}: {description}" if description else code
        return TokenRequestError(
            f"token request refused (HTTP {status}): {message}",
            error=code,
            error_description=description,
            status=status,
        )
    kind = "HTML" if "html" in content_type.lower() or body.lstrip()[:1] == b"<" else "non-JSON"
    excerpt = _excerpt(body)
    return TokenRequestError(
        f"token endpoint answered HTTP {status} with a {kind} body, not OAuth JSON: {excerpt!r}",
        status=status,
        body_excerpt=excerpt,
    )


def _field_text(value: str, limit: int) -> str:
    """A server's text field as it may appear in a message: scrubbed first, then made printable
    and cut (cutting first would leave the prefix of a token no pattern recognises)."""
    text = printable(scrub(value))
    return text if len(text) <= limit else text[:limit] + "…"


def next_step(error: str | None, grant_type: str, profile: str, client: str) -> str | None:
    """What the user can do about an OAuth *error* (RFC 6749 section 5.2), in profile terms.

    ``invalid_grant`` means the credentials of the grant were refused (for ``password``: the
    username or password), ``invalid_client`` the client's id or secret; ``None`` when there is
    nothing more useful to say than the server's own words.
    """
    if error == "invalid_grant" and grant_type == "password":
        return f"check the username and password of profile {profile!r}"
    if error == "invalid_grant" and grant_type == "refresh_token":
        return f"the refresh token of profile {profile!r} was refused: update it or sign in again"
    if error == "invalid_client":
        return f"check client_id and client_secret of client {client!r} (used by profile {profile!r})"
    if error == "unauthorized_client":
        return f"client {client!r} is not allowed the {grant_type} grant: check the profile's grant"
    if error == "unsupported_grant_type":
        return f"the server does not offer the {grant_type} grant: check the profile's grant"
    if error == "invalid_scope":
        return f"check the scope of profile {profile!r}"
    return None


def token_from_reply(
    reply: HttpResponse,
    *,
    now: float,
    default_lifetime: float,
    previous_refresh_token: str | None = None,
    requested_scope: str | None = None,
) -> Token:
    """:func:`parse_token_response` of a reply as the transport hands it back (the headers the
    parser reads taken from it): what every path that sends a token request does with the reply."""
    headers = reply.headers
    return parse_token_response(
        reply.status, reply.body, now=now, default_lifetime=default_lifetime,
        content_type=headers.get("content-type", ""), date_header=headers.get("date"),
        previous_refresh_token=previous_refresh_token,
        www_authenticate=headers.get("www-authenticate"), requested_scope=requested_scope,
    )


def explain_request_error(exc: TokenRequestError, *, method: str, grant_type: str, profile: str,
                          client: str, server: str) -> None:
    """Reword *exc* (a token endpoint's refusal) in profile terms: which profile, what to do.

    One wording for every path that sends a token request (the engine, and the CLI's renewal
    path, which refreshes without it), so a user reads the same line whichever answered.
    """
    if exc.status == 405:  # GET-only legacy endpoints and servers that refuse GET
        other = "rfc6749 (POST)" if method == "GET" else "teamserver (GET)"
        exc.args = (f"{exc}; the server does not accept {method} for tokens: "
                    f"try dialect: {other} for server {server!r}",)
    step = next_step(exc.error, grant_type, profile, client)
    exc.args = (f"profile {profile!r}: {exc}" + (f"; {step}" if step else ""),)


def revocation_refused(profile: str, revoke_url: str, error: TokenRequestError) -> str:
    """The message of a failed revocation: which endpoint answered what.

    *revoke_url* is the configured URL, shown without its query string (and with Team Server's
    ``{token}`` placeholder left unfilled, so the token never appears).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(revoke_url)
    url = scrub(f"{parts.scheme}://{parts.netloc}{parts.path}")
    if error.error:
        what = f"{error.error}: {error.error_description}" if error.error_description else error.error
    else:
        what = repr(error.body_excerpt) if error.body_excerpt else "an empty body"
    return (f"profile {profile!r}: revocation refused: the revocation endpoint {url} answered "
            f"HTTP {error.status}: {what}; the local copy was removed")


def _coerce_expires_in(value: object) -> float | None:
    """``expires_in`` as seconds, or ``None`` when it is not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _jwt_exp(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT access token, read without verifying (we only need a hint)."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if _is_number(exp) else None


def _server_skew(date_header: str | None, now: float) -> float:
    """Seconds the server's clock is ahead of ours, from its ``Date`` header (0 if unknown)."""
    if not date_header:
        return 0.0
    try:
        server_now = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    skew = server_now - now
    return skew if abs(skew) > SKEW_TOLERANCE else 0.0


def parse_token_response(
    status: int,
    body: bytes,
    *,
    now: float,
    default_lifetime: float,
    content_type: str = "",
    date_header: str | None = None,
    previous_refresh_token: str | None = None,
    www_authenticate: str | None = None,
    requested_scope: str | None = None,
) -> Token:
    """Turn a token endpoint's reply into a :class:`Token`, or raise :class:`TokenRequestError`.

    :param now: local wall-clock time when the request was sent (expiry is counted from it, so
        network latency shortens rather than lengthens the token's assumed life).
    :param previous_refresh_token: kept when the reply carries no new one.
    :param requested_scope: the scope asked for (for a refresh, the scope granted before): a
        reply without ``scope`` was granted exactly that (RFC 6749 sections 5.1 and 6).
    """
    if not 200 <= status < 300:
        raise parse_error_response(status, body, content_type, www_authenticate)
    data = _decode_body(body, content_type)
    if data is None:
        raise parse_error_response(status, body, content_type)
    remember_reply_secrets(data)  # before any message is built from this reply
    if "error" in data:
        error = parse_error_response(status, body, content_type)
        error.args = (f"token endpoint answered HTTP {status} but carried an error: "
                      f"{error.error}: {error.error_description or ''}".rstrip(": "),)
        raise error
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenRequestError(
            f"token endpoint answered HTTP {status} without an access_token "
            f"(fields: {_field_text(', '.join(sorted(map(str, data))), 200) or 'none'})",
            status=status,
        )
    token_type = data.get("token_type")
    if token_type is None or token_type == "":
        token_type = "Bearer"  # widely omitted; bearer is the only type in use
    scope = data.get("scope")
    if isinstance(scope, list):
        scope = " ".join(str(s) for s in scope)
    elif scope is None:
        scope = requested_scope  # RFC 6749 5.1: omitted means as requested
    elif not isinstance(scope, str):
        log.warning("token endpoint sent a scope that is not a string; assuming the requested "
                    "scope")
        scope = requested_scope
    problem = token_problem(access, token_type, scope)
    if problem is not None:
        raise TokenRequestError(f"token endpoint answered HTTP {status} with an unusable token: "
                                f"{problem}", status=status)
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous_refresh_token

    raw_lifetime = data.get("expires_in")
    lifetime = _coerce_expires_in(raw_lifetime)
    expires_at: float | None = None
    if lifetime is not None and 1 <= lifetime <= MAX_SANE_LIFETIME:
        expires_at = now + lifetime  # under a second would expire on arrival
    elif raw_lifetime is not None:
        log.warning(
            "token endpoint sent an implausible expires_in=%s; assuming the default lifetime of "
            "%g seconds", ascii(raw_lifetime)[:40], default_lifetime,
        )
    else:
        exp = _jwt_exp(access)
        if exp is not None:
            local_exp = exp - _server_skew(date_header, now)
            if 0 < local_exp - now <= MAX_SANE_LIFETIME:
                expires_at = local_exp
            else:
                log.warning("JWT exp claim is implausible; assuming %g seconds", default_lifetime)
    if expires_at is None:
        expires_at = now + default_lifetime

    extra = {k: v for k, v in data.items() if k not in _STANDARD_FIELDS}
    return Token(
        access_token=access,
        token_type=token_type,
        expires_at=expires_at,
        obtained_at=now,
        refresh_token=refresh,
        scope=scope,
        extra=extra,
    )
