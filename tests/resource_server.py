"""A protected resource on loopback that enforces a token server's tokens, and a TCP proxy
that counts connections: the real parts the adapter tests talk to.

The embedded server's own resource endpoint answers GET only and never 403; the adapters also
need POST bodies (rewound or not), a 403 on demand, a 401 that never relents and a challenge
without ``invalid_token``, and the independent (oauthlib) server has no resource at all. Tokens
are checked against the issuer's own records, so what the issuer expires or replaces (a refresh
drops the old access token) is refused here too.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

MAX_BODY = 1024 * 1024
INVALID_TOKEN = 'Bearer realm="api", error="invalid_token", error_description="The access token expired"'


class Issuer(Protocol):
    """A token server that can say whether it still honours an access token (the embedded
    server and the independent oauthlib server both can)."""

    def is_valid_access_token(self, token: str) -> bool: ...


@dataclass(frozen=True)
class Seen:
    """One request as the resource server saw it."""

    method: str
    path: str
    query: str
    authorization: str | None
    token: str
    body: bytes
    status: int


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its connection (a test that is done) is not an error worth a
    traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class ResourceServer:
    """``ThreadingHTTPServer`` on 127.0.0.1 guarding ``/api/things`` with the issuer's tokens.

    Knobs (set them between requests): ``forbid`` answers 403 to a valid token, ``refuse_all``
    answers 401 whatever the token, ``challenge`` is the ``WWW-Authenticate`` value of a 401,
    ``pad_401`` makes a 401's body that many bytes longer.
    """

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.forbid = False
        self.refuse_all = False
        self.challenge = INVALID_TOKEN
        self.pad_401 = 0  # extra bytes in a 401's body
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        cast(Any, self._httpd).owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def __enter__(self) -> ResourceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/things"

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()

    def statuses(self) -> list[int]:
        return [s.status for s in self.seen]

    def answer(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        authorization = headers.get("Authorization")
        scheme, _, credentials = (authorization or "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else dict(
            parse_qsl(parts.query)).get("access_token", "")
        extra: list[tuple[str, str]] = []
        if self.refuse_all or not token or not self.issuer.is_valid_access_token(token):
            status, payload = 401, {"error": "invalid_token"}
            extra.append(("WWW-Authenticate", self.challenge))
        elif self.forbid:
            status, payload = 403, {"error": "insufficient_scope"}
        else:
            status, payload = 200, {"ok": True, "body": body.decode("latin-1")}
        with self._lock:
            self._seen.append(Seen(method, parts.path, parts.query, authorization, token, body, status))
        if status == 401 and self.pad_401:
            payload["padding"] = "x" * self.pad_401
        return status, extra, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry query-placed tokens."""

    def do_GET(self) -> None:
        body = self._read_body()
        owner: ResourceServer = cast(Any, self.server).owner
        status, headers, payload = owner.answer(self.command, self.path, self.headers, body)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1026).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1026)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)


class CountingProxy:
    """A TCP relay on 127.0.0.1 to *port* that counts the connections clients open."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._target, timeout=10)
            with self._lock:
                self._connections += 1
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
