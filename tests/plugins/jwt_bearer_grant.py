"""A third-party grant: RFC 7523's JWT bearer assertion, written against the grant hook alone.

The profile names the assertion as a secret (so it can come from a file, a command or the
environment, and is masked everywhere) and an optional audience-free subject that tells users
apart in the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenflow.errors import CredentialError
from tokenflow.plugins import GrantContext, GrantRegistrar, hookimpl
from tokenflow.tokens import Token

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class JwtBearerGrant:
    interactive: bool = False
    secret_options: tuple[str, ...] = ("assertion",)
    identity_options: tuple[str, ...] = ("subject",)

    def obtain(self, context: GrantContext) -> Token:
        assertion = context.secret("assertion")
        if not assertion:
            raise CredentialError(f"profile {context.profile!r}: the assertion is empty")
        return context.request_token({"grant_type": JWT_BEARER, "assertion": assertion})


@hookimpl
def tokenflow_register_grants(register: GrantRegistrar) -> None:
    register(JWT_BEARER, JwtBearerGrant(), {
        "type": "object",
        "properties": {
            "assertion": {"$ref": "#/$defs/secret",
                          "description": "The signed JWT (RFC 7523 section 2.1)."},
            "subject": {"type": "string", "description": "Who the assertion speaks for."},
        },
        "required": ["assertion"],
    })
