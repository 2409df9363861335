"""One ``threading.Lock`` per key, created on first use: the in-process half of single flight."""

from __future__ import annotations

import threading


class KeyedLocks:
    """A lock per key. Locks are never removed: a process holds few keys, and removing one
    while another thread waits on it would let two threads in at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, key: str) -> threading.Lock:
        """The lock of *key* (use it as a context manager)."""
        lock = self._locks.get(key)
        if lock is None:
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
        return lock
