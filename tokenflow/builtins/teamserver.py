"""The ``teamserver`` dialect: ER/Studio Team Server's GET token endpoint.

Team Server (Spring Security OAuth2) takes a GET with *every* parameter in the query string:
``grant_type``, ``username``, ``password``, ``client_id`` and ``client_secret`` for the password
grant; ``grant_type``, ``refresh_token``, ``client_id`` and ``client_secret`` for a refresh (no
scope). That puts secrets in the URL, which is why tokenflow scrubs urllib3's DEBUG log.
Revocation is ``DELETE`` to ``revoke_url`` with ``{token}`` replaced by the access token.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from tokenflow.base.oauthforms import teamserver_token_request
from tokenflow.plugins.contracts import DialectRegistrar, HttpRequest
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token


class TeamServerDialect:
    """GET with the credentials in the query string, as Team Server documents it."""

    name = "teamserver"
    request_shape = "teamserver"  # its token requests are exactly base.oauthforms' (see Dialect)

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        return HttpRequest(*teamserver_token_request(token_url, params, client_id, client_secret,
                                                     client_auth))

    def revoke_request(
        self,
        revoke_url: str,
        token: Token,
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        url = revoke_url.replace("{token}", quote(token.access_token, safe=""))
        return HttpRequest("DELETE", url, {"Accept": "application/json, text/plain"})


@hookimpl
def tokenflow_register_dialects(register: DialectRegistrar) -> None:
    register("teamserver", TeamServerDialect())
