"""The ``keyring`` store and secret source: the OS keychain through the ``keyring`` package.

An optional extra (``pip install 'tokenflow[keyring]'``). Both refuse clearly, rather than
crash or fall back to plaintext, when the package is missing or when keyring finds no usable
backend (``keyring.backends.fail.Keyring`` or the null backend, as on a headless server).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from tokenflow.errors import CredentialError, StorageError
from tokenflow.keyedlocks import KeyedLocks
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar, StoreRegistrar, TokenStore
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token

DEFAULT_SERVICE = "tokenflow"
_UNUSABLE_BACKENDS = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt.file")


def load_keyring(error: type[Exception]) -> ModuleType:
    """Import keyring and check it has a real backend, or raise *error* saying what to do."""
    try:
        import keyring
    except ImportError:
        raise error(
            "the keyring store/source needs the optional extra: pip install 'tokenflow[keyring]'"
        ) from None
    backend = keyring.get_keyring()
    module = type(backend).__module__
    if module.startswith(_UNUSABLE_BACKENDS) or getattr(backend, "priority", 1) <= 0:
        raise error(
            f"no usable OS keyring backend (keyring chose {type(backend).__name__}); install and "
            "unlock a keychain (Secret Service, macOS Keychain, Windows Credential Locker) or use "
            "the file store"
        )
    return keyring


class KeyringStore:
    """Tokens as JSON passwords in the OS keyring, one item per cache key."""

    def __init__(self, service: str) -> None:
        self._keyring = load_keyring(StorageError)
        self.service = service
        self._locks = KeyedLocks()

    def load(self, key: str) -> Token | None:
        try:
            raw = self._keyring.get_password(self.service, key)
        except Exception as exc:
            raise StorageError(f"keyring read failed: {type(exc).__name__}") from None
        if raw is None:
            return None
        try:
            return Token.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            return None  # damaged item: treat as absent, the next save replaces it

    def save(self, key: str, token: Token) -> None:
        try:
            self._keyring.set_password(self.service, key, json.dumps(token.to_dict()))
        except Exception as exc:
            raise StorageError(f"keyring write failed: {type(exc).__name__}") from None

    def delete(self, key: str) -> None:
        try:
            self._keyring.delete_password(self.service, key)
        except self._keyring.errors.PasswordDeleteError:
            pass
        except Exception as exc:
            raise StorageError(f"keyring delete failed: {type(exc).__name__}") from None

    def lock(self, key: str) -> AbstractContextManager[bool]:
        # The OS keyring has no locks: this serialises within the process only. Cross-process
        # single flight needs the file store (documented in the plugin guide).
        return self._locks(key)


def keyring_store(options: Mapping[str, Any], context: PluginContext) -> TokenStore:
    return KeyringStore(str(options.get("service", DEFAULT_SERVICE)))


def resolve_keyring(options: Any, context: PluginContext) -> str:
    keyring = load_keyring(CredentialError)
    service = str(options["service"])
    username = str(options.get("username", ""))
    try:
        value = keyring.get_password(service, username)
    except Exception as exc:
        raise CredentialError(
            f"profile {context.profile!r}: keyring lookup of {service!r} failed: "
            f"{type(exc).__name__}"
        ) from None
    if value is None:
        shown = username or "''"
        raise CredentialError(
            f"profile {context.profile!r}: no keyring item for service {service!r} "
            f"and username {username!r}; add it with: keyring set {service} {shown}"
        )
    return str(value)


@hookimpl
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    register(
        "keyring",
        keyring_store,
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "service": {"type": "string", "minLength": 1,
                            "description": "Keyring service name (default tokenflow)."},
            },
        },
    )


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register(
        "keyring",
        resolve_keyring,
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["service"],
            "properties": {
                "service": {"type": "string", "minLength": 1, "description": "Service name."},
                "username": {"type": "string", "description": "Account name (default empty)."},
            },
        },
    )
