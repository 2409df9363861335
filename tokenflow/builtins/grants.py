"""The grants that need no person: ``password`` (RFC 6749 section 4.3) and
``client_credentials`` (section 4.4).

They are registered through ``tokenflow_register_grants`` like any third-party grant: each
declares its profile keys as an options schema, which of them are secrets and which tell users
apart, and builds its token request through the :class:`~tokenflow.plugins.contracts.GrantContext`
the engine hands it. The dialect decides where each parameter goes (Team Server: the query
string; RFC 6749: the form body), so a grant never knows the server's quirks.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenflow.errors import CredentialError
from tokenflow.plugins.contracts import GrantContext, GrantRegistrar
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token

SECRET_REF = {"$ref": "#/$defs/secret"}


@dataclass(frozen=True, slots=True)
class PasswordGrant:
    """The resource owner password credentials grant: a username and a password."""

    interactive: bool = False
    secret_options: tuple[str, ...] = ("username", "password")
    identity_options: tuple[str, ...] = ("username",)

    def obtain(self, context: GrantContext) -> Token:
        username = context.secret("username")
        password = context.secret("password")
        if username is None or password is None:  # the schema requires both: a plugin bug
            raise CredentialError(f"profile {context.profile!r}: the password grant needs "
                                  "username and password")
        return context.request_token(
            {"grant_type": "password", "username": username, "password": password}
        )


@dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """The client credentials grant: the client acts for itself; no user, no refresh token."""

    interactive: bool = False
    secret_options: tuple[str, ...] = ()
    identity_options: tuple[str, ...] = ()

    def obtain(self, context: GrantContext) -> Token:
        return context.request_token({"grant_type": "client_credentials"})


@hookimpl
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    register("password", PasswordGrant(), {
        "type": "object",
        "properties": {
            "username": {**SECRET_REF, "description": "Resource owner's username (password grant)."},
            "password": {**SECRET_REF, "description": "Resource owner's password (password grant)."},
        },
        "required": ["username", "password"],
    })
    register("client_credentials", ClientCredentialsGrant(), {"type": "object", "properties": {}})
