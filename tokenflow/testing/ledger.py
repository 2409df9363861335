"""Request accounting: what the embedded server was asked, for tests to count and inspect.

:class:`Ledger` keeps request counters by endpoint and grant type, a bounded history of
:class:`RequestRecord` (parameter *names* only, so a failing test may print it without
leaking a password), the last request verbatim as :class:`RawRequest` (secrets included:
tests check what a client sent), the most token requests ever processed at once, and the
tracebacks of unexpected handler errors (answered as 500, never printed).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from tokenflow.testing.wire import Exchange, Reply, is_form, names


@dataclass(frozen=True)
class RequestRecord:
    """What a request looked like, without any secret values.

    Only parameter *names* are kept so a recorded history can be printed in
    a failing test without leaking passwords; ``client_auth`` is ``"basic"``,
    ``"body"``, ``"query"`` or None, telling how the client authenticated.
    """

    method: str
    path: str
    status: int
    grant_type: str | None
    client_auth: str | None
    query_params: tuple[str, ...]
    body_params: tuple[str, ...]
    content_type: str | None
    scripted: bool


@dataclass(frozen=True)
class RawRequest:
    """The last request verbatim (secrets included): tests check what was sent."""

    method: str
    target: str
    query: str
    body: bytes
    headers: Mapping[str, str]


class Ledger:
    """Counters, history and concurrency high-water mark; thread-safe."""

    def __init__(self, max_records: int) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=max_records)
        self._last_raw: RawRequest | None = None
        self._errors: list[str] = []
        self._in_flight = 0
        self._in_flight_max = 0

    def count(self, *keys: str) -> None:
        with self._lock:
            self._counts.update(keys)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Mark a token request as being processed, for ``in_flight_max``."""
        with self._lock:
            self._in_flight += 1
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def record(self, ex: Exchange, reply: Reply) -> None:
        record = RequestRecord(
            method=ex.method,
            path=ex.path,
            status=reply.status,
            grant_type=ex.grant_type,
            client_auth=ex.client_auth,
            query_params=names(ex.query),
            body_params=names(ex.body.decode("latin-1")) if is_form(ex) else (),
            content_type=ex.content_type,
            scripted=ex.scripted,
        )
        raw = RawRequest(ex.method, ex.target, ex.query, ex.body, ex.headers)
        with self._lock:
            self._requests.append(record)
            self._last_raw = raw

    def note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._in_flight_max = 0

    @property
    def counts(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self._counts)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def last_raw(self) -> RawRequest | None:
        with self._lock:
            return self._last_raw

    @property
    def in_flight_max(self) -> int:
        with self._lock:
            return self._in_flight_max

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)
