"""The library's front door: load a configuration, get sessions.

::

    import tokenflow
    flow = tokenflow.load_config("profiles/")      # a Tokenflow
    session = flow.session("prod")                  # a TokenSession, shared and thread-safe
    session.headers()                               # {"Authorization": "Bearer ..."}

:class:`Tokenflow` owns what a loaded configuration needs at run time: the frozen
:class:`~tokenflow.config.model.Config` value, the plugin host that validated it, and the
sessions (one per profile, reused so every caller in a process shares one token and one
connection pool). The configuration itself stays a value: it can be compared, passed around and
inspected without dragging the engine in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tokenflow.config.loader import config_from_data, read_config
from tokenflow.config.model import ClientSpec, Config, Profile, ServerSpec
from tokenflow.engine.pools import TransportPool
from tokenflow.engine.session import TokenSession
from tokenflow.plugins.host import PluginHost, build_plugin_host

__all__ = ["Tokenflow", "config_from_mapping", "load_config"]


class Tokenflow:
    """A loaded configuration with the plugins and the sessions that serve it.

    It reads like the :class:`Config` it holds (``profiles``, ``servers``, ``profile(name)``...)
    and adds :meth:`session` and :meth:`close`. Use it as a context manager to close every
    session's connections at the end.
    """

    def __init__(self, config: Config, plugins: PluginHost) -> None:
        self.config = config
        self.plugins = plugins
        self._sessions: dict[str, TokenSession] = {}
        self._lock = threading.Lock()
        # one connection pool per server, shared by every session (private ones too): 300
        # sessions on one server keep a few sockets, not 300
        self._transports = TransportPool()

    # -- the configuration, read through -------------------------------------------------------
    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self.config.profiles

    @property
    def abstract_profiles(self) -> frozenset[str]:
        return self.config.abstract_profiles

    @property
    def servers(self) -> Mapping[str, ServerSpec]:
        return self.config.servers

    @property
    def clients(self) -> Mapping[str, ClientSpec]:
        return self.config.clients

    @property
    def files(self) -> tuple[Path, ...]:
        return self.config.files

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir

    @property
    def env_used(self) -> frozenset[str]:
        return self.config.env_used

    def default_profile_name(self) -> str:
        """``$TOKENFLOW_PROFILE``, else the only profile, else a ConfigError listing them."""
        return self.config.default_profile_name()

    def profile(self, name: str | None = None) -> Profile:
        """The profile called *name* (default: :meth:`default_profile_name`)."""
        return self.config.profile(name)

    # -- sessions ------------------------------------------------------------------------------
    def session(self, name: str | None = None, **options: Any) -> TokenSession:
        """The thread-safe :class:`~tokenflow.engine.session.TokenSession` of a profile.

        Without *options* the session is cached and shared; with options (``on_event=`` to log
        or count :class:`~tokenflow.events.TokenEvent`, ``login=`` for interactive grants, or
        ``clock=`` and ``store=`` in tests) a new, private session is built. Every session
        shares this object's connection pools.
        """
        profile = self.config.profile(name)
        if options:
            options.setdefault("transports", self._transports)
            return TokenSession(profile, plugins=self.plugins, cache_dir=self.config.cache_dir,
                                **options)
        with self._lock:
            session = self._sessions.get(profile.name)
            if session is None:
                session = TokenSession(profile, plugins=self.plugins,
                                       cache_dir=self.config.cache_dir,
                                       transports=self._transports)
                self._sessions[profile.name] = session
            return session

    def close(self) -> None:
        """Close every session's connection pool (sessions stay usable and reconnect)."""
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
            self._transports.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tokenflow(profiles={sorted(self.config.profiles)!r})"


def load_config(
    *paths: str | os.PathLike[str],
    plugins: PluginHost | None = None,
    environ: Mapping[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Tokenflow:
    """Load and validate config files or directories (default: the discovery order).

    Raises :class:`~tokenflow.errors.ConfigError` listing every problem, each with file, line
    and column. *plugins* defaults to a fresh host (built-ins, entry points, ``$TOKENFLOW_PLUGINS``).
    """
    host = plugins if plugins is not None else build_plugin_host()
    config = read_config(*paths, plugins=host, environ=environ, cache_dir=cache_dir)
    return Tokenflow(config, host)


def config_from_mapping(
    data: Mapping[str, Any],
    source: str = "<mapping>",
    *,
    base_dir: str | os.PathLike[str] | None = None,
    plugins: PluginHost | None = None,
    environ: Mapping[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Tokenflow:
    """Build from already-parsed data (for tools that embed tokenflow); errors name *source*."""
    host = plugins if plugins is not None else build_plugin_host()
    config = config_from_data(data, source, plugins=host, base_dir=base_dir, environ=environ,
                              cache_dir=cache_dir)
    return Tokenflow(config, host)
