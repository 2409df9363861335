"""A :class:`~tokenflow.plugins.contracts.GrantContext` made of tokenflow's real parts, for grant tests.

Token requests go through the real ``rfc6749`` dialect and the urllib3 transport to a real server
(the oauthlib-based independent server); only the clock and the person are stand-ins: a
:class:`conftest.FakeClock` whose ``sleep`` advances it, and a :class:`Browser` that follows the
URLs the grant shows, over real HTTP, as a browser would.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tokenflow.builtins.rfc6749 import RFC6749Dialect
from tokenflow.config.model import ServerSpec
from tokenflow.plugins.contracts import HttpRequest, HttpResponse
from tokenflow.tokens import Token, parse_token_response
from tokenflow.transport import Transport


@dataclass
class Notice:
    message: str
    url: str | None
    user_code: str | None


@dataclass
class RealContext:
    """GrantContext over the real dialect and transport (see the module docstring)."""

    endpoints: Mapping[str, str]
    client_id: str
    client_secret: str | None = None
    profile: str = "dev"
    options: Mapping[str, Any] = field(default_factory=dict)
    interactive: bool = True
    issuer: str | None = None
    scope: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    clock_fn: Callable[[], float] | None = None
    sleep_fn: Callable[[float], None] | None = None
    on_notify: Callable[[Notice], None] | None = None
    notices: list[Notice] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._transport = Transport(ServerSpec("test", self.endpoints["token"], retries=0))
        self._dialect = RFC6749Dialect()

    def secret(self, key: str) -> str | None:
        return self.secrets.get(key)

    def endpoint(self, name: str) -> str | None:
        return self.endpoints.get(name)

    def request_token(self, params: Mapping[str, str]) -> Token:
        params = dict(params)
        if self.scope:
            params.setdefault("scope", self.scope)
        self.token_requests.append(params)
        request = self._dialect.token_request(
            self.endpoints["token"], params, self.client_id, self.client_secret, "basic")
        now = self.clock()
        response = self._transport.send(request)
        return parse_token_response(response.status, response.body, now=now, default_lifetime=3600,
                                    content_type=response.headers.get("content-type", ""))

    def send(self, request: HttpRequest) -> HttpResponse:
        return self._transport.send(request)

    def clock(self) -> float:
        import time

        return self.clock_fn() if self.clock_fn else time.time()

    def sleep(self, seconds: float) -> None:
        import time

        (self.sleep_fn or time.sleep)(seconds)

    def notify(self, message: str, *, url: str | None = None, user_code: str | None = None) -> None:
        notice = Notice(message, url, user_code)
        self.notices.append(notice)
        if self.on_notify is not None:
            self.on_notify(notice)

    def close(self) -> None:
        self._transport.close()


@dataclass
class Visit:
    url: str
    status: int
    headers: Mapping[str, str]
    body: str


class Browser:
    """Follows an authorization URL the way a browser would, on another thread.

    ``tamper(callback_url) -> list[str]`` may return forged callback URLs to visit before the
    real one (a wrong state, say); every visit is recorded in :attr:`visits`.
    """

    def __init__(self, tamper: Callable[[str], list[str]] | None = None, follow: bool = True) -> None:
        self.tamper = tamper
        self.follow = follow
        self.visits: list[Visit] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def __call__(self, notice: Notice) -> None:
        if notice.url is None:
            return
        thread = threading.Thread(target=self._run, args=(notice.url,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def get(self, url: str) -> Visit:
        # http.client, not urllib3: the browser's requests must not show up in tokenflow's logs
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request("GET", urlunsplit(("", "", parts.path, parts.query, "")))
            response = connection.getresponse()
            visit = Visit(url, response.status, dict(response.headers),
                          response.read(65536).decode("utf-8", "replace"))
        finally:
            connection.close()
        self.visits.append(visit)
        return visit

    def _run(self, url: str) -> None:
        try:
            first = self.get(url)
            callback = first.headers.get("Location")
            if not self.follow or callback is None:
                return
            for forged in self.tamper(callback) if self.tamper else []:
                self.get(forged)
            self.get(callback)
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]


def with_param(url: str, name: str, value: str | None) -> str:
    """*url* with query parameter *name* set to *value* (removed when ``None``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    if value is not None:
        query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))
