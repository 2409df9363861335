"""What identifies a token: the cache key.

A token is cached under a hash of what makes it *this* token — the token endpoint, the client,
the grant, the scope, extra parameters and the user (the grant's ``identity_options``) — never
the profile's name, so two profiles for one identity share a token and two identities never do,
and never a password.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from tokenflow.config.model import Profile, SecretSpec
from tokenflow.plugins.host import SourceEntry

__all__ = ["cache_key", "user_identity"]

Resolve = Callable[[str, SecretSpec], str]


def user_identity(
    profile: Profile,
    identity_options: Collection[str],
    sources: Mapping[str, SourceEntry],
    resolve: Resolve,
) -> Any:
    """The user's part of the cache key, from the grant's identity options.

    A literal, or the value of a cheap source (``env``, ``file``: ``cache_key_safe``), enters by
    value, so two profiles naming one user share a token. For other sources (command, keyring,
    prompt) the source spec stands in, so computing the key never runs a command or prompts.
    One identity option (the password grant's ``username``) gives the same key as tokenflow
    0.1 did, so caches survive the upgrade.
    """
    parts = [_identity_of(key, profile.grant_options.get(key), sources, resolve)
             for key in identity_options]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts


def _identity_of(key: str, value: Any, sources: Mapping[str, SourceEntry], resolve: Resolve) -> Any:
    if value is None:
        return None
    if not isinstance(value, SecretSpec):
        return ["=", value]
    # "=" tags a value whatever its source (no source can be called "="), so a literal "alice"
    # and {env: USER} holding "alice" are one identity, as DESIGN.md section 7 says
    if value.kind == "literal":
        return ["=", value.options.reveal()]
    source = sources.get(value.kind)
    if source is not None and source.cache_key_safe:
        return ["=", resolve(key, value)]
    return [value.kind, value.options]


def cache_key(profile: Profile, identity: Any) -> str:
    """The key a token of *profile* for the user *identity* (:func:`user_identity`) is kept under."""
    import hashlib
    import json

    material = json.dumps(
        [
            # a discovery-only server is known by its issuer: the key never needs the metadata
            profile.server.token_url or profile.server.issuer,
            profile.client.client_id,
            profile.grant,
            profile.scope,
            sorted(profile.params.items()),
            identity,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]
