"""The ``rfc6749`` dialect: POST ``application/x-www-form-urlencoded`` (RFC 6749 section 4).

Client authentication is HTTP Basic by default (``client_auth: basic``, RFC 6749 section 2.3.1,
where id and secret are form-urlencoded *before* base64, which many clients forget), or the
``client_id``/``client_secret`` body parameters (``client_auth: body``). A public client (no
secret) always sends its ``client_id`` in the body. Revocation is RFC 7009.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from urllib.parse import quote_plus

from tokenflow.plugins.contracts import DialectRegistrar, HttpRequest
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token
from tokenflow.wire import form_urlencode

FORM = "application/x-www-form-urlencoded"


@functools.lru_cache(maxsize=32)  # one value per client: no need to re-encode every request
def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` header value of RFC 6749 section 2.3.1."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def form_with_client(
    params: Mapping[str, str], client_id: str, client_secret: str | None, client_auth: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Split client authentication between headers and form parameters."""
    headers = {"Content-Type": FORM, "Accept": "application/json"}
    form = dict(params)
    if client_secret is not None and client_auth == "basic":
        headers["Authorization"] = basic_authorization(client_id, client_secret)
    else:
        form["client_id"] = client_id
        if client_secret is not None:
            form["client_secret"] = client_secret
    return headers, form


class RFC6749Dialect:
    """Standard servers: POST form body, Basic or body client authentication."""

    name = "rfc6749"

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        headers, form = form_with_client(params, client_id, client_secret, client_auth)
        return HttpRequest("POST", token_url, headers, form_urlencode(form).encode("ascii"))

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
