"""``TokenflowAuth``: an ``httpx.Auth`` carrying a fresh token, sync and async, with one 401 retry.

::

    import httpx, tokenflow
    from tokenflow.adapters.httpx import TokenflowAuth

    auth = TokenflowAuth(tokenflow.load_config().session("prod"))
    with httpx.Client(auth=auth) as client:
        client.get("https://api.example/things")
    async with httpx.AsyncClient(auth=auth) as client:
        await client.get("https://api.example/things")

The token goes where the profile's ``token_placement`` says. The async flow never blocks the
event loop: a token fresh in memory is used inline; anything slower (reading the store, waiting
for the lock, the token request) runs in a worker thread through anyio, so it works under asyncio
and trio, and any number of tasks and threads at expiry cause one refresh.

On a 401 that asks for a new token (see :mod:`tokenflow.adapters`) the flow invalidates the
refused token and resends once with the new one; httpx keeps the 401 in ``response.history``. A
body that cannot be replayed (a generator or a file, streamed) is not resent: the 401 is
returned as it is. A 403 or a second 401 is never retried.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from tokenflow.adapters import should_retry
from tokenflow.engine.placement import QUERY, with_query_token
from tokenflow.redact import install_log_filters

if TYPE_CHECKING:
    from tokenflow.engine.session import TokenSession
    from tokenflow.tokens import Token

__all__ = ["TokenflowAuth"]


class TokenflowAuth(httpx.Auth):
    """Authenticate httpx requests with the tokens of a
    :class:`~tokenflow.engine.session.TokenSession`; one object serves sync and async clients,
    any number of them, from any thread or task."""

    def __init__(self, session: TokenSession) -> None:
        self.session = session
        # httpx logs request URLs at INFO, urllib3-style: a query-placed token must not show
        install_log_filters("httpx", "httpcore")

    def _place(self, request: httpx.Request, token: Token) -> None:
        if self.session.token_placement == QUERY:
            request.url = httpx.URL(with_query_token(str(request.url), token.access_token))
        else:
            request.headers["Authorization"] = f"Bearer {token.access_token}"

    @staticmethod
    def _resend(request: httpx.Request, response: httpx.Response) -> bool:
        """Whether *response* asks for a new token and *request* can be sent again."""
        if not should_retry(response.status_code, response.headers.get("WWW-Authenticate")):
            return False
        # bytes content (and a body httpx has read) replays; a generator or file stream does not
        return hasattr(request, "_content") or isinstance(request.stream, httpx.ByteStream)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.session.token()
        self._place(request, token)
        response = yield request
        if not self._resend(request, response):
            return
        self.session.invalidate(token)
        self._place(request, self.session.token())
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.session.atoken()
        self._place(request, token)
        response = yield request
        if not self._resend(request, response):
            return
        await self.session.ainvalidate(token)
        self._place(request, await self.session.atoken())
        yield request
