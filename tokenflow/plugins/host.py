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
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

import pluggy

from tokenflow.errors import PluginError
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins import hookspecs
from tokenflow.plugins.contracts import (
    Dialect,
    Grant,
    SecretResolver,
    SecretWatch,
    StoreFactory,
)
from tokenflow.redact import get_logger

__all__ = [
    "BUILTIN_PLUGINS",
    "REQUIRED_PLUGINS",
    "DialectEntry",
    "GrantEntry",
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
    "tokenflow.grants": "tokenflow.builtins.grants",
    "tokenflow.authorization_code": "tokenflow.builtins.authcode",
    "tokenflow.device_code": "tokenflow.builtins.devicecode",
    "tokenflow.refresh_token": "tokenflow.builtins.refresh_bootstrap",
    "tokenflow.logging_sink": "tokenflow.builtins.logging_sink",
}
# The CLI cannot run without these: the default store of every profile and the default dialect.
REQUIRED_PLUGINS: Final = frozenset({"tokenflow.file_store", "tokenflow.rfc6749"})
_GRANT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[a-z][a-z0-9+.-]*:[!-~]+")  # or a URN/URI

ENTRY_POINT_GROUP: Final = "tokenflow"


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """A registered token store: its factory, its options schema and the plugin that gave it.

    (Every entry class here has a docstring: without one, ``dataclass`` computes a signature
    with ``inspect`` for ``__doc__``, a cost every CLI run that loads a config would pay.)
    """

    name: str
    factory: StoreFactory
    options_schema: Mapping[str, Any] | None
    plugin: str


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """A registered secret source: its resolver, options schema and what it may enter the cache
    key by value (``cache_key_safe``, with the files and variables it ``watch``es)."""

    name: str
    resolver: SecretResolver
    options_schema: Mapping[str, Any] | None
    cache_key_safe: bool
    plugin: str
    watch: SecretWatch | None = None


@dataclass(frozen=True, slots=True)
class DialectEntry:
    """A registered dialect and the plugin that gave it."""

    name: str
    dialect: Dialect
    plugin: str


@dataclass(frozen=True, slots=True)
class GrantEntry:
    """A registered grant, the JSON Schema of its profile keys and the plugin that gave it."""

    name: str
    grant: Grant
    options_schema: Mapping[str, Any] | None
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
    """The registered stores, secret sources, dialects, grants and event observers of a process.

    Every hook is called through pluggy's own hook callers (``pm.hook.<name>(...)``), so
    ``tryfirst``/``trylast`` ordering, ``wrapper=True`` and ``hookwrapper=True`` implementations
    behave exactly as in pytest. A ``register`` callable learns which plugin is calling it from
    the call stack (the frame of that plugin's hook implementation), so a name registered twice
    is reported with both plugins' names.
    """

    def __init__(self, pm: pluggy.PluginManager, origins: Mapping[str, str]) -> None:
        self._pm = pm
        self.stores: dict[str, StoreEntry] = {}
        self.sources: dict[str, SourceEntry] = {}
        self.dialects: dict[str, DialectEntry] = {}
        self.grants: dict[str, GrantEntry] = {}
        self._pending: list[tuple[str, Callable[[], None]]] = []
        self._infos: dict[str, PluginInfo] = {
            name: PluginInfo(name, origin, required=name in REQUIRED_PLUGINS)
            for name, origin in origins.items()
        }
        self._collect()
        self._event_impls = pm.hook.tokenflow_event.get_hookimpls()
        for impl in self._event_impls:
            self._infos.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name, "unknown")) \
                .registers.append("event observer")

    # -- registration --------------------------------------------------------------------------
    def _collect(self) -> None:
        hook = self._pm.hook
        self._call(hook.tokenflow_register_stores, self._register_store)
        self._call(hook.tokenflow_register_secret_sources, self._register_source)
        self._call(hook.tokenflow_register_dialects, self._register_dialect)
        self._call(hook.tokenflow_register_grants, self._register_grant)

    def _call(self, hook: pluggy.HookCaller, register: Callable[..., None]) -> None:
        """Call a registration hook through pluggy; a plugin that fails is a PluginError.

        pluggy calls the most recently registered plugin first; what they register is applied
        afterwards in registration order (built-ins first), so a third-party plugin that takes
        a built-in name is the one reported, and listings read in a stable order.
        """
        self._pending = []
        try:
            hook(register=register)
        except PluginError:
            raise
        except Exception as exc:
            plugin = self._plugin_in_traceback(hook, exc) or "unknown"
            raise PluginError(
                f"plugin {plugin!r} failed while registering: {type(exc).__name__}: {exc}"
            ) from exc
        rank = {name: index for index, (name, _) in enumerate(self._pm.list_name_plugin())}
        for _, apply in sorted(self._pending, key=lambda item: rank.get(item[0], len(rank))):
            apply()

    def _impl_codes(self, hook: pluggy.HookCaller) -> dict[int, str]:
        # by identity: two plugins made from the same source have equal code objects
        return {id(getattr(impl.function, "__code__", None)): impl.plugin_name
                for impl in hook.get_hookimpls()}

    def _calling_plugin(self, hook_name: str) -> str:
        """The plugin whose hook implementation is calling ``register`` right now."""
        codes = self._impl_codes(getattr(self._pm.hook, hook_name))
        frame: FrameType | None = sys._getframe(2)
        while frame is not None:
            plugin = codes.get(id(frame.f_code))
            if plugin is not None:
                return plugin
            frame = frame.f_back
        return "unknown"

    def _plugin_in_traceback(self, hook: pluggy.HookCaller, exc: BaseException) -> str | None:
        codes = self._impl_codes(hook)
        found = None
        tb = exc.__traceback__
        while tb is not None:
            found = codes.get(id(tb.tb_frame.f_code), found)
            tb = tb.tb_next
        return found

    def _claim(self, kind: str, name: str, plugin: str, taken: Mapping[str, Any],
               pattern: re.Pattern[str] | None = None) -> None:
        """Check *name* (an identifier, or what *pattern* allows) is free, and record it."""
        good = isinstance(name, str) and (
            pattern.fullmatch(name) is not None if pattern else name.isidentifier())
        if not good:
            raise PluginError(f"plugin {plugin!r} registered a {kind} with a bad name {name!r}")
        if name in taken:
            raise PluginError(
                f"{kind} {name!r} is registered by both {taken[name].plugin!r} and {plugin!r}"
            )
        info = self._infos.setdefault(plugin, PluginInfo(plugin, "unknown"))
        info.registers.append(f"{kind} {name}")

    def _register_store(
        self, name: str, factory: StoreFactory, options_schema: Mapping[str, Any] | None = None
    ) -> None:
        plugin = self._calling_plugin("tokenflow_register_stores")

        def apply() -> None:
            self._claim("store", name, plugin, self.stores)
            self.stores[name] = StoreEntry(name, factory, options_schema, plugin)

        self._pending.append((plugin, apply))

    def _register_source(
        self,
        name: str,
        resolver: SecretResolver,
        options_schema: Mapping[str, Any] | None = None,
        cache_key_safe: bool = False,
        watch: SecretWatch | None = None,
    ) -> None:
        plugin = self._calling_plugin("tokenflow_register_secret_sources")

        def apply() -> None:
            self._claim("secret source", name, plugin, self.sources)
            self.sources[name] = SourceEntry(name, resolver, options_schema, cache_key_safe,
                                             plugin, watch)

        self._pending.append((plugin, apply))

    def _register_dialect(self, name: str, dialect: Dialect) -> None:
        plugin = self._calling_plugin("tokenflow_register_dialects")

        def apply() -> None:
            self._claim("dialect", name, plugin, self.dialects)
            self.dialects[name] = DialectEntry(name, dialect, plugin)

        self._pending.append((plugin, apply))

    def _register_grant(
        self, name: str, grant: Grant, options_schema: Mapping[str, Any] | None = None
    ) -> None:
        plugin = self._calling_plugin("tokenflow_register_grants")

        def apply() -> None:
            self._claim("grant", name, plugin, self.grants, _GRANT_NAME)
            self.grants[name] = GrantEntry(name, grant, options_schema, plugin)

        self._pending.append((plugin, apply))

    # -- use -----------------------------------------------------------------------------------
    def observes(self, kind: EventKind) -> bool:
        """Whether an event of *kind* would reach an observer that acts on it now.

        An implementation without a ``wants`` attribute wants everything (see the hook's spec);
        a ``wants`` that raises counts as yes: an observer is never silenced by its own bug.
        The engine skips building the event when this says no (on a refresh with only the
        built-in logging sink at a quiet level, that saves about 4 % of the request).
        """
        for impl in self._event_impls:
            wants = getattr(impl.function, "wants", None)
            if wants is None:
                return True
            try:
                if wants(kind):
                    return True
            except Exception:
                return True
        return False

    def observer_plugins(self) -> list[str]:
        """Names of the plugins that implement ``tokenflow_event`` (wrappers included)."""
        return [impl.plugin_name for impl in self._event_impls]

    def emit(self, event: TokenEvent) -> None:
        """Deliver *event* through pluggy's hook caller.

        An observer that raises is reported on the ``tokenflow.plugins`` logger and never breaks
        the token flow; as in pluggy, observers after it in the call order miss that one event.
        """
        hook = self._pm.hook.tokenflow_event
        try:
            hook(event=event)
        except Exception as exc:
            plugin = self._plugin_in_traceback(hook, exc) or "unknown"
            log.warning("event observer of plugin %r raised %s: %s (ignored)",
                        plugin, type(exc).__name__, exc)

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

    def grant(self, name: str) -> GrantEntry:
        try:
            return self.grants[name]
        except KeyError:
            raise PluginError(
                f"unknown grant {name!r}; known: {', '.join(sorted(self.grants)) or 'none'}"
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
    from tokenflow.plugins.entry_scan import may_declare

    if not may_declare(ENTRY_POINT_GROUP):
        return  # certainly none installed: importlib.metadata need not be imported or run
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
