"""The ``refresh_token`` grant: start from a refresh token issued elsewhere (an offline token).

Common in CI: a person signs in once, stores the long-lived refresh token as a CI secret, and
jobs turn it into access tokens. The profile names it like a password::

    grant: refresh_token
    refresh_token: {env: OFFLINE_TOKEN}

The grant runs only when the store holds no token for the profile, or the stored refresh token
was refused: otherwise the engine refreshes with the *stored* one, so once the server rotated the
token tokenflow never goes back to the configured (now spent) value.

When the stored token is refused the configured one is tried once more. It is usually spent too
(the server then refuses it and the user is told to issue a new one), but this is also how a
fresh value put in the secret source is picked up without deleting the cache by hand. Sending a
spent token costs one refused request; servers with reuse detection revoke the token family on
it, which at that point is already dead (its newest member was just refused).

When the server does not rotate (the answer has no ``refresh_token``), the configured value is
kept with the new access token, so the next renewal is a refresh again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, Final

from tokenflow.errors import ConfigError, ReauthenticationRequired, TokenRequestError
from tokenflow.plugins.contracts import GrantContext, GrantRegistrar
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token

__all__ = ["OPTIONS_SCHEMA", "RefreshTokenBootstrap"]

OPTIONS_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {"refresh_token": {
        "$ref": "#/$defs/secret",
        "description": "The refresh token to start from (refresh_token grant): a literal or a secret source.",
    }},
    "required": ["refresh_token"],
}

class RefreshTokenBootstrap:
    """``grant: refresh_token``: see the module docstring."""

    interactive = False
    secret_options: Collection[str] = ("refresh_token",)
    # two offline tokens may belong to two users: the configured token tells them apart
    identity_options: Collection[str] = ("refresh_token",)

    def obtain(self, context: GrantContext) -> Token:
        value = context.secret("refresh_token")
        if not value:
            raise ConfigError(f"profile {context.profile!r}: grant refresh_token needs refresh_token")
        try:
            token = context.request_token({"grant_type": "refresh_token", "refresh_token": value})
        except TokenRequestError as exc:
            if not exc.refused_refresh:
                raise
            raise ReauthenticationRequired(
                f"profile {context.profile!r}: the server refused the configured refresh token "
                f"({exc.error}): it was used up, revoked or has expired; issue a new one and put "
                "it where the profile's refresh_token reads it",
                error=exc.error, error_description=exc.error_description, status=exc.status,
            ) from None
        if not token.refresh_token:
            token = dataclasses.replace(token, refresh_token=value)
        return token


@hookimpl
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    register("refresh_token", RefreshTokenBootstrap(), OPTIONS_SCHEMA)
