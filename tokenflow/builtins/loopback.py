"""The loopback redirect listener of a native app's browser sign-in (RFC 8252 sections 7.3, 8.3).

The browser brings the authorization response back to ``http://127.0.0.1:PORT/PATH``: this module
binds that port on the loopback interface only, serves until one callback with the right
``state`` arrives (or a deadline passes), and closes the port at once.

Why it is written this way:

* One request at a time, on the calling thread, with a short socket timeout: a slow or silent
  client cannot hold the listener past its deadline, and Ctrl-C (``KeyboardInterrupt``) lands in
  the caller, which closes the port on the way out.
* Anything that is not the expected callback (another path, a missing or wrong ``state``, a
  ``Host`` that is not the loopback address) gets an error page and the wait goes on: a web page
  that guesses the port must not be able to end, or hijack, the sign-in. ``state`` is compared
  in constant time.
* Pages echo nothing unescaped, are never cached (``Cache-Control: no-store``) and leak no
  ``Referer`` carrying the code (``Referrer-Policy: no-referrer``).
* The callback's parameters (code, state) are never logged; the request line is not either.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import html
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from tokenflow.errors import CredentialError, TokenRequestError
from tokenflow.redact import get_logger, printable

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "Callback",
    "LoopbackListener",
    "parse_redirect_uris",
]

log = get_logger("tokenflow.loopback")

DEFAULT_REDIRECT_URI = "http://127.0.0.1:0/callback"
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
MAX_REQUEST_LINE = 8192  # a callback URL carries a code and a state: a few hundred bytes
CLIENT_TIMEOUT = 5.0  # seconds a connected client may take for its whole request
POLL = 0.25  # seconds between deadline checks while no one connects


@dataclass(frozen=True, slots=True)
class RedirectTarget:
    """One ``redirect_uri`` to try: where to listen and what to tell the server."""

    uri: str  # as written (port 0 is replaced by the real port once bound)
    host: str  # as written: 127.0.0.1, [::1] or localhost
    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Callback:
    """The authorization response that came back with the right ``state``.

    ``params`` holds ``code`` (or ``error``/``error_description``) and any other parameter, such
    as ``iss``; ``repr`` hides them, since the code is a credential.
    """

    params: Mapping[str, str] = field(repr=False)


def parse_redirect_uris(value: str | Sequence[str] | None) -> list[RedirectTarget]:
    """Validate ``redirect_uri`` (one URI or a list tried in order) as loopback HTTP URIs.

    Raises :class:`~tokenflow.errors.CredentialError` naming the bad value: only ``http`` on
    ``127.0.0.1``, ``[::1]`` or ``localhost`` can be served by this process.
    """
    if value is None:
        value = DEFAULT_REDIRECT_URI
    uris = [value] if isinstance(value, str) else list(value)
    if not uris:
        raise CredentialError("redirect_uri: the list is empty")
    targets = []
    for uri in uris:
        parts = urlsplit(uri)
        try:
            port = parts.port
        except ValueError:
            raise CredentialError(f"redirect_uri {uri!r}: the port is not a number from 0 to 65535") from None
        name = parts.hostname or ""
        host = f"[{name}]" if ":" in name else name
        if parts.scheme != "http" or host not in LOOPBACK_HOSTS or "@" in parts.netloc:
            raise CredentialError(
                f"redirect_uri {uri!r}: must be http://127.0.0.1[:PORT]/PATH, http://[::1][:PORT]/PATH "
                "or http://localhost[:PORT]/PATH (a loopback address this program can listen on)"
            )
        if parts.query or parts.fragment:
            raise CredentialError(f"redirect_uri {uri!r}: must not carry a query or a fragment")
        targets.append(RedirectTarget(uri, host, port or 0, parts.path or "/"))
    return targets


class _Server(HTTPServer):
    """An HTTP server bound to one loopback address, serving on the caller's thread."""

    def __init__(self, target: RedirectTarget) -> None:
        self.target = target
        self.outcome: Callback | BaseException | None = None
        self.expected_state = ""
        self.issuer: str | None = None
        self.port = target.port
        self.address_family = socket.AF_INET6 if target.host == "[::1]" else socket.AF_INET
        bind = "::1" if target.host == "[::1]" else "127.0.0.1"  # localhost: IPv4 loopback only
        super().__init__((bind, target.port), _Handler)

    def server_bind(self) -> None:
        # POSIX SO_REUSEADDR lets a fixed port be bound again while the last sign-in's
        # connections sit in TIME_WAIT, and still fails when another program listens on it;
        # on Windows it would let two listeners share the port, so there the port is exclusive
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("the sign-in listener dropped a broken connection")


class LoopbackListener:
    """Listens on the first free ``redirect_uri`` until :meth:`wait` has the callback.

    Use it as a context manager: the port is closed when the block ends, whatever happens.
    """

    def __init__(self, targets: Sequence[RedirectTarget]) -> None:
        tried: list[str] = []
        for target in targets:
            try:
                self._server = _Server(target)
            except OSError as exc:
                why = "in use" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else exc.strerror
                tried.append(f"{target.uri} ({why})")
                log.debug("cannot listen for the sign-in redirect on %s: %s", target.uri, why)
                continue
            self._server.timeout = POLL
            self.target = target
            return
        raise CredentialError(
            "cannot listen for the browser's redirect: "
            + ", ".join(tried)
            + "; free a port or list more in the profile's redirect_uri"
        )

    @property
    def redirect_uri(self) -> str:
        """The URI to send to the server: the one written, with the real port when it was 0."""
        parts = urlsplit(self.target.uri)
        return urlunsplit(parts._replace(netloc=f"{self.target.host}:{self.port}"))

    @property
    def port(self) -> int:
        return self._server.port

    def wait(
        self,
        state: str,
        timeout: float,
        *,
        issuer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Callback:
        """Serve until a callback with *state* arrives; raise after *timeout* seconds.

        A callback whose ``iss`` differs from *issuer* (RFC 9207) ends the flow with an error,
        as does an ``error`` answer from the server (``access_denied`` when the user said no).
        """
        server = self._server
        server.expected_state = state
        server.issuer = issuer
        deadline = clock() + timeout
        while server.outcome is None:
            if clock() >= deadline:
                raise CredentialError(
                    f"no sign-in came back from the browser within {timeout:.0f} s; "
                    "run the command again (and use the URL printed above)"
                )
            server.handle_request()
        if isinstance(server.outcome, BaseException):
            raise server.outcome
        return server.outcome

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tokenflow</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{title}</h1><p>{text}</p></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"  # one request per connection: the listener serves one at a time

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the code and the state

    def handle(self) -> None:
        # ``timeout`` bounds each read; this bounds the whole request, so a client dripping a
        # byte at a time cannot hold the listener (and the wait) past CLIENT_TIMEOUT
        timer = threading.Timer(CLIENT_TIMEOUT, self._cut)
        timer.daemon = True
        timer.start()
        try:
            super().handle()
        finally:
            timer.cancel()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def parse_request(self) -> bool:
        if len(getattr(self, "raw_requestline", b"")) > MAX_REQUEST_LINE:
            self.send_error(414)
            return False
        return super().parse_request()

    def _page(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _host_is_loopback(self) -> bool:
        """A ``Host`` naming another site means a DNS-rebinding page is talking to us."""
        host = (self.headers.get("Host") or "").strip().lower()
        if not host:
            return True  # HTTP/1.0 clients may omit it
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            return False

    def do_GET(self) -> None:
        server = self.server
        parts = urlsplit(self.path)
        if not self._host_is_loopback() or parts.path != server.target.path:
            self._page(404, "Not found", "This is tokenflow's sign-in listener; nothing is here.")
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True, max_num_fields=32))
        got = params.get("state", "")
        if not got or not hmac.compare_digest(got.encode(), server.expected_state.encode()):
            log.debug("the sign-in listener ignored a callback without the expected state")
            self._page(400, "Sign-in not accepted",
                       "This answer does not belong to the sign-in tokenflow started "
                       "(missing or wrong state). Still waiting for the right one.")
            return
        iss = params.get("iss")
        if iss is not None and server.issuer is not None and iss != server.issuer:
            # RFC 9207: an answer from another server (mix-up attack) must not be used
            server.outcome = TokenRequestError(
                f"the sign-in answer came from issuer {iss!r}, not {server.issuer!r}; refusing it",
                error="invalid_issuer",
            )
            self._page(400, "Sign-in refused", "The answer came from an unexpected server.")
            return
        if "error" in params:
            # the browser relays what the server (or anyone) put in the URL: never raw to a terminal
            error = printable(params["error"])[:200]
            description = printable(params.get("error_description") or "")[:500]
            text = f"the server refused the sign-in: {error}"
            if description:
                text += f": {description}"
            server.outcome = TokenRequestError(text, error=error, error_description=description or None)
            self._page(400, "Sign-in failed", text + ". You may close this window.")
            return
        if not params.get("code"):
            self._page(400, "Sign-in not accepted", "The answer carries no code. Still waiting.")
            return
        server.outcome = Callback(params)
        self._page(200, "Signed in", "tokenflow has the sign-in. You may close this window.")

    def do_HEAD(self) -> None:
        self._page(405, "Not allowed", "Only GET is served here.")

    do_POST = do_PUT = do_DELETE = do_HEAD
