"""Auth objects for HTTP clients, and the 401 rule they share.

* :mod:`tokenflow.adapters.requests`: ``TokenflowAuth(session)``, a ``requests`` auth.
* :mod:`tokenflow.adapters.httpx`: ``TokenflowAuth(session)``, an ``httpx.Auth`` (sync and async).
* urllib3 or anything else: :meth:`TokenSession.apply` places the token, and after a 401
  :func:`token_after_401` (or :func:`atoken_after_401`) says whether to resend and with what.

The rule: a 401 whose ``WWW-Authenticate: Bearer`` challenge has ``error="invalid_token"`` or no
error means the resource server no longer accepts a token the cache still calls fresh (another
process refreshed and the server dropped the old token, or the server restarted). The adapter
invalidates exactly that token (:meth:`TokenSession.invalidate`, a compare-and-set, so a burst
of 401s causes one refresh), gets the new one and resends the request once. Anything else (a
403, ``insufficient_scope``, a 401 without a Bearer challenge, or a second 401) is returned as
it is: resending could not help.

This package never imports requests or httpx; each adapter module imports its own library.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenflow.engine.session import TokenSession
    from tokenflow.tokens import Token

__all__ = ["atoken_after_401", "bearer_challenge", "should_retry", "token_after_401"]

RETRY_ERRORS = frozenset({"", "invalid_token"})
MAX_CHALLENGE = 8192  # characters of WWW-Authenticate read; a hostile header cannot cost more

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]++"
# an auth-param (name=value, value a token or a quoted string) or a scheme (a token not followed
# by "="); token68 credentials parse as params of their scheme, which is harmless here
_ITEM = re.compile(
    rf'(?P<name>{_TOKEN})\s*=\s*(?P<value>"(?:[^"\\]|\\.)*+"|[^\s,]*)|(?P<scheme>{_TOKEN})(?!\s*=)'
)
_ESCAPE = re.compile(r"\\(.)")


def bearer_challenge(www_authenticate: str | None) -> dict[str, str] | None:
    """The parameters of the ``Bearer`` challenge in a ``WWW-Authenticate`` value (names in
    lower case), or ``None`` when there is no Bearer challenge.

    Handles several challenges in one header (``Basic realm="a", Bearer error="invalid_token"``).
    """
    if not www_authenticate:
        return None
    params: dict[str, str] | None = None
    in_bearer = False
    for match in _ITEM.finditer(www_authenticate[:MAX_CHALLENGE]):
        scheme = match["scheme"]
        if scheme is not None:
            in_bearer = scheme.lower() == "bearer"
            if in_bearer and params is None:
                params = {}
            elif params is not None and not in_bearer:
                break  # the first Bearer challenge is the one that counts
        elif in_bearer and params is not None:
            value = match["value"]
            if value.startswith('"'):
                value = _ESCAPE.sub(r"\1", value[1:-1])
            params.setdefault(match["name"].lower(), value)
    return params


def should_retry(status: int, www_authenticate: str | None) -> bool:
    """Whether an answer means "this token is no longer good: get another and resend".

    True only for a 401 with a Bearer challenge whose ``error`` is ``invalid_token`` or absent.
    """
    if status != 401:
        return False
    challenge = bearer_challenge(www_authenticate)
    return challenge is not None and challenge.get("error", "") in RETRY_ERRORS


def token_after_401(
    session: TokenSession, token: Token, status: int, www_authenticate: str | None
) -> Token | None:
    """The token to resend a request with after it was answered *status*, or ``None`` when
    the answer must be returned as it is (see :func:`should_retry`).

    *token* is the one the refused request carried. Call it once per request: a second 401
    with the new token is the server's final word.
    """
    if not should_retry(status, www_authenticate):
        return None
    session.invalidate(token)
    return session.token()


async def atoken_after_401(
    session: TokenSession, token: Token, status: int, www_authenticate: str | None
) -> Token | None:
    """:func:`token_after_401` for async code: the slow parts run off the event loop."""
    if not should_retry(status, www_authenticate):
        return None
    await session.ainvalidate(token)
    return await session.atoken()
