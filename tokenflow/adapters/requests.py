"""``TokenflowAuth``: a requests auth that carries a fresh token and recovers from one 401.

::

    import requests, tokenflow
    from tokenflow.adapters.requests import TokenflowAuth

    http = requests.Session()
    http.auth = TokenflowAuth(tokenflow.load_config().session("prod"))
    http.get("https://api.example/things")

Each request gets the session's current token (from memory: no lock, no I/O once fresh), in
the ``Authorization`` header or the ``access_token`` query parameter as the profile's
``token_placement`` says. On a 401 that means "this token is no longer good" (see
:mod:`tokenflow.adapters`) the response hook invalidates that token, gets the new one and
resends the request once, as requests' own ``HTTPDigestAuth`` does: a file body is rewound to
where it started, a body that cannot be replayed (a generator, a pipe) is not resent and the
401 is returned as it is, and the 401 stays in ``response.history``. A 403 or a second 401 is
never retried.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import requests
from requests.cookies import extract_cookies_to_jar

from tokenflow.adapters import should_retry
from tokenflow.engine.placement import QUERY, with_query_token
from tokenflow.redact import install_log_filters

if TYPE_CHECKING:
    from tokenflow.engine.session import TokenSession
    from tokenflow.tokens import Token

__all__ = ["TokenflowAuth"]

_UNSET = object()
MAX_DRAIN = 64 * 1024  # bytes of a 401's body read to keep its connection for the resend


class TokenflowAuth(requests.auth.AuthBase):
    """Authenticate requests with the tokens of a :class:`~tokenflow.engine.session.TokenSession`.

    Thread-safe and shareable: the state of one request (its token, where its body started)
    travels with that request's response hook, not on this object.
    """

    def __init__(self, session: TokenSession) -> None:
        self.session = session
        install_log_filters()  # urllib3 logs request URLs at DEBUG: a query-placed token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.session.token()
        self._place(r, token)
        position: Any = _UNSET
        body: Any = r.body  # typed bytes | str, but a file or a generator at run time
        if body is not None and not isinstance(body, bytes | str):
            try:
                position = body.tell()
            except (AttributeError, OSError, ValueError):
                position = None  # cannot be rewound: never resent
        hook = functools.partial(self._handle_401, token=token, position=position)
        r.register_hook("response", hook)  # type: ignore[no-untyped-call]
        return r

    def _place(self, r: requests.PreparedRequest, token: Token) -> None:
        if self.session.token_placement == QUERY:
            r.url = with_query_token(r.url or "", token.access_token)
        else:
            r.headers["Authorization"] = f"Bearer {token.access_token}"

    def _carries(self, r: requests.PreparedRequest, token: Token) -> bool:
        """Whether *r* still carries *token* (a redirect to another host drops it: a 401
        from there says nothing about our token, and it must not get the new one)."""
        if self.session.token_placement == QUERY:
            return (r.url or "") == with_query_token(r.url or "", token.access_token)
        return r.headers.get("Authorization") == f"Bearer {token.access_token}"

    def _handle_401(
        self, r: requests.Response, *, token: Token, position: Any, **kwargs: Any
    ) -> requests.Response:
        """The response hook: resend once with a new token after a 401 that asks for one."""
        request = r.request
        if not should_retry(r.status_code, r.headers.get("WWW-Authenticate")):
            return r
        if not self._carries(request, token):
            return r
        body: Any = request.body
        if position is not _UNSET:
            if position is None:
                return r  # a streaming body is gone: the caller gets the 401 as it is
            try:
                body.seek(position)
            except (AttributeError, OSError, ValueError):
                return r
        self.session.invalidate(token)
        new = self.session.token()
        # free the connection for the resend (what HTTPDigestAuth does), reading a small 401
        # body so the connection can be reused; a large or unsized one is not read: the
        # connection is closed instead (bounded, and the resend opens another)
        length = r.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= MAX_DRAIN:
            r.content  # noqa: B018
        r.close()
        resend = request.copy()
        jar: Any = getattr(request, "_cookies", None)
        if jar is not None:
            extract_cookies_to_jar(jar, request, r.raw)  # type: ignore[no-untyped-call]
            resend.prepare_cookies(jar)
        self._place(resend, new)
        assert r.connection is not None  # set by the adapter that sent the request
        again: requests.Response = r.connection.send(resend, **kwargs)
        again.history.append(r)
        again.request = resend
        return again
