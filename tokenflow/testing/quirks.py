"""Team Server's dialect: how Spring Security OAuth2 shapes its answers and checks clients.

tokenflow must interoperate with ER/Studio Team Server, whose token endpoint is Spring
Security OAuth2.  No generic mock reproduces its conventions, so they are kept here, in one
place, for every endpoint of the embedded server to use:

- a token reply has a lowercase ``bearer`` type, ``expires_in`` is the time *left*, truncated
  (86399 rather than 86400), fields in Spring's order;
- scopes are a sorted set (``"write read"`` is answered as ``"read write"``);
- a client authenticates by HTTP Basic (id and secret form-urlencoded first, RFC 6749
  §2.3.1) or by ``client_id``/``client_secret`` parameters in the query or the body;
  a missing authentication is a 401 with Spring's ``Full authentication is required``
  text and a ``Basic realm="oauth2/client"`` challenge; bad credentials are 401 (or 400,
  as some servers answer) ``invalid_client`` with a ``Bearer realm="oauth"`` challenge;
- a wrong HTTP method is 405 with Spring's ``Request method 'X' not supported``.

The token *state* behind these answers (reuse of a live token, refresh token reuse,
expiry) is :mod:`~tokenflow.testing.issuer`'s.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from typing import Final

from tokenflow.testing.model import ServerConfig
from tokenflow.testing.wire import Exchange, OAuthError, bad_request, unquote_strict

FULL_AUTH: Final = "Full authentication is required to access this resource"


def challenge(scheme: str, error: str, description: str, realm: str | None = None) -> tuple[str, str]:
    """A ``WWW-Authenticate`` header as Spring writes it."""
    realm_part = f'realm="{realm}", ' if realm else ""
    return (
        "WWW-Authenticate",
        f'{scheme} {realm_part}error="{error}", error_description="{description}"',
    )


def method_not_allowed(method: str, allowed: str) -> OAuthError:
    """Spring's TokenEndpoint answer to HttpRequestMethodNotSupportedException."""
    return OAuthError(
        405,
        "method_not_allowed",
        f"Request method '{method}' not supported",
        headers=[("Allow", allowed)],
    )


def normalize_scope(scope: str) -> str:
    """Spring parses scopes into a TreeSet: deduplicated and sorted."""
    return " ".join(sorted(set(scope.split())))


def token_payload(
    access_token: str, refresh_token: str | None, expires_at: float, scope: str, now: float
) -> dict[str, object]:
    """A token reply in Spring's field order; ``expires_in`` is the time left, truncated."""
    payload: dict[str, object] = {"access_token": access_token, "token_type": "bearer"}
    if refresh_token is not None:
        payload["refresh_token"] = refresh_token
    payload["expires_in"] = max(0, int(expires_at - now))
    payload["scope"] = scope
    return payload


def invalid_client(config: ServerConfig, description: str) -> OAuthError:
    """Bad client credentials: 401 with a challenge, or 400 without (``invalid_client_status``)."""
    status = config.invalid_client_status
    headers = [challenge("Bearer", "invalid_client", description, "oauth")] if status == 401 else []
    return OAuthError(status, "invalid_client", description, headers=headers)


def unauthorized() -> OAuthError:
    """No client authentication at all."""
    return OAuthError(
        401,
        "unauthorized",
        FULL_AUTH,
        headers=[challenge("Basic", "unauthorized", FULL_AUTH, "oauth2/client")],
    )


def client_credentials(
    ex: Exchange, params: Mapping[str, str], sources: Mapping[str, str]
) -> tuple[str, str] | None:
    """The client id and secret the request presents (Basic or parameters), or None.

    Notes in ``ex.client_auth`` how they came: ``"basic"``, ``"query"`` or ``"body"``.
    """
    scheme, _, credentials = (ex.authorization or "").strip().partition(" ")
    if scheme.lower() == "basic":
        ex.client_auth = "basic"
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError both are
            raise bad_request("Failed to decode basic authentication token") from None
        raw_id, colon, raw_secret = decoded.partition(":")
        if not colon:
            raise bad_request("Invalid basic authentication token")
        # RFC 6749 2.3.1: id and secret are form-urlencoded (Appendix B: a space is "+")
        # before base64.
        client_id = unquote_strict(raw_id, "basic credentials", plus=True)
        secret = unquote_strict(raw_secret, "basic credentials", plus=True)
        return client_id, secret
    if "client_id" in params:
        ex.client_auth = sources["client_id"]
        return params["client_id"], params.get("client_secret", "")
    return None


def authenticate(
    ex: Exchange, params: Mapping[str, str], sources: Mapping[str, str], config: ServerConfig
) -> str:
    """Authenticate a client by HTTP Basic or parameters; return its id.

    A confidential client proves its secret; a public client (RFC 6749 §2.1) only names
    itself, with ``client_id`` in the query or body or Basic with an empty secret, and a
    public client that sends a secret is refused like a wrong one.
    """
    presented = client_credentials(ex, params, sources)
    if presented is None:
        raise unauthorized()
    client_id, secret = presented
    if params.get("client_id", client_id) != client_id:
        raise invalid_client(config, "Given client ID does not match authenticated client")
    if config.is_public(client_id):
        if secret:
            raise invalid_client(config, "Bad client credentials")
        return client_id
    expected = config.clients.get(client_id)
    if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        raise invalid_client(config, "Bad client credentials")
    return client_id
