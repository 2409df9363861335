"""Connection pools shared per token server by every session of one owner.

Without sharing, each :class:`~tokenflow.engine.session.TokenSession` opens its own pool, so a
tool holding 300 sessions against one server keeps 300 sockets. A :class:`TransportPool` hands
every session the same :class:`~tokenflow.transport.Transport` for the same server settings.

It lives apart from :mod:`tokenflow.transport` because building one must not import urllib3:
the owner creates it with its sessions, and urllib3 loads only when the
first request is sent (``tokenflow status`` and cached tokens never send one).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenflow.config.model import ServerSpec
    from tokenflow.transport import Transport

__all__ = ["TransportPool"]


def server_key(server: ServerSpec) -> Hashable:
    """Everything that shapes a transport: two servers alike in all of it share one.

    A ``ServerSpec`` is not hashable (its headers are a dict), so the key is built from its
    fields, mappings as sorted pairs.
    """
    parts: list[Hashable] = []
    for item in dataclasses.fields(server):
        value = getattr(server, item.name)
        parts.append(tuple(sorted(value.items())) if isinstance(value, Mapping) else value)
    return tuple(parts)


_pools: weakref.WeakSet[TransportPool] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    """In a forked child, every pool starts empty: the parent's sockets and pool locks (a
    parent thread may have held one at the fork) are not the child's to use."""
    for pool in list(_pools):
        pool._lock = threading.Lock()
        pool._transports = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


class TransportPool:
    """One :class:`~tokenflow.transport.Transport` per server setting, created on first use.

    Thread-safe. :meth:`close` closes every pool; a later :meth:`get` opens a new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transports: dict[Hashable, Transport] = {}
        _pools.add(self)

    def get(self, server: ServerSpec) -> Transport:
        """The shared transport for *server*."""
        key = server_key(server)
        transport = self._transports.get(key)
        if transport is None:
            from tokenflow.transport import Transport  # urllib3 loads with the first request

            with self._lock:
                transport = self._transports.get(key)
                if transport is None:
                    transport = self._transports[key] = Transport(server)
        return transport

    def __len__(self) -> int:
        return len(self._transports)

    def close(self) -> None:
        """Close every connection pool (idle sockets are closed; the pool stays usable)."""
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            transport.close()

    def __repr__(self) -> str:
        return f"TransportPool(servers={len(self._transports)})"
