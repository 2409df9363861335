"""What a plugin author needs: the hook markers, the hook specifications and the contracts.

``tokenflow.plugins.hookspecs`` declares the hooks, ``tokenflow.plugins.contracts`` the objects
plugins register (stores, secret resolvers, dialects, grants) and the ``register`` callables they
are handed; ``tokenflow.plugins.host`` is the core's side: it builds pluggy's plugin manager and
calls the hooks through pluggy's own hook callers.
"""

from tokenflow.plugins.contracts import (
    Dialect,
    DialectRegistrar,
    FastPathStore,
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
