"""Where a request to the resource server carries the access token (a profile's ``token_placement``).

``header`` is ``Authorization: Bearer <token>`` (RFC 6750 2.1), the default and the safer choice.
``query`` is the ``access_token`` query parameter (RFC 6750 2.3), for APIs such as Team Server's
that accept ``?access_token=``; the token is then part of the URL, which HTTP libraries log and
put in exception texts, so tokenflow scrubs it from the log records it can reach (its own,
urllib3's and httpx's loggers).

Pure string functions, shared by :meth:`TokenSession.apply` and every adapter, so all place the
token the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["HEADER", "PLACEMENTS", "QUERY", "place", "with_query_token"]

HEADER = "header"
QUERY = "query"
PLACEMENTS = (HEADER, QUERY)

_PARAM = "access_token"


def with_query_token(url: str, access_token: str) -> str:
    """*url* with ``access_token=<token>`` in its query, replacing any earlier one.

    The rest of the query is kept byte for byte (re-encoding it could change what the server
    reads), and the fragment is kept too.
    """
    parts = urlsplit(url)
    kept = [item for item in parts.query.split("&")
            if item and item.split("=", 1)[0] != _PARAM]
    kept.append(f"{_PARAM}={quote(access_token, safe='')}")
    return urlunsplit(parts._replace(query="&".join(kept)))


def place(
    url: str, headers: Mapping[str, str] | None, access_token: str, placement: str
) -> tuple[str, dict[str, str]]:
    """``(url, headers)`` carrying *access_token* as *placement* says (``header`` or ``query``).

    The headers are a new dict; with ``header`` placement an ``Authorization`` header already
    there (in any case) is replaced, with ``query`` placement it is left alone.
    """
    out = dict(headers or {})
    if placement == QUERY:
        return with_query_token(url, access_token), out
    for name in [n for n in out if n.lower() == "authorization"]:
        del out[name]
    out["Authorization"] = f"Bearer {access_token}"
    return url, out
