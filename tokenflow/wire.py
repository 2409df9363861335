"""What tokenflow lets onto the wire: server URLs and header fields, one definition for all.

The config loader checks every server URL and configured header when it loads a file (so a
mistake is a ``FILE:LINE:COL`` error), and the transport checks every request again before it is
sent (a dialect plugin builds the final URL and headers). Both call the functions here, so the
two can never disagree.

URLs are read with urllib3's own parser (:func:`urllib3.util.parse_url`), the one urllib3 uses
to pick the host it connects to: a URL that one parser reads as ``127.0.0.1`` and another as
``127.1`` (``http://127.1\\@127.0.0.1/``) was how a check and a connection once disagreed. On
top of that, anything that parsers are known to read differently is refused outright rather
than interpreted: user-info (``user@host``), backslashes, whitespace, control and non-ASCII
characters, and percent signs in the host.

The request and reply records (:class:`HttpRequest`, :class:`HttpResponse`) live here too: a
dialect plugin builds the one (``tokenflow.plugins.contracts`` re-exports both) and the
transport hands back the other, and the transport must not load the plugin contracts (their
``Protocol`` classes cost milliseconds the CLI's renewal path does not have).

Nothing here echoes a refused value: URLs can carry passwords (Team Server's query string) and
header values API keys; messages say what is wrong and where, never what the value was.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["HttpRequest", "HttpResponse", "ServerUrl", "header_problem", "is_loopback_host",
           "parse_server_url"]

# RFC 7230 section 3.2.6: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 7230 section 3.2: field-value is VCHAR / obs-text with SP and HTAB inside; tokenflow also
# refuses obs-text (bytes over 0x7E), since http.client would encode it as Latin-1 or crash
_FIELD_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*|")
_URL_CHARS = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no space
_HOST = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


class ServerUrl(NamedTuple):
    """The parts of a checked URL that decisions are made on (as urllib3 connects)."""

    scheme: str
    host: str  # lower case; IPv6 addresses keep their brackets, as urllib3 gives them
    port: int | None

    @property
    def netloc(self) -> str:
        """``host:port`` (or just the host): what messages name, never the path or query."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """Whether *host* is this machine by construction: ``localhost``, 127.0.0.0/8 or ``::1``.

    Only literal addresses and the name ``localhost`` count (RFC 6761); ``127.1`` or
    ``127.0.0.1.example.com`` are names resolved elsewhere and are not loopback here.
    """
    host = host.lower()
    if host == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not re.fullmatch(r"[0-9.]+|[0-9a-f:.]+", host):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address) and host.count(".") != 3:
        return False
    return address.is_loopback


def parse_server_url(url: str) -> ServerUrl | str:
    """*url* as urllib3 will connect to it, or a sentence saying why it is refused.

    Accepts absolute ``http``/``https`` URLs with a plain host (name, IPv4, or bracketed IPv6)
    and an optional port; refuses user-info, backslashes, whitespace, control and non-ASCII
    characters anywhere, since those are where URL parsers part ways.
    """
    if not _URL_CHARS.fullmatch(url):
        bad = next(c for c in url if not ("\x21" <= c <= "\x7e"))
        kind = {" ": "a space", "\t": "a tab", "\r": "a line break", "\n": "a line break",
                "\x00": "a NUL character"}.get(bad)
        if kind is None:
            kind = "a control character" if bad < " " or bad == "\x7f" else "a non-ASCII character"
        return f"the URL contains {kind}; percent-encode it or remove it"
    if "\\" in url:
        return "the URL contains a backslash, which URL parsers read differently; remove it"
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        return "the URL cannot be parsed"
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    authority = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", url)
    if parsed.auth is not None or (authority is not None and "@" in authority[1]):
        return ("the URL contains user-info (user@host); put credentials in the client or "
                "profile settings, never in a server URL")
    host = parsed.host or ""
    if not host or not _HOST.fullmatch(host):
        return "the URL has no usable host name"
    return ServerUrl(scheme, host.lower(), parsed.port)


def header_problem(name: str, value: str) -> str | None:
    """Why header *name*: *value* cannot be sent, or ``None``; never quotes the value."""
    if not _TOKEN.fullmatch(name):
        return (f"header name {ascii(name)[:60]} is not an HTTP token "
                "(letters, digits and !#$%&'*+-.^_`|~ only)")
    if _FIELD_VALUE.fullmatch(value):
        return None
    for index, char in enumerate(value):
        if char in "\r\n":
            what = "a line break (CR/LF)"
        elif char == "\x00":
            what = "a NUL character"
        elif (char < " " and char != "\t") or char == "\x7f":
            what = "a control character"
        elif char > "\x7e":
            what = "a non-ASCII character"
        else:
            continue
        return (f"the value of header {name} has {what} at position {index + 1}; "
                "header values must be printable ASCII on one line")
    return f"the value of header {name} starts or ends with whitespace"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request a dialect built: the transport sends it as it is."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __repr__(self) -> str:
        # a token request carries credentials in its headers, body and (Team Server) query
        path, query, _ = self.url.partition("?")
        return (f"HttpRequest(method={self.method!r}, url={path + ('?...' if query else '')!r}, "
                f"headers=<{len(self.headers)} fields>, "
                f"body=<{'none' if self.body is None else f'{len(self.body)} bytes'}>)")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A reply as the transport hands it back: bounded body, case-insensitive ``headers``."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:  # a token endpoint's body carries the tokens
        return f"HttpResponse(status={self.status!r}, body=<{len(self.body)} bytes>)"
