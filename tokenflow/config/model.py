"""The validated, immutable configuration model: servers, clients, profiles, and the Config.

Instances are built only by :mod:`tokenflow.loader`, which guarantees that every reference
resolves and every required key is present, so code using them never re-checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenflow.errors import ConfigError

__all__ = ["ClientSpec", "Config", "Profile", "SecretSpec", "ServerSpec", "StoreSpec"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
DEFAULT_REFRESH_MARGIN = 60.0
DEFAULT_LIFETIME = 3600.0


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """Where a secret value comes from: a literal (``kind == "literal"``) or a source.

    ``options`` is the literal value itself (as a :class:`~tokenflow.redact.Secret`) or the
    source's options exactly as written after ``${VAR}`` expansion. ``base_dir`` is the directory
    of the file that defined it, for relative paths. ``repr`` never shows a literal's value.
    """

    kind: str
    options: Any = field(repr=False)
    base_dir: Path
    where: str = ""


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """``store: NAME`` or ``store: {NAME: OPTIONS}``."""

    name: str
    options: Mapping[str, Any] = field(repr=False)  # a plugin store's options may hold a password
    base_dir: Path


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A token server and how to talk to it."""

    name: str
    token_url: str | None  # None: discovered from ``issuer``
    dialect: str = "rfc6749"
    client_auth: str | None = None  # None: from the issuer's metadata, else basic
    revoke_url: str | None = None
    issuer: str | None = None  # RFC 8414: endpoints not written are discovered from it
    authorization_url: str | None = None
    device_authorization_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    verify: bool | str = True  # a str is an absolute path to a CA bundle
    allow_insecure_http: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry an API key


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """An OAuth client; ``client_secret`` is ``None`` for a public client."""

    name: str
    client_id: str
    client_secret: SecretSpec | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """One environment: a server, a client, a grant and the user's credentials."""

    name: str
    server: ServerSpec
    client: ClientSpec
    grant: str
    # the grant's own keys (username, redirect_uri...); secret ones hold a SecretSpec
    grant_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    scope: str | None = None
    store: StoreSpec = field(default_factory=lambda: StoreSpec("file", {}, Path.cwd()))
    refresh_margin: float = DEFAULT_REFRESH_MARGIN
    default_lifetime: float = DEFAULT_LIFETIME
    params: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry an assertion
    token_placement: str = "header"  # "header" (Authorization: Bearer) or "query" (?access_token=)
    description: str = ""
    where: str = ""  # FILE:LINE where the profile is defined
    extends: tuple[str, ...] = ()  # the chain of parents, nearest first

    @property
    def username(self) -> SecretSpec | None:
        """The ``username`` key, where the grant has one (password grant)."""
        value = self.grant_options.get("username")
        return value if isinstance(value, SecretSpec) else None


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, validated configuration: profiles, servers, clients and where they came from.

    A frozen value. The plugins that validated it and the sessions that serve it belong to
    :class:`tokenflow.api.Tokenflow`, which :func:`tokenflow.load_config` returns.
    """

    profiles: Mapping[str, Profile]
    abstract_profiles: frozenset[str]
    servers: Mapping[str, ServerSpec]
    clients: Mapping[str, ClientSpec]
    files: tuple[Path, ...]
    cache_dir: Path
    env_used: frozenset[str] = frozenset()
    # each file's stamp (size, mtime, inode, ctime) taken before it was read: whoever caches
    # what was derived from it (the fast path's index) can tell that it changed since
    file_stamps: Mapping[str, list[int] | None] = field(default_factory=dict, repr=False)

    def default_profile_name(self) -> str:
        """``$TOKENFLOW_PROFILE``, else the only profile, else a ConfigError listing them."""
        wanted = os.environ.get("TOKENFLOW_PROFILE")
        if wanted:
            return wanted
        if len(self.profiles) == 1:
            return next(iter(self.profiles))
        names = ", ".join(sorted(self.profiles)) or "none"
        raise ConfigError(f"no profile given and $TOKENFLOW_PROFILE is not set; profiles: {names}")

    def profile(self, name: str | None = None) -> Profile:
        """The profile called *name* (default: :meth:`default_profile_name`)."""
        name = name or self.default_profile_name()
        try:
            return self.profiles[name]
        except KeyError:
            if name in self.abstract_profiles:
                raise ConfigError(
                    f"profile {name!r} is abstract (a base for others) and cannot be used"
                ) from None
            names = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"unknown profile {name!r}; profiles: {names}") from None
