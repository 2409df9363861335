"""The shape of the built-in dialects' token requests: pure functions of the parameters.

The ``rfc6749`` and ``teamserver`` dialect plugins build their requests with these, and so does
the CLI's renewal path (:mod:`tokenflow.cli.renewal`), which refreshes a token without loading
any plugin: one definition, so the two can never send different requests. Each returns
``(method, url, headers, body)``. Standard library only.
"""

from __future__ import annotations

import base64
import functools
import re
from urllib.parse import quote_plus, urlsplit, urlunsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["FORM", "SHAPES", "basic_authorization", "form_urlencode", "form_with_client",
           "rfc6749_token_request", "teamserver_token_request", "with_query"]

FORM = "application/x-www-form-urlencoded"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote_plus leaves as it is


def form_urlencode(fields: Mapping[str, str]) -> str:
    """``urllib.parse.urlencode(fields)`` for string fields, without quoting what needs none.

    Token requests carry a few fields whose names and most values (grant types, base64url
    tokens) are plain: checking them with one regular expression and quoting only the others
    gives the same bytes at a fifth of urlencode's cost, on every request.
    """
    plain = _UNRESERVED.fullmatch
    try:
        return "&".join(
            f"{name if plain(name) else quote_plus(name)}={value if plain(value) else quote_plus(value)}"
            for name, value in fields.items()
        )
    except TypeError:  # a value that is not a string (a grant plugin's number): as urlencode does
        from urllib.parse import urlencode

        return urlencode(fields)


@functools.lru_cache(maxsize=32)  # one value per client: no need to re-encode every request
def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` header value of RFC 6749 section 2.3.1 (id and secret are
    form-urlencoded *before* base64, which many clients forget)."""
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


def rfc6749_token_request(
    token_url: str, params: Mapping[str, str], client_id: str, client_secret: str | None,
    client_auth: str,
) -> tuple[str, str, dict[str, str], bytes | None]:
    """A POST with a form body; client authentication by Basic header or in the body."""
    headers, form = form_with_client(params, client_id, client_secret, client_auth)
    return "POST", token_url, headers, form_urlencode(form).encode("ascii")


def with_query(url: str, params: Mapping[str, str]) -> str:
    """Append *params* to *url*'s query string, keeping any query it already has."""
    parts = urlsplit(url)
    query = form_urlencode(params)
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit(parts._replace(query=query))


def teamserver_token_request(
    token_url: str, params: Mapping[str, str], client_id: str, client_secret: str | None,
    client_auth: str,
) -> tuple[str, str, dict[str, str], bytes | None]:
    """Team Server's GET with every parameter, the client's included, in the query string
    (its refresh carries no scope); *client_auth* does not apply."""
    query = dict(params)
    if query.get("grant_type") == "refresh_token":
        query.pop("scope", None)
    query["client_id"] = client_id
    if client_secret is not None:
        query["client_secret"] = client_secret
    return "GET", with_query(token_url, query), {"Accept": "application/json"}, None


SHAPES: dict[str, Callable[[str, Mapping[str, str], str, str | None, str],
                           tuple[str, str, dict[str, str], bytes | None]]] = {
    "rfc6749": rfc6749_token_request,
    "teamserver": teamserver_token_request,
}
"""The request shapes a dialect may name as its ``request_shape`` (see
:class:`tokenflow.plugins.contracts.Dialect`)."""
