"""The contracts plugins implement: token stores, secret resolvers and dialects.

These are :class:`typing.Protocol` classes, so a plugin needs no base class: any object with
the right methods fits, and ``mypy`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tokenflow.tokens import Token

__all__ = [
    "Dialect",
    "DialectRegistrar",
    "HttpRequest",
    "PluginContext",
    "SecretResolver",
    "SourceRegistrar",
    "StoreFactory",
    "StoreRegistrar",
    "TokenStore",
]


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a store factory or a secret resolver may need beyond its options.

    :param profile: the profile being served.
    :param base_dir: the directory of the file that defined the value, for relative paths.
    :param cache_dir: tokenflow's user cache directory (where the file store keeps tokens).
    :param interactive: whether the user can be asked (stdin is a TTY).
    """

    profile: str
    base_dir: Path
    cache_dir: Path
    interactive: bool = False


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens are kept between calls (and between processes, for shared stores).

    All methods must be safe to call from several threads at once.
    """

    def load(self, key: str) -> Token | None:
        """The token saved under *key*, or ``None``. A damaged entry is reported and
        treated as absent; it must never raise for bad data, only for an unusable store."""

    def save(self, key: str, token: Token) -> None:
        """Persist *token* under *key*, atomically: a reader sees the old or the new one."""

    def delete(self, key: str) -> None:
        """Forget *key*; deleting an absent key is not an error."""

    def lock(self, key: str) -> AbstractContextManager[object]:
        """Serialise refreshes of *key* across every process (or host) sharing the store."""


StoreFactory = Callable[[Mapping[str, Any], PluginContext], TokenStore]
"""``factory(options, context) -> TokenStore``; options as written in the profile."""

SecretResolver = Callable[[Any, PluginContext], str]
"""``resolver(options, context) -> str``; raise CredentialError or ConfigError on failure."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request a dialect built: the transport sends it as it is."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


class Dialect(Protocol):
    """How one family of servers wants token requests shaped.

    :meth:`token_request` gets the grant's parameters (``grant_type`` first, then for example
    ``username``/``password`` or ``refresh_token``, and ``scope`` when configured) and the
    client credentials; it decides where each goes (query string, form body, Basic header).
    """

    name: str

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        """Build the token (or refresh) request."""

    def revoke_request(
        self,
        revoke_url: str,
        token: Token,
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        """Build the revocation request for *token*."""


# -- the register(...) callables handed to the registration hooks ---------------------------
class StoreRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_stores``."""

    def __call__(
        self, name: str, factory: StoreFactory, options_schema: Mapping[str, Any] | None = None
    ) -> None: ...


class SourceRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_secret_sources``."""

    def __call__(
        self,
        name: str,
        resolver: SecretResolver,
        options_schema: Mapping[str, Any] | None = None,
        cache_key_safe: bool = False,
    ) -> None: ...


class DialectRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_dialects``."""

    def __call__(self, name: str, dialect: Dialect) -> None: ...
