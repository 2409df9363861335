"""What a plugin author needs: the hook markers, the hook specifications and the contracts.

``tokenflow.plugins.hookspecs`` declares the hooks, ``tokenflow.plugins.contracts`` the objects
plugins register (stores, secret resolvers, dialects, grants) and the ``register`` callables they
are handed; ``tokenflow.plugins.host`` is the core's side: it builds pluggy's plugin manager and
calls the hooks through pluggy's own hook callers.

The names below are loaded on first use (PEP 562): the transport needs only the request and
response records of :mod:`tokenflow.plugins.contracts`, and the CLI's renewal path must not pay
for pluggy (which ``hookimpl`` and ``hookspec`` come from) to send one request.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tokenflow.plugins.contracts import (
        Dialect,
        DialectRegistrar,
        FastPathStore,
        FastRenewalStore,
        Grant,
        GrantContext,
        GrantRegistrar,
        HttpRequest,
        HttpResponse,
        PluginContext,
        SecretResolver,
        SourceRegistrar,
        StoreFactory,
        StoreRegistrar,
        TokenStore,
        Watched,
        WriterAwareStore,
    )
    from tokenflow.plugins.hookspecs import hookimpl, hookspec

__all__ = [
    "Dialect",
    "DialectRegistrar",
    "FastPathStore",
    "FastRenewalStore",
    "Grant",
    "GrantContext",
    "GrantRegistrar",
    "HttpRequest",
    "HttpResponse",
    "PluginContext",
    "SecretResolver",
    "SourceRegistrar",
    "StoreFactory",
    "StoreRegistrar",
    "TokenStore",
    "Watched",
    "WriterAwareStore",
    "hookimpl",
    "hookspec",
]


def __getattr__(name: str) -> object:
    if name in ("hookimpl", "hookspec"):
        from tokenflow.plugins import hookspecs

        return getattr(hookspecs, name)
    if name in __all__:
        from tokenflow.plugins import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
