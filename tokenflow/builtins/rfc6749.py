"""The ``rfc6749`` dialect: POST ``application/x-www-form-urlencoded`` (RFC 6749 section 4).

Client authentication is HTTP Basic by default (``client_auth: basic``, RFC 6749 section 2.3.1,
where id and secret are form-urlencoded *before* base64, which many clients forget), or the
``client_id``/``client_secret`` body parameters (``client_auth: body``). A public client (no
secret) always sends its ``client_id`` in the body. Revocation is RFC 7009.
"""

from __future__ import annotations

from collections.abc import Mapping

from tokenflow.base.oauthforms import (
    basic_authorization,
    form_urlencode,
    form_with_client,
    rfc6749_token_request,
)
from tokenflow.plugins.contracts import DialectRegistrar, HttpRequest
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token

__all__ = ["RFC6749Dialect", "basic_authorization", "tokenflow_register_dialects"]


class RFC6749Dialect:
    """Standard servers: POST form body, Basic or body client authentication."""

    name = "rfc6749"
    request_shape = "rfc6749"  # its token requests are exactly base.oauthforms' (see Dialect)

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        return HttpRequest(*rfc6749_token_request(token_url, params, client_id, client_secret,
                                                  client_auth))

    def revoke_request(
        self,
        revoke_url: str,
        token: Token,
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        # RFC 7009: revoking the refresh token revokes the grant; fall back to the access token
        if token.refresh_token:
            params = {"token": token.refresh_token, "token_type_hint": "refresh_token"}
        else:
            params = {"token": token.access_token, "token_type_hint": "access_token"}
        headers, form = form_with_client(params, client_id, client_secret, client_auth)
        return HttpRequest("POST", revoke_url, headers, form_urlencode(form).encode("ascii"))


@hookimpl
def tokenflow_register_dialects(register: DialectRegistrar) -> None:
    register("rfc6749", RFC6749Dialect())
