"""The ``memory`` store: tokens live as long as the process. For services and tests."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from tokenflow.keyedlocks import KeyedLocks
from tokenflow.plugins.contracts import PluginContext, StoreRegistrar, TokenStore
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token


class MemoryStore:
    """A dict behind a lock; ``lock(key)`` serialises refreshes within this process only."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks = KeyedLocks()

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    def lock(self, key: str) -> AbstractContextManager[bool]:
        return self._locks(key)


def memory_store(options: Mapping[str, Any], context: PluginContext) -> TokenStore:
    return MemoryStore()


@hookimpl
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    register("memory", memory_store, {"type": "object", "additionalProperties": False})
