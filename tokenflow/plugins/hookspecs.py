"""The hooks a tokenflow plugin can implement (pluggy project name ``tokenflow``).

A plugin is a module or object with functions decorated by :data:`tokenflow.hookimpl` and named
after these specs. It is found through the ``tokenflow`` entry-point group, or named in
``$TOKENFLOW_PLUGINS``. The built-in stores, secret sources, dialects and the logging sink are
plugins too (``tokenflow.builtins``), registered through exactly these hooks.

Registration hooks are called once, when a :class:`~tokenflow.plugins.PluginHost` is built; the
objects they register are then called from any thread, so they must be thread-safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tokenflow.events import TokenEvent
    from tokenflow.plugins.contracts import (
        DialectRegistrar,
        GrantRegistrar,
        SourceRegistrar,
        StoreRegistrar,
    )

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("tokenflow")
hookimpl = pluggy.HookimplMarker("tokenflow")


@hookspec
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    """Register token stores.

    :param register: call ``register(name, factory, options_schema=None)`` once per store.
        ``factory(options, context)`` returns an object with ``load(key)``, ``save(key, token)``,
        ``delete(key)`` and ``lock(key)`` (see :class:`tokenflow.interfaces.TokenStore`); it is
        called once per session and may raise :class:`~tokenflow.errors.StorageError` (for example
        a missing optional dependency) with a message that tells the user what to install.
        ``options`` is the mapping written in ``store: {NAME: OPTIONS}`` (empty for ``store: NAME``)
        after validation against ``options_schema`` (a JSON Schema dict). ``lock(key)`` must
        serialise refreshes of one key across every process (or host) that shares the store;
        ``load`` must treat damaged data as absent rather than raise. Registering a name twice is
        an error naming both plugins.
    """


@hookspec
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    """Register secret sources (where passwords, usernames and client secrets come from).

    :param register: call ``register(name, resolver, options_schema=None, cache_key_safe=False,
        watch=None)``.
        A profile uses the source as ``{NAME: OPTIONS}``; ``resolver(options, context) -> str`` gets
        OPTIONS exactly as written (after ``${VAR}`` expansion), validated against
        ``options_schema``. It is called when the value is needed (lazily, at most once per
        session) from any thread; raise :class:`~tokenflow.errors.CredentialError` when the value
        cannot be had (never include the value in the message), or
        :class:`~tokenflow.errors.ConfigError` when the options are wrong. ``cache_key_safe=True``
        says the value is cheap and side-effect free, so a username from this source may enter
        the cache key by value; otherwise the source spec itself is used. ``watch(options,
        context) -> Watched`` names the variables and files such a value is read from, so the
        CLI's fast path can tell, without calling the plugin, that its cached answer still holds.
    """


@hookspec
def tokenflow_register_dialects(register: DialectRegistrar) -> None:
    """Register request dialects (how a family of servers wants token requests shaped).

    :param register: call ``register(name, dialect)`` with an object implementing
        :class:`tokenflow.interfaces.Dialect`. Dialects must be stateless (shared by threads).
    """


@hookspec
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    """Register grants: how a profile gets its first token (``grant: NAME`` in a profile).

    :param register: call ``register(name, grant, options_schema=None)`` with an object
        implementing :class:`tokenflow.plugins.contracts.Grant`. ``options_schema`` is a JSON
        Schema object whose ``properties`` are the profile keys the grant reads (``username``,
        ``redirect_uri``...) and whose ``required`` lists the ones it cannot run without; they are
        validated, after ``extends``, with FILE:LINE:COL errors like store options. Keys listed in
        the grant's ``secret_options`` are secrets: a literal or one secret source. The built-in
        ``password`` and ``client_credentials`` grants are registered through this hook too.
        Refreshing is the engine's job: a grant runs only when no usable token is left.
    """


@hookspec
def tokenflow_event(event: TokenEvent) -> None:
    """Observe what the engine does: fetches, cache hits, refreshes, failures.

    :param event: a frozen :class:`~tokenflow.events.TokenEvent`; it carries no secret.

    Called synchronously on the thread that caused the event, possibly from several threads at
    once: be quick and thread-safe (hand work to a queue for anything slow). An exception raised
    here is reported on the ``tokenflow.plugins`` logger and never breaks the token flow. The hot
    path (a fresh token already in memory) emits no event.

    An implementation may carry a ``wants`` attribute: a callable taking an
    :class:`~tokenflow.events.EventKind` and saying whether it would act on such an event right
    now. When every implementation has one and all say no, the engine builds no event at all
    (the built-in logging sink answers with its logger's level, so a quiet logger costs
    nothing on a refresh). Without the attribute an implementation receives every event.
    """
