"""Discover plugins and give the core typed access to what they register.

:func:`build_plugin_host` builds a fresh pluggy ``PluginManager`` every time (never a module
global, so tests and embedders get isolated hosts): the built-in plugins first, then the
``tokenflow`` entry points, then the modules named in ``$TOKENFLOW_PLUGINS``; names in
``$TOKENFLOW_DISABLE_PLUGINS`` are blocked. Core code never calls ``pm.hook.*`` itself: it uses the
typed methods of :class:`PluginHost` (as tox's plugin manager does).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pluggy

from tokenflow.errors import PluginError
from tokenflow.events import TokenEvent
from tokenflow.plugins import hookspecs
from tokenflow.plugins.contracts import (
    Dialect,
    DialectRegistrar,
    SecretResolver,
    SourceRegistrar,
    StoreFactory,
    StoreRegistrar,
)
from tokenflow.redact import get_logger

__all__ = [
    "BUILTIN_PLUGINS",
    "REQUIRED_PLUGINS",
    "DialectEntry",
    "PluginHost",
    "PluginInfo",
    "SourceEntry",
    "StoreEntry",
    "build_plugin_host",
]

log = get_logger("tokenflow.plugins")

# name -> module; registered in this order, before any third-party plugin
BUILTIN_PLUGINS: Final[dict[str, str]] = {
    "tokenflow.memory_store": "tokenflow.builtins.memory_store",
    "tokenflow.file_store": "tokenflow.builtins.file_store",
    "tokenflow.keyring": "tokenflow.builtins.keyring_plugin",
    "tokenflow.redis_store": "tokenflow.builtins.redis_store",
    "tokenflow.env_source": "tokenflow.builtins.env_source",
    "tokenflow.file_source": "tokenflow.builtins.file_source",
    "tokenflow.command_source": "tokenflow.builtins.command_source",
    "tokenflow.prompt_source": "tokenflow.builtins.prompt_source",
    "tokenflow.teamserver": "tokenflow.builtins.teamserver",
    "tokenflow.rfc6749": "tokenflow.builtins.rfc6749",
    "tokenflow.logging_sink": "tokenflow.builtins.logging_sink",
}
# The CLI cannot run without these: the default store of every profile and the default dialect.
REQUIRED_PLUGINS: Final = frozenset({"tokenflow.file_store", "tokenflow.rfc6749"})

ENTRY_POINT_GROUP: Final = "tokenflow"


@dataclass(frozen=True, slots=True)
class StoreEntry:
    name: str
    factory: StoreFactory
    options_schema: Mapping[str, Any] | None
    plugin: str


@dataclass(frozen=True, slots=True)
class SourceEntry:
    name: str
    resolver: SecretResolver
    options_schema: Mapping[str, Any] | None
    cache_key_safe: bool
    plugin: str


@dataclass(frozen=True, slots=True)
class DialectEntry:
    name: str
    dialect: Dialect
    plugin: str


@dataclass(slots=True)
class PluginInfo:
    """One plugin as ``tokenflow plugins`` shows it."""

    name: str
    origin: str  # "built-in", "entry point (DIST VERSION)", "$TOKENFLOW_PLUGINS"
    required: bool = False
    registers: list[str] = field(default_factory=list)


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


class PluginHost:
    """The registered stores, secret sources, dialects and event observers of one process."""

    def __init__(self, pm: pluggy.PluginManager, origins: Mapping[str, str]) -> None:
        self._pm = pm
        self.stores: dict[str, StoreEntry] = {}
        self.sources: dict[str, SourceEntry] = {}
        self.dialects: dict[str, DialectEntry] = {}
        self._infos: dict[str, PluginInfo] = {
            name: PluginInfo(name, origin, required=name in REQUIRED_PLUGINS)
            for name, origin in origins.items()
        }
        self._collect()
        # get_hookimpls() is in registration order: built-ins first, as documented
        self._observers: list[tuple[str, Callable[..., object]]] = [
            (impl.plugin_name, impl.function) for impl in pm.hook.tokenflow_event.get_hookimpls()
        ]
        for plugin, _ in self._observers:
            self._infos.setdefault(plugin, PluginInfo(plugin, "unknown")).registers.append(
                "event observer"
            )

    # -- registration --------------------------------------------------------------------------
    def _collect(self) -> None:
        hook = self._pm.hook
        for impl in hook.tokenflow_register_stores.get_hookimpls():
            self._call(impl, self._store_registrar(impl.plugin_name))
        for impl in hook.tokenflow_register_secret_sources.get_hookimpls():
            self._call(impl, self._source_registrar(impl.plugin_name))
        for impl in hook.tokenflow_register_dialects.get_hookimpls():
            self._call(impl, self._dialect_registrar(impl.plugin_name))

    @staticmethod
    def _call(impl: pluggy.HookImpl, register: object) -> None:
        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed while registering: {type(exc).__name__}: {exc}"
            ) from exc

    def _claim(self, kind: str, name: str, plugin: str, taken: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin {plugin!r} registered a {kind} with a bad name {name!r}")
        if name in taken:
            raise PluginError(
                f"{kind} {name!r} is registered by both {taken[name].plugin!r} and {plugin!r}"
            )
        info = self._infos.setdefault(plugin, PluginInfo(plugin, "unknown"))
        info.registers.append(f"{kind} {name}")

    def _store_registrar(self, plugin: str) -> StoreRegistrar:
        def register(
            name: str, factory: StoreFactory, options_schema: Mapping[str, Any] | None = None
        ) -> None:
            self._claim("store", name, plugin, self.stores)
            self.stores[name] = StoreEntry(name, factory, options_schema, plugin)

        return register

    def _source_registrar(self, plugin: str) -> SourceRegistrar:
        def register(
            name: str,
            resolver: SecretResolver,
            options_schema: Mapping[str, Any] | None = None,
            cache_key_safe: bool = False,
        ) -> None:
            self._claim("secret source", name, plugin, self.sources)
            self.sources[name] = SourceEntry(name, resolver, options_schema, cache_key_safe, plugin)

        return register

    def _dialect_registrar(self, plugin: str) -> DialectRegistrar:
        def register(name: str, dialect: Dialect) -> None:
            self._claim("dialect", name, plugin, self.dialects)
            self.dialects[name] = DialectEntry(name, dialect, plugin)

        return register

    # -- use -----------------------------------------------------------------------------------
    @property
    def has_observers(self) -> bool:
        """Whether anyone listens: the engine skips building events when nobody does."""
        return bool(self._observers)

    def observer_plugins(self) -> list[str]:
        """Names of the plugins that implement ``tokenflow_event``."""
        return [plugin for plugin, _ in self._observers]

    def emit(self, event: TokenEvent) -> None:
        """Deliver *event* to every observer; one that raises is logged and skipped."""
        for plugin, observer in self._observers:
            try:
                observer(event=event)
            except Exception as exc:
                log.warning(
                    "event observer of plugin %r raised %s: %s (ignored)",
                    plugin, type(exc).__name__, exc,
                )

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin, built-ins first, with what it registered."""
        return list(self._infos.values())

    def blocked(self) -> list[str]:
        """Plugin names blocked by ``$TOKENFLOW_DISABLE_PLUGINS`` (required ones never are)."""
        return sorted(set(_env_list("TOKENFLOW_DISABLE_PLUGINS")) - REQUIRED_PLUGINS)

    def store(self, name: str) -> StoreEntry:
        try:
            return self.stores[name]
        except KeyError:
            raise PluginError(
                f"unknown store {name!r}; known: {', '.join(sorted(self.stores)) or 'none'}"
            ) from None

    def source(self, name: str) -> SourceEntry:
        try:
            return self.sources[name]
        except KeyError:
            raise PluginError(
                f"unknown secret source {name!r}; known: {', '.join(sorted(self.sources))}"
            ) from None

    def dialect(self, name: str) -> Dialect:
        try:
            return self.dialects[name].dialect
        except KeyError:
            raise PluginError(
                f"unknown dialect {name!r}; known: {', '.join(sorted(self.dialects))}"
            ) from None


def _register_module(
    pm: pluggy.PluginManager, name: str, module_name: str, origins: dict[str, str], origin: str
) -> None:
    if pm.is_blocked(name):
        return
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"cannot import plugin module {module_name!r} ({origin}): {type(exc).__name__}: {exc}"
        ) from exc
    if pm.is_registered(module):
        log.debug("plugin module %r is already registered; %s ignored", module_name, origin)
        return
    _register(pm, module, name)
    origins[name] = origin


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """``pm.register``, with a hook implementation that does not fit its spec as a PluginError."""
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} is invalid: {' '.join(str(exc).split())}") from exc


def _load_entry_points(pm: pluggy.PluginManager, origins: dict[str, str]) -> None:
    """Register the ``tokenflow`` entry points (what pluggy's loader does, but a failure names
    the entry point and its distribution, so the user knows what to uninstall or fix)."""
    import importlib.metadata

    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            where = f"{dist.metadata['name']} {dist.version}"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"cannot load entry point {ep.name!r} ({ep.value}) of {where}: "
                    f"{type(exc).__name__}: {exc}; uninstall it or block it with "
                    f"TOKENFLOW_DISABLE_PLUGINS={ep.name}"
                ) from exc
            if pm.is_registered(plugin):
                continue  # the same module under two names
            _register(pm, plugin, ep.name)
            origins[ep.name] = f"entry point ({where})"


def build_plugin_host(extra_plugins: Iterable[object] = ()) -> PluginHost:
    """Build a plugin host: built-ins, entry points, ``$TOKENFLOW_PLUGINS``, then *extra_plugins*.

    Raises :class:`PluginError` for a plugin that cannot be imported, implements an unknown
    hook, or registers a name another plugin already has.
    """
    pm = pluggy.PluginManager("tokenflow")
    pm.add_hookspecs(hookspecs)
    origins: dict[str, str] = {}
    for name in _env_list("TOKENFLOW_DISABLE_PLUGINS"):
        if name in REQUIRED_PLUGINS:
            log.warning("plugin %r cannot be disabled: tokenflow cannot run without it", name)
            continue
        pm.set_blocked(name)
    for name, module_name in BUILTIN_PLUGINS.items():
        _register_module(pm, name, module_name, origins, "built-in")
    _load_entry_points(pm, origins)
    for module_name in _env_list("TOKENFLOW_PLUGINS"):
        _register_module(pm, module_name, module_name, origins, "$TOKENFLOW_PLUGINS")
    for index, plugin in enumerate(extra_plugins):
        if pm.is_registered(plugin):
            continue  # already loaded, e.g. through its entry point
        name = getattr(plugin, "__name__", None) or f"extra-{index}"
        _register(pm, plugin, name)
        origins[name] = "passed in"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r} is invalid: {exc}") from exc
    return PluginHost(pm, origins)
