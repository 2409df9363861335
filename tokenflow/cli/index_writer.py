"""Compile a loaded configuration into the index the CLI's fast path reads.

The full path runs this after it has loaded and validated the config. For each profile whose
store can serve the fast path (the optional :class:`~tokenflow.plugins.contracts.FastPathStore`
capability) it records the token file and the refresh margin, together with everything the
answer depends on: the config files, the environment variables and files that the cache key's
values come from (as the secret sources themselves declare through ``watch``), the installed
plugins and tokenflow's version. No plugin is named here: stores and sources say what they can
do, and a profile whose parts cannot vouch for themselves stays on the full path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenflow.api import Tokenflow
from tokenflow.base import locations
from tokenflow.base.files import ensure_private_dir, write_atomic
from tokenflow.cli.fast.index import (
    _PLUGIN_ENV,
    INDEX_FORMAT,
    _distribution_dirs,
    _env_hash,
    _file_hash,
    _search_path,
    _version,
    index_path,
)
from tokenflow.config.model import Profile, SecretSpec
from tokenflow.engine.identity import cache_key, user_identity
from tokenflow.errors import TokenflowError
from tokenflow.plugins.contracts import FastPathStore, PluginContext, TokenStore
from tokenflow.plugins.host import BUILTIN_PLUGINS, PluginHost
from tokenflow.redact import get_logger

__all__ = ["write_index"]

log = get_logger("tokenflow.cli.index")


def write_index(flow: Tokenflow, sources: Sequence[str]) -> None:
    """Compile *flow*'s config into the fast path's index. Never raises: it is an optimisation."""
    try:
        _write_index(flow, sources)
    except Exception as exc:  # a read-only cache or an odd profile must not fail the command
        log.debug("index not written: %s", type(exc).__name__)


class _Compiler:
    """One index: the profiles it answers for and what their answers depend on."""

    def __init__(self, flow: Tokenflow) -> None:
        self.flow = flow
        self.host: PluginHost = flow.plugins
        self.env_names: set[str] = set(flow.config.env_used) | set(_PLUGIN_ENV)
        self.hashes: dict[str, str | None] = {}
        self._stores: dict[str, TokenStore] = {}

    def context(self, profile: Profile, base_dir: Path) -> PluginContext:
        return PluginContext(profile.name, base_dir, self.flow.config.cache_dir)

    def watch_identity(self, profile: Profile, keys: Sequence[str]) -> bool:
        """Record what the cache key's values come from; False if a source cannot say."""
        for key in keys:
            spec = profile.grant_options.get(key)
            if not isinstance(spec, SecretSpec) or spec.kind == "literal":
                continue
            source = self.host.sources.get(spec.kind)
            if source is None or not source.cache_key_safe:
                continue  # keyed by the source spec, which the config files already cover
            if source.watch is None:
                return False  # keyed by a value nobody can re-check without the plugin
            watched = source.watch(spec.options, self.context(profile, spec.base_dir))
            self.env_names.update(watched.env)
            for path in watched.files:
                self.hashes[path] = _file_hash(path)
        return True

    def store(self, profile: Profile) -> TokenStore:
        """The profile's store, built once per distinct store spec (factories may be costly)."""
        spec = profile.store
        marker = json.dumps([spec.name, spec.options, str(spec.base_dir)], sort_keys=True,
                            default=str)
        store = self._stores.get(marker)
        if store is None:
            factory = self.host.store(spec.name).factory
            store = factory(spec.options, self.context(profile, spec.base_dir))
            self._stores[marker] = store
        return store

    def entry(self, profile: Profile) -> dict[str, Any] | None:
        grant = self.host.grant(profile.grant).grant
        if grant.interactive or not self.watch_identity(profile, list(grant.identity_options)):
            return None
        try:
            identity = user_identity(
                profile, grant.identity_options, self.host.sources,
                lambda _key, spec: self.host.source(spec.kind).resolver(
                    spec.options, self.context(profile, spec.base_dir)),
            )
            store = self.store(profile)
        except TokenflowError:
            return None  # an unset variable: the full path says so when this profile is used
        if not isinstance(store, FastPathStore):
            return None
        token_path = store.fast_path_file(cache_key(profile, identity))
        if not token_path:
            return None
        return {"token_path": token_path, "margin": profile.refresh_margin}


def _write_index(flow: Tokenflow, sources: Sequence[str]) -> None:
    host = flow.plugins
    if any(p not in BUILTIN_PLUGINS for p in host.observer_plugins()):
        return  # a third-party tokenflow_event must see every cache hit: no fast path
    compiler = _Compiler(flow)
    files = [os.path.abspath(f) for f in locations.config_files(sources)]
    compiler.hashes.update({path: _file_hash(path) for path in files})
    profiles = {}
    for name, profile in flow.config.profiles.items():
        entry = compiler.entry(profile)
        if entry is not None:
            profiles[name] = entry
    config = flow.config
    index = {
        "format": INDEX_FORMAT,
        "version": _version(),
        "files": files,
        "hashes": compiler.hashes,
        "env": {n: _env_hash(n) for n in sorted(compiler.env_names)},
        "search_path": _search_path(),
        "plugin_dirs": _distribution_dirs(),
        "only_profile": next(iter(config.profiles)) if len(config.profiles) == 1 else None,
        "profiles": profiles,
    }
    target = Path(index_path(str(config.cache_dir), sources))
    ensure_private_dir(target.parent)
    write_atomic(target, json.dumps(index, sort_keys=True).encode())
