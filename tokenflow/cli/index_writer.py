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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenflow.api import Tokenflow
from tokenflow.base import cachefile, locations, oauthforms
from tokenflow.base.files import ensure_private_dir, file_stamp, write_atomic
from tokenflow.base.trust import keyed_digest, load_key, read_private
from tokenflow.cli import progress
from tokenflow.cli.fast import index as fast
from tokenflow.config.model import Profile, SecretSpec
from tokenflow.engine.identity import cache_key, user_identity
from tokenflow.errors import TokenflowError
from tokenflow.plugins.contracts import FastPathStore, FastRenewalStore, PluginContext, TokenStore
from tokenflow.plugins.host import BUILTIN_PLUGINS, PluginHost
from tokenflow.redact import get_logger

__all__ = ["write_index"]

log = get_logger("tokenflow.cli.index")


def write_index(flow: Tokenflow, sources: Sequence[str], served: str | None = None) -> None:
    """Compile *flow*'s config into the fast path's index. Never raises: it is an optimisation.

    The head is rewritten when what it records changed; profile entries are all rewritten when
    the generation changed (the config, the variables it reads, the plugins), else only the
    entry of *served* (the profile this run used), so a steady state writes nothing.
    """
    try:
        _write_index(flow, sources, served)
    except Exception as exc:  # a read-only cache or an odd profile must not fail the command
        log.debug("index not written: %s", type(exc).__name__)


def _recorded(key: bytes, paths: Sequence[str]) -> dict[str, Any]:
    return {path: [file_stamp(path), fast.file_digest(key, path)] for path in paths}


class _Compiler:
    """The entries of one index: for each profile, its token file and what its key depends on."""

    def __init__(self, flow: Tokenflow, key: bytes) -> None:
        self.flow = flow
        self.key = key
        self.host: PluginHost = flow.plugins
        self._stores: dict[str, TokenStore] = {}
        # the renewal path calls no plugin: with any other plugin installed (an observer that
        # must see the refresh, a hook wrapper) or a built-in one disabled, it is not offered
        self.renewable = not self.host.blocked() and all(
            info.name in BUILTIN_PLUGINS or info.name == progress.PLUGIN_NAME
            for info in self.host.plugins())

    def context(self, profile: Profile, base_dir: Path) -> PluginContext:
        return PluginContext(profile.name, base_dir, self.flow.config.cache_dir)

    def watched(self, profile: Profile, keys: Sequence[str]) -> tuple[set[str], set[str]] | None:
        """The variables and files the cache key's values come from; None if a source cannot say."""
        env: set[str] = set()
        files: set[str] = set()
        for key in keys:
            spec = profile.grant_options.get(key)
            if not isinstance(spec, SecretSpec) or spec.kind == "literal":
                continue
            source = self.host.sources.get(spec.kind)
            if source is None or not source.cache_key_safe:
                continue  # keyed by the source spec, which the config files already cover
            if source.watch is None:
                return None  # keyed by a value nobody can re-check without the plugin
            watched = source.watch(spec.options, self.context(profile, spec.base_dir))
            env.update(watched.env)
            files.update(watched.files)
        return env, files

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

    def entry(self, profile: Profile, generation: str) -> dict[str, Any] | None:
        grant = self.host.grant(profile.grant).grant
        watched = None if grant.interactive else self.watched(profile, list(grant.identity_options))
        if watched is None:
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
        env, files = watched
        key = cache_key(profile, identity)
        return fast.sealed(self.key, {
            "renew": self.renewal(profile, store, key),
            "profile": profile.name,
            "generation": generation,
            "token_path": token_path,
            "margin": profile.refresh_margin,
            "env": {name: fast.env_digest(self.key, name) for name in sorted(env)},
            "hashes": _recorded(self.key, sorted(files)),
        })


    def renewal(self, profile: Profile, store: TokenStore, key: str) -> dict[str, Any] | None:
        """What the CLI's renewal path needs to refresh *profile*'s token without loading the
        config or any plugin (:mod:`tokenflow.cli.renewal`), or ``None`` to leave it to the
        full path. Never a secret value: the client secret is recorded as where it is read
        from, and only for the ``env`` and ``file`` sources; anything unusual (discovery, a
        plugin's dialect or store, configured headers, TLS verification off) records nothing.
        """
        server, client = profile.server, profile.client
        if not self.renewable or server.token_url is None or server.issuer is not None:
            return None
        shape = _claimed(self.host.dialect(server.dialect), "request_shape")
        if shape not in oauthforms.SHAPES or server.headers \
                or server.verify is False or server.client_auth not in (None, "basic", "body"):
            return None
        if not isinstance(store, FastRenewalStore) or not _claimed(store, "fast_renewal_files"):
            return None
        files = store.fast_renewal_files(key)
        if files is None:
            return None
        secret = self.secret_source(profile, client.client_secret)
        if secret is False:
            return None
        token_path, lock_path, lock_timeout = files
        if not isinstance(store, FastPathStore) or token_path != store.fast_path_file(key):
            return None
        return {
            "token_url": server.token_url,
            "shape": shape,
            "client_auth": server.client_auth or "basic",
            "client_id": client.client_id,
            "client_name": client.name,
            "client_secret": secret,
            "server": {"name": server.name, "timeout": server.timeout, "retries": server.retries,
                       "verify": server.verify, "allow_insecure_http": server.allow_insecure_http},
            "scope": profile.scope,
            "default_lifetime": profile.default_lifetime,
            "lock_path": lock_path,
            "lock_timeout": lock_timeout,
        }

    def secret_source(self, profile: Profile, spec: SecretSpec | None) -> dict[str, str] | bool | None:
        """``{"env": NAME}`` or ``{"file": PATH}`` (absolute) for a client secret read from a
        variable or a file, ``None`` for a public client, ``False`` for anything else (a literal
        in the YAML, a command, the keyring: the renewal path could not read it without
        storing it or running a plugin)."""
        if spec is None:
            return None
        source = self.host.sources.get(spec.kind)
        if source is None or source.watch is None or spec.kind == "literal":
            return False
        watched = source.watch(spec.options, self.context(profile, spec.base_dir))
        if not watched.verbatim:
            return False  # the value is not simply a variable or a file: the plugin must read it
        if len(watched.env) == 1 and not watched.files:
            return {"env": watched.env[0]}
        if len(watched.files) == 1 and not watched.env and os.path.isabs(watched.files[0]):
            return {"file": watched.files[0]}
        return False


def _claimed(obj: object, name: str) -> Any:
    """*obj*'s attribute *name* if its own class defines it, else ``None``.

    These claims say the CLI may act without the plugin (build its requests, write its files):
    a subclass that changes how the object works must make the claim again itself.
    """
    return vars(type(obj)).get(name)


def _write_index(flow: Tokenflow, sources: Sequence[str], served: str | None) -> None:
    host = flow.plugins
    # the CLI's own progress line needs no cache hit
    if any(p not in BUILTIN_PLUGINS and p != progress.PLUGIN_NAME for p in host.observer_plugins()):
        return  # a third-party tokenflow_event must see every cache hit: no fast path
    config = flow.config
    cache = str(config.cache_dir)
    ensure_private_dir(Path(cache) / "index")
    key = load_key(fast.key_path(cache), create=True)
    if key is None:
        return
    files = [os.path.abspath(f) for f in locations.config_files(sources)]
    if any(file_stamp(path) != config.file_stamps.get(path) for path in files):
        return  # a file changed after it was loaded: what we know is not what it says now
    env_names = sorted(set(config.env_used) | set(fast.PLUGIN_ENV))
    hashes = _recorded(key, files)
    stable = {
        "format": fast.INDEX_FORMAT,
        "version": fast.version(),
        "files": files,
        "digests": {path: digest for path, (_stamp, digest) in hashes.items()},
        "env": {name: fast.env_digest(key, name) for name in env_names},
        "search_path": fast.search_path(),
        "plugin_dirs": fast.distribution_dirs(),
        "only_profile": next(iter(config.profiles)) if len(config.profiles) == 1 else None,
    }
    generation = keyed_digest(key, cachefile.dumps_canonical(stable).encode())[:32]
    directory = Path(fast.index_dir(cache, sources))
    ensure_private_dir(directory)
    head_file = directory / "head.json"
    try:
        old = fast.unseal(key, read_private(str(head_file), fast.MAX_INDEX_FILE))
    except (OSError, ValueError):
        old = None
    renew = old is None or old.get("generation") != generation
    if renew or old is None or old.get("hashes") != hashes:
        head = {**{k: v for k, v in stable.items() if k != "digests"}, "hashes": hashes,
                "generation": generation, "written_ns": time.time_ns()}
        write_atomic(head_file, _dumps(fast.sealed(key, head)), durable=False)
    compiler = _Compiler(flow, key)
    names = list(config.profiles) if renew else [served] if served in config.profiles else []
    for name in names:
        assert name is not None
        entry = compiler.entry(config.profiles[name], generation)
        target = Path(fast.entry_path(str(directory), name))
        if entry is None:
            target.unlink(missing_ok=True)
            continue
        data = _dumps(entry)
        try:
            if read_private(str(target), fast.MAX_INDEX_FILE) == data:
                continue
        except OSError:
            pass  # absent, damaged or unsafe: written anew
        write_atomic(target, data, durable=False)


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True).encode()
