"""Authorization server metadata (RFC 8414) and OpenID Connect's discovery document.

The same JSON document is served at ``/.well-known/oauth-authorization-server`` and
``/.well-known/openid-configuration``.  For an issuer with a path (``ServerConfig.issuer =
"{url}/realms/corp"``) the locations follow the specifications instead: RFC 8414 §3.1 inserts
the well-known part before the path (``/.well-known/oauth-authorization-server/realms/corp``),
OpenID Connect Discovery appends it (``/realms/corp/.well-known/openid-configuration``).
An issuer that is not this server (a deliberately wrong one, for a client's RFC 8414 §3.3
check) is served at the root locations.

Fields: ``issuer``, ``authorization_endpoint``, ``token_endpoint``,
``device_authorization_endpoint``, ``revocation_endpoint``,
``token_endpoint_auth_methods_supported``, ``grant_types_supported``,
``response_types_supported``, ``code_challenge_methods_supported: ["S256"]`` and
``authorization_response_iss_parameter_supported`` (RFC 9207); ``metadata_overrides``
replaces or (with ``OMIT``) drops any of them, and ``metadata_documents`` chooses which of
the two documents exist, to test a client's fallback from one to the other.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from tokenflow.testing.faults import OMIT
from tokenflow.testing.model import ServerConfig

OAUTH_METADATA: Final = "oauth-authorization-server"
OPENID_CONFIGURATION: Final = "openid-configuration"
WELL_KNOWN: Final = "/.well-known/"


def issuer_id(config: ServerConfig, base_url: str) -> str:
    """The issuer identifier: ``config.issuer`` with ``{url}`` replaced by the base URL."""
    return config.issuer.replace("{url}", base_url)


def document_paths(config: ServerConfig, base_url: str) -> dict[str, str]:
    """Request path -> document name, for the documents this server serves."""
    issuer = issuer_id(config, base_url)
    path = ""
    if issuer.startswith(base_url + "/"):
        path = urlsplit(issuer).path.rstrip("/")
    paths = {
        OAUTH_METADATA: WELL_KNOWN + OAUTH_METADATA + path,
        OPENID_CONFIGURATION: path + WELL_KNOWN + OPENID_CONFIGURATION,
    }
    return {where: name for name, where in paths.items() if name in config.metadata_documents}


def metadata(config: ServerConfig, base_url: str, endpoints: dict[str, str]) -> dict[str, object]:
    """The metadata document; ``endpoints`` maps field names to paths on this server."""
    document: dict[str, object] = {"issuer": issuer_id(config, base_url)}
    document.update({name: base_url + path for name, path in endpoints.items()})
    document.update(
        {
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "grant_types_supported": [
                "authorization_code",
                "password",
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": config.send_iss,
            "scopes_supported": sorted(set(config.default_scope.split())),
        }
    )
    for name, value in config.metadata_overrides.items():
        if value is OMIT:
            document.pop(name, None)
        else:
            document[name] = value
    return document
