"""Blocking work off the event loop, once per loop: what the async API of a session stands on.

The engine is synchronous (locks, store I/O, urllib3). Async callers must never run it on the
event loop, so it goes to a worker thread: anyio's thread runner when anyio is installed (it
comes with httpx), which serves asyncio and trio alike, else asyncio's.

A worker thread per waiting task would still be costly: 64 tasks at expiry would park 40 threads
(anyio's default limit) on the session's lock, starving everything else the application runs in
threads, for as long as the refresh takes. :class:`AsyncFlight` makes the tasks of one event loop
share one call: the first runs it in a thread, the others wait on an event, and all get its
result (or its error). Threads and other loops still meet at the engine's locks, so the process
as a whole still makes one request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["AsyncFlight", "run_off_loop"]

T = TypeVar("T")


async def run_off_loop(func: Callable[[], T]) -> T:
    """Run the blocking *func* in a worker thread and await its result."""
    try:
        from anyio import to_thread
    except ImportError:  # pragma: no cover - anyio is there whenever httpx is
        import asyncio

        return await asyncio.to_thread(func)
    return await to_thread.run_sync(func)


def _new_event() -> Any:
    try:
        import anyio
    except ImportError:  # pragma: no cover
        import asyncio

        return asyncio.Event()
    return anyio.Event()


class _Call(Generic[T]):
    __slots__ = ("done", "error", "finished", "value")

    def __init__(self) -> None:
        self.done = _new_event()
        self.finished = False
        self.value: T | None = None
        self.error: Exception | None = None


class AsyncFlight(Generic[T]):
    """Concurrent ``await flight.run(func, key)`` on one event loop with equal *key* share one
    call of *func* (callers with equal keys must pass equivalent functions).

    An event loop runs in one thread and a thread runs one loop at a time, so the thread
    identifies the loop. A caller whose leader was cancelled (not failed) tries again itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[int, Hashable], _Call[T]] = {}

    async def run(self, func: Callable[[], T], key: Hashable = None) -> T:
        loop = (threading.get_ident(), key)
        while True:
            with self._lock:
                call = self._calls.get(loop)
                leader = call is None
                if call is None:
                    call = self._calls[loop] = _Call()
            if leader:
                return await self._lead(loop, call, func)
            await call.done.wait()
            if call.finished:
                if call.error is not None:
                    raise call.error
                return call.value  # type: ignore[return-value]  # set when finished
            # the leader was cancelled: its result is lost, so go again

    async def _lead(self, loop: tuple[int, Hashable], call: _Call[T], func: Callable[[], T]) -> T:
        try:
            call.value = value = await run_off_loop(func)
            call.finished = True
            return value
        except Exception as exc:
            call.error = exc
            call.finished = True
            raise
        finally:
            with self._lock:
                del self._calls[loop]
            call.done.set()
