"""Fault injection: responses a test scripts instead of the server's own answers.

Clients must survive what real servers and the proxies in front of them send: an HTML 503
with ``Retry-After``, ``expires_in`` as a string, a missing ``token_type``, a 200 carrying an
error.  :class:`ScriptedResponse` is such a reply, returned verbatim; :func:`success_body`,
:func:`success_response` and :func:`error_response` start from the faithful Spring shape and
bend one field, so table tests stay honest.  :class:`ResponseQueue` is the thread-safe queue
an endpoint consumes them from (``EmbeddedServer.script``, ``fail_next`` and the device poll
script all use one).
"""

from __future__ import annotations

import collections
import enum
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

from tokenflow.testing.model import DEFAULT_SCOPE
from tokenflow.testing.wire import JSON, NO_STORE, Reply, dumps


@dataclass(frozen=True)
class ScriptedResponse:
    """A response returned verbatim by the token endpoint (see ``script``).

    ``Content-Length`` and ``Date`` are added unless present in ``headers``;
    ``close=True`` closes the connection after the response.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    close: bool = False

    def reply(self) -> Reply:
        return Reply(self.status, list(self.headers.items()), self.body, self.close)


class _Omit(enum.Enum):
    OMIT = "OMIT"


OMIT: Final = _Omit.OMIT
"""Pass as a field value to :func:`success_body` to drop that field."""


def success_body(**fields: object) -> bytes:
    """Build a Spring-style token success body with overridden or omitted fields.

    Table tests need odd-but-real responses (``expires_in="3600"``, missing
    ``token_type``, ...); starting from the faithful shape keeps them honest.
    """
    payload: dict[str, object] = {
        "access_token": str(uuid.uuid4()),
        "token_type": "bearer",
        "refresh_token": str(uuid.uuid4()),
        "expires_in": 86399,
        "scope": DEFAULT_SCOPE,
    }
    for name, value in fields.items():
        if value is OMIT:
            payload.pop(name, None)
        else:
            payload[name] = value
    return dumps(payload)


def success_response(status: int = 200, **fields: object) -> ScriptedResponse:
    """A :class:`ScriptedResponse` carrying :func:`success_body` with Spring's headers."""
    headers = {"Content-Type": JSON, **dict(NO_STORE)}
    return ScriptedResponse(status, headers, success_body(**fields))


def error_response(status: int, error: str, description: str) -> ScriptedResponse:
    """A :class:`ScriptedResponse` shaped like a Spring OAuth2 error."""
    headers = {"Content-Type": JSON, **dict(NO_STORE)}
    return ScriptedResponse(status, headers, dumps({"error": error, "error_description": description}))


def proxy_error(
    status: int, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> ScriptedResponse:
    """The HTML error page a proxy in front of the server sends (``fail_next``'s default)."""
    if body is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        body = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
    return ScriptedResponse(status, {"Content-Type": "text/html", **(headers or {})}, body)


class ResponseQueue:
    """Scripted responses consumed in order, one per request, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.deque[ScriptedResponse] = collections.deque()

    def extend(self, items: Iterable[ScriptedResponse]) -> None:
        with self._lock:
            self._items.extend(items)

    def pop(self) -> ScriptedResponse | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
