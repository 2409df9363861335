"""One ``threading.Lock`` per key, created on first use: the in-process half of single flight."""

from __future__ import annotations

import os
import threading
import weakref


class KeyedLocks:
    """A lock per key. Locks are never removed: a process holds few keys, and removing one
    while another thread waits on it would let two threads in at once.

    After ``fork()`` the child gets fresh locks: a lock some other parent thread held at the
    moment of the fork would otherwise stay locked in the child for ever. So callers look the
    lock up on every use and never keep the object: a kept lock is the parent's, and may be
    held by a thread that does not exist in the child.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        _instances.add(self)

    def __call__(self, key: str) -> threading.Lock:
        """The lock of *key* (use it as a context manager)."""
        lock = self._locks.get(key)
        if lock is None:
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
        return lock

    def _reset_after_fork(self) -> None:
        self._guard = threading.Lock()
        self._locks = {}


_instances: weakref.WeakSet[KeyedLocks] = weakref.WeakSet()


def _reset_all() -> None:
    for instance in list(_instances):
        instance._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all)
