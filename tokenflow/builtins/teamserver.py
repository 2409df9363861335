"""The ``teamserver`` dialect: ER/Studio Team Server's GET token endpoint.

Team Server (Spring Security OAuth2) takes a GET with *every* parameter in the query string:
``grant_type``, ``username``, ``password``, ``client_id`` and ``client_secret`` for the password
grant; ``grant_type``, ``refresh_token``, ``client_id`` and ``client_secret`` for a refresh (no
scope). That puts secrets in the URL, which is why tokenflow scrubs urllib3's DEBUG log.
Revocation is ``DELETE`` to ``revoke_url`` with ``{token}`` replaced by the access token.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from tokenflow.plugins.contracts import DialectRegistrar, HttpRequest
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.tokens import Token
from tokenflow.wire import form_urlencode


def with_query(url: str, params: Mapping[str, str]) -> str:
    """Append *params* to *url*'s query string, keeping any query it already has."""
    parts = urlsplit(url)
    query = form_urlencode(params)
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit(parts._replace(query=query))


class TeamServerDialect:
    """GET with the credentials in the query string, as Team Server documents it."""

    name = "teamserver"

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        query = dict(params)
        if query.get("grant_type") == "refresh_token":
            query.pop("scope", None)  # Team Server's refresh carries no scope
        query["client_id"] = client_id
        if client_secret is not None:
            query["client_secret"] = client_secret
        return HttpRequest("GET", with_query(token_url, query), {"Accept": "application/json"})

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
