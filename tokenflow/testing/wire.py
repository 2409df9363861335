"""HTTP/1.1 plumbing of the embedded server: sockets, bodies, parameters and replies.

What is here knows HTTP and form encoding but nothing about tokens: a threaded loopback
server that hands TLS handshakes to its worker threads, a keep-alive handler that reads one
bounded request body at a time (``Content-Length`` or chunked, drained on 413 so the client
reads the answer rather than a reset), strict percent-decoding of query strings and form
bodies (``%zz`` and invalid UTF-8 are refused, as a servlet container would), the merge of
query and body parameters that refuses a repeated name (RFC 6749 §3.2), and replies written
in one piece.  What a request *means* is decided by an :class:`Application`, the embedded
server's routing, which this module calls for every request.

Nothing is ever logged: request lines of the Team Server dialect carry passwords.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import ssl
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlsplit

BIND_ADDRESS: Final = "127.0.0.1"
JSON: Final = "application/json;charset=UTF-8"
FORM: Final = "application/x-www-form-urlencoded"
NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]+")
_DRAIN_FACTOR = 16  # drain bodies up to 16 times the limit before answering 413


@dataclass
class Reply:
    """A response to write: status, headers in order, body; ``close`` ends the connection."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False


@dataclass
class Exchange:
    """One request in flight, filled in as handling learns more about it."""

    method: str
    target: str
    path: str
    query: str
    content_type: str | None
    authorization: str | None
    headers: dict[str, str]
    body: bytes = b""
    grant_type: str | None = None
    client_auth: str | None = None
    scripted: bool = False


def dumps(payload: Mapping[str, object]) -> bytes:
    """Compact JSON, as Spring's Jackson writes it (some clients are picky about it)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def json_reply(
    status: int, payload: Mapping[str, object], headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    """A JSON reply that no cache may keep (every token endpoint reply is one)."""
    return Reply(status, [("Content-Type", JSON), *NO_STORE, *headers], dumps(payload))


class OAuthError(Exception):
    """Short-circuits request handling with an RFC 6749 style error body."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        super().__init__(description)
        self.reply = json_reply(status, {"error": error, "error_description": description}, headers)
        self.reply.close = close


def bad_request(description: str, *, close: bool = False) -> OAuthError:
    """``400 invalid_request``: the request could not be understood."""
    return OAuthError(400, "invalid_request", description, close=close)


def not_found() -> Reply:
    return json_reply(404, {"error": "not_found", "error_description": "Not Found"})


def unquote_strict(text: str, where: str, *, plus: bool) -> str:
    """Percent-decode ``text`` or refuse it: Python's unquote silently keeps ``%zz``."""
    if _BAD_PERCENT.search(text):
        raise bad_request(f"Malformed percent-encoding in {where}")
    if plus:
        text = text.replace("+", " ")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise bad_request(f"Invalid UTF-8 in {where}") from None


def parse_form(raw: str, where: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs, strictly decoded, in order."""
    pairs = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append(
                (unquote_strict(name, where, plus=True), unquote_strict(value, where, plus=True))
            )
    return pairs


def names(raw: str) -> tuple[str, ...]:
    """Parameter names only, leniently: what a request history may keep."""
    return tuple(name for name, _ in parse_qsl(raw, keep_blank_values=True, errors="replace"))


def is_form(ex: Exchange) -> bool:
    """True for a POST with a form body.

    Only form bodies have parameter names; a JSON body parsed as a form would be recorded
    whole, secrets included.
    """
    ctype = (ex.content_type or "").split(";", 1)[0].strip().lower()
    return ex.method == "POST" and ctype == FORM


def first_value(ex: Exchange, name: str) -> str | None:
    """The first value of ``name`` in the query or a form body, leniently (for accounting)."""
    for source in (ex.query, ex.body.decode("latin-1") if is_form(ex) else ""):
        for key, value in parse_qsl(source, keep_blank_values=True, errors="replace"):
            if key == name:
                return value
    return None


def request_params(ex: Exchange) -> tuple[dict[str, str], dict[str, str]]:
    """Merge query and form body like a servlet, refusing repeated names (RFC 6749 §3.2).

    Returns the values and, for each name, where it came from (``"query"`` or ``"body"``).
    """
    pairs = [(n, v, "query") for n, v in parse_form(ex.query, "query string")]
    if ex.method == "POST" and ex.body:
        if not is_form(ex):
            raise bad_request(f"Unsupported Content-Type: expected {FORM}")
        try:
            text = ex.body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("Invalid UTF-8 in request body") from None
        pairs += [(n, v, "body") for n, v in parse_form(text, "request body")]
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, value, source in pairs:
        if name in values:
            raise bad_request(f"Parameter must not be repeated: {name}")
        values[name] = value
        sources[name] = source
    return values, sources


class Application(Protocol):
    """What the HTTP layer needs from the server it serves."""

    @property
    def ssl_context(self) -> ssl.SSLContext | None: ...

    @property
    def max_body(self) -> int: ...

    def http_date(self) -> str:
        """The ``Date`` header value (the server's clock may be skewed on purpose)."""

    def track(self, conn: socket.socket, active: bool) -> None:
        """Note an open (or closed) connection, so stopping can cut keep-alive ones."""

    def route(self, ex: Exchange) -> Reply:
        """Answer one request (raising :class:`OAuthError` is an answer too)."""

    def note_error(self, text: str) -> None:
        """Keep the traceback of an unexpected error, answered as 500."""

    def record(self, ex: Exchange, reply: Reply) -> None:
        """Account for a request and its reply."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    """Loopback HTTP server that hands TLS handshakes to the handler threads."""

    daemon_threads = True

    def __init__(self, app: Application, port: int = 0) -> None:
        self.app = app
        super().__init__((BIND_ADDRESS, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = BIND_ADDRESS, self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        context = self.app.ssl_context
        if context is not None:
            # Handshake later, in the handler thread, so a slow client cannot block accept().
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: a test server must never print tracebacks (or requests)."""


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time on a keep-alive connection and replies."""

    protocol_version = "HTTP/1.1"
    server_version = "tokenflow-embedded"
    sys_version = ""
    timeout = 30
    # Without TCP_NODELAY, Nagle plus delayed ACKs can add ~40 ms to a response
    # (e.g. send_error's split writes), which would swamp keep-alive benchmarks.
    disable_nagle_algorithm = True

    @property
    def _app(self) -> Application:
        return cast(LoopbackHTTPServer, self.server).app

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: request lines of the GET dialect carry passwords."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return self._app.http_date()

    def setup(self) -> None:
        super().setup()
        self._app.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._app.track(self.connection, False)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except OSError:
                return
        super().handle()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _handle(self) -> None:
        app = self._app
        split = urlsplit(self.path)
        ex = Exchange(
            method=self.command,
            target=self.path,
            path=split.path,
            query=split.query,
            content_type=self.headers.get("Content-Type"),
            authorization=self.headers.get("Authorization"),
            headers=dict(self.headers.items()),
        )
        try:
            ex.body = self._read_body(app.max_body)
            reply = app.route(ex)
        except OAuthError as exc:
            reply = exc.reply
        except Exception:
            app.note_error(traceback.format_exc())
            reply = json_reply(500, {"error": "server_error", "error_description": "Internal error"})
        app.record(ex, reply)
        self._write(reply)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            if self.headers["Transfer-Encoding"].strip().lower() != "chunked":
                raise bad_request("Unsupported Transfer-Encoding", close=True)
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.command in ("POST", "PUT", "PATCH"):
                raise OAuthError(411, "invalid_request", "Content-Length required", close=True)
            return b""
        if not _DIGITS.fullmatch(length_text.strip()):
            raise bad_request("Invalid Content-Length", close=True)
        length = int(length_text)
        if length > limit:
            # Drain what we can so the client reads our 413 rather than a TCP reset.
            remaining = length if length <= _DRAIN_FACTOR * limit else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise OAuthError(413, "invalid_request", "Request body too large", close=True)
        body = self.rfile.read(length)
        if len(body) < length:
            raise bad_request("Truncated request body", close=True)
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self.rfile.readline(1026).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise bad_request("Malformed chunked body", close=True) from None
            if size < 0:
                raise bad_request("Malformed chunked body", close=True)
            if size == 0:
                break
            total += size
            if total > limit:
                raise OAuthError(413, "invalid_request", "Request body too large", close=True)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1026)
        while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):
            pass  # skip trailers
        return b"".join(chunks)

    def _write(self, reply: Reply) -> None:
        """Send status line, headers and body in one write (one segment when small)."""
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = ""
        headers = list(reply.headers)
        present = {name.lower() for name, _ in headers}
        if "date" not in present:
            headers.insert(0, ("Date", self.date_time_string()))
        if "content-length" not in present:
            headers.append(("Content-Length", str(len(reply.body))))
        if reply.close or any(
            name.lower() == "connection" and value.lower() == "close" for name, value in headers
        ):
            self.close_connection = True
            if "connection" not in present:
                headers.append(("Connection", "close"))
        lines = [f"{self.protocol_version} {reply.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head + reply.body)
