"""A hostile token server, byte by byte: drips, compression bombs, endless headers, bad Retry-After.

Two real servers on loopback: the embedded server (``script`` sends raw replies, headers and
framing included) and, for what no well-behaved HTTP server can do (drip one byte at a time,
send 200 headers), a tiny raw socket server defined here. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FakeClock, profile_yaml, run_cli

import tokenflow
from tokenflow.errors import TokenRequestError, TransportError
from tokenflow.testing import EmbeddedServer, ScriptedResponse, success_body
from tokenflow.testing.pytest_plugin import ServerFactory
from tokenflow.transport import MAX_BODY

WriteConfig = Callable[..., Path]
JSON = {"Content-Type": "application/json"}
REPLY = json.dumps({"access_token": "dripped-token-1", "token_type": "Bearer",
                    "expires_in": 3600}).encode()


# -- a raw socket server ----------------------------------------------------------------------------
Handler = Callable[[socket.socket, threading.Event], "bool | None"]


class RawServer:
    """Accepts connections on 127.0.0.1; each one gets ``handler(conn, stop)`` on its own thread.

    The handler has read nothing yet; :func:`read_request` reads the request head. ``stop`` is
    set when the test ends, so a dripping handler returns at once. What a handler returns (for
    :func:`drip`: whether it sent everything) is collected in ``results``; a connection the
    client broke off counts as ``False``.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop_event = threading.Event()
        self.connections = 0
        self.results: list[bool | None] = []
        self.handlers: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/token"

    def _accept(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self.lock:
                self.connections += 1
                self.handlers.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        result: bool | None = False
        with conn, contextlib.suppress(OSError):
            result = self.handler(conn, self.stop_event)
        with self.lock:
            self.results.append(result)

    def wait_for_handlers(self) -> list[bool | None]:
        """What every handler returned, once each has ended (a drip the client cut ends at
        once; one nobody cut runs to its end, well within the join timeout)."""
        with self.lock:
            threads = list(self.handlers)
        for thread in threads:
            thread.join(timeout=60)
        with self.lock:
            return list(self.results)

    def stop(self) -> None:
        self.stop_event.set()
        self.listener.close()
        self.thread.join(timeout=5)


def read_request(conn: socket.socket) -> bytes:
    """The request head and as much of the body as came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def drip(conn: socket.socket, stop: threading.Event, data: bytes, interval: float = 0.1) -> bool:
    """Send *data* one byte per *interval*: every read gets a byte well within any timeout.

    True if all of it was sent; an OSError (the client hung up) or the test's end stops it.
    """
    for byte in data:
        conn.sendall(bytes([byte]))
        if stop.wait(interval):
            return False
    return True


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def raw_config(write_config: WriteConfig, url: str, *, timeout: float = 1, retries: int = 0) -> Path:
    return write_config(f"""
        version: 1
        servers:
          raw: {{token_url: "{url}", dialect: rfc6749, timeout: {timeout}, retries: {retries}}}
        clients:
          app: {{client_id: app, client_secret: raw-client-secret}}
        profiles:
          prod: {{server: raw, client: app, grant: client_credentials}}
        """)


# -- item 9: timeout is a deadline per attempt, not per socket read --------------------------------
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
DRIPS = {
    # what is sent at once, what is dripped (0.1 s a byte: a 15 s reply under a 1 s timeout)
    "status-line": (b"", HEAD + b"Content-Length: %d\r\n\r\n" % len(REPLY) + REPLY),
    "headers": (b"HTTP/1.1 200 OK\r\n", b"Content-Type: application/json\r\nX-Pad: "
                + b"x" * 60 + b"\r\nContent-Length: %d\r\n\r\n" % len(REPLY) + REPLY),
    "content-length-body": (HEAD + b"Content-Length: %d\r\n\r\n" % len(REPLY), REPLY + b" " * 80),
    "chunked-body": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
                     b"".join(b"1\r\n%s\r\n" % bytes([c]) for c in REPLY) + b"0\r\n\r\n"),
    # no length at all: the body ends when the connection does, so a cut looks complete
    "close-delimited-body": (HEAD + b"Connection: close\r\n\r\n", REPLY + b" " * 80),
}


@pytest.mark.parametrize("stage", list(DRIPS))
def test_a_dripping_server_is_cut_at_the_deadline(
    raw_server: Callable[..., RawServer], write_config: WriteConfig, stage: str
) -> None:
    """A byte every 0.1 s passes any per-read timeout; the attempt's deadline stops it."""
    at_once, dripped = DRIPS[stage]

    def handler(conn: socket.socket, stop: threading.Event) -> bool:
        read_request(conn)
        conn.sendall(at_once)
        return drip(conn, stop, dripped)

    server = raw_server(handler)
    session = tokenflow.load_config(raw_config(write_config, server.url)).session("prod")
    with pytest.raises(TransportError) as caught:
        session.token()
    exc = caught.value
    assert exc.transient  # a slow server may be quicker later: a still-valid token is served
    assert "did not finish answering within 1 s" in str(exc)
    assert "127.0.0.1" in str(exc)
    assert server.wait_for_handlers() == [False]  # tokenflow hung up: the drip never finished


def test_a_tls_handshake_dripped_byte_by_byte_is_cut_at_the_deadline(
    raw_server: Callable[..., RawServer], write_config: WriteConfig
) -> None:
    """The deadline covers connecting too: a server answering the ClientHello one byte at a time
    (a TLS record header, then a ServerHello that never ends)."""

    def handler(conn: socket.socket, stop: threading.Event) -> bool:
        conn.recv(65536)  # the ClientHello
        return drip(conn, stop, b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc\x03\x03" + b"\x00" * 200)

    server = raw_server(handler)
    path = raw_config(write_config, server.url.replace("http://", "https://"))
    with pytest.raises(TransportError) as caught:
        tokenflow.load_config(path).session("prod").token()
    assert "did not finish answering within 1 s" in str(caught.value)
    assert caught.value.transient
    assert server.wait_for_handlers() == [False]


def test_each_retry_has_its_own_deadline(
    raw_server: Callable[..., RawServer], write_config: WriteConfig
) -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> bool:
        read_request(conn)
        return drip(conn, stop, DRIPS["status-line"][1])

    server = raw_server(handler)
    path = raw_config(write_config, server.url, retries=1)
    with pytest.raises(TransportError) as caught:
        tokenflow.load_config(path).session("prod").token()
    assert "did not finish answering within 1 s (the server's timeout) (after 2 tries)" \
        in str(caught.value)
    assert server.connections == 2
    assert server.wait_for_handlers() == [False, False]


def test_a_dripping_server_gives_the_cli_a_clear_error(
    raw_server: Callable[..., RawServer], write_config: WriteConfig
) -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> bool:
        read_request(conn)
        return drip(conn, stop, DRIPS["headers"][0] + DRIPS["headers"][1])

    server = raw_server(handler)
    result = run_cli("token", "prod", "-c", str(raw_config(write_config, server.url)))
    assert result.returncode == 4, result.stderr  # a network failure (issue 9, 17)
    assert "did not finish answering within 1 s" in result.stderr
    assert result.stdout == ""


def test_a_deadline_does_not_outlive_its_request(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    """Kept-alive connections are not cut after the request that armed the deadline ended."""
    import time

    server = tokenflow_server_factory(clock=clock)
    path = write_config(profile_yaml(server, extra_server={"timeout": 0.5}))
    session = tokenflow.load_config(path).session("prod", clock=clock)
    session.token()
    time.sleep(1)  # past the first request's deadline: the pooled connection must be intact
    assert session.force_refresh().access_token
    assert server.counts["refresh_token"] == 1


# -- item 1: the body cap holds for the decoded bytes -----------------------------------------------
def gzip_layers(data: bytes, layers: int) -> bytes:
    for _ in range(layers):
        data = gzip.compress(data, compresslevel=9)
    return data


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory, clock: FakeClock) -> EmbeddedServer:
    return tokenflow_server_factory(clock=clock)


def session_for(server: EmbeddedServer, write_config: WriteConfig,
                clock: FakeClock) -> tokenflow.TokenSession:
    path = write_config(profile_yaml(server, grant="client_credentials"))
    return tokenflow.load_config(path).session("prod", clock=clock)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_compression_bomb_is_refused_within_the_cap(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, framing: str, layers: int
) -> None:
    """64 MiB of zeros in a few KiB; the reply is refused using at most a few MiB of memory."""
    bomb = gzip_layers(b"\0" * (64 * 1024 * 1024), layers)
    assert len(bomb) < MAX_BODY
    headers = {**JSON, "Content-Encoding": ", ".join(["gzip"] * layers)}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        bomb = b"%x\r\n%s\r\n0\r\n\r\n" % (len(bomb), bomb)
    server.script(ScriptedResponse(200, headers, bomb))
    session = session_for(server, write_config, clock)
    tracemalloc.start()
    try:
        with pytest.raises(TokenRequestError) as caught:
            session.token()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"over {MAX_BODY} bytes" in str(caught.value)
    assert "inflates" in str(caught.value)
    assert peak < 16 * 1024 * 1024, f"{peak} bytes allocated while refusing the reply"


def test_tokenflow_asks_for_an_uncompressed_reply(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session_for(server, write_config, clock).token()
    assert server.last_raw_request is not None
    headers = {k.lower(): v for k, v in server.last_raw_request.headers.items()}
    assert headers["accept-encoding"] == "identity"


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("x-gzip", gzip.compress, id="x-gzip"),
        pytest.param("GZip", gzip.compress, id="gzip-any-case"),
        pytest.param("gzip, gzip", lambda b: gzip_layers(b, 2), id="gzip-twice"),
        pytest.param("gzip", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:]),
                     id="gzip-two-members"),
        pytest.param("deflate", zlib.compress, id="deflate-zlib"),
        pytest.param("deflate", raw_deflate, id="deflate-raw"),
        pytest.param("identity", lambda b: b, id="identity"),
    ],
)
def test_servers_that_compress_anyway_are_understood(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, encoding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    body = success_body(access_token="compressed-token-1")
    server.script(ScriptedResponse(200, {**JSON, "Content-Encoding": encoding}, encode(body)))
    assert session_for(server, write_config, clock).token().access_token == "compressed-token-1"


@pytest.mark.parametrize(
    ("encoding", "body", "expected"),
    [
        pytest.param("br", b"\x1b\x00", "Content-Encoding 'br'", id="brotli"),
        pytest.param("zstd", b"\x28\xb5\x2f\xfd", "Content-Encoding 'zstd'", id="zstd"),
        pytest.param("compress", b"\x1f\x9d", "Content-Encoding 'compress'", id="compress"),
        pytest.param("gzip, gzip, gzip, gzip", gzip_layers(REPLY, 4), "4 times", id="four-layers"),
        pytest.param("gzip", b"\x1f\x8bnot really gzip", "does not decompress", id="corrupt"),
        pytest.param("gzip", gzip.compress(REPLY)[:-12], "truncated", id="truncated"),
        pytest.param("deflate", b"plain text", "does not decompress", id="deflate-garbage"),
    ],
)
def test_encodings_that_cannot_be_bounded_or_decoded_are_clear_errors(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, encoding: str,
    body: bytes, expected: str,
) -> None:
    server.script(ScriptedResponse(200, {**JSON, "Content-Encoding": encoding}, body))
    with pytest.raises(TokenRequestError) as caught:
        session_for(server, write_config, clock).token()
    assert expected in str(caught.value)
    assert caught.value.status == 200


def test_an_endless_close_delimited_body_is_cut_at_the_cap(
    raw_server: Callable[..., RawServer], write_config: WriteConfig
) -> None:
    """No Content-Length, no chunking: the body is read one byte past the cap, no further."""
    sent = [0]

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(HEAD + b"Connection: close\r\n\r\n")
        block = b"x" * 65536
        while not stop.is_set():
            conn.sendall(block)
            sent[0] += len(block)

    server = raw_server(handler)
    path = raw_config(write_config, server.url, timeout=30)
    with pytest.raises(TokenRequestError) as caught:
        tokenflow.load_config(path).session("prod").token()
    assert f"over {MAX_BODY} bytes" in str(caught.value)


# -- huge or endless headers ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"".join(b"X-Header-%d: v\r\n" % i for i in range(200)), id="200-headers"),
        pytest.param(b"X-Long: " + b"a" * 100_000 + b"\r\n", id="100-KB-header-line"),
    ],
)
def test_oversized_headers_are_a_clear_error(
    raw_server: Callable[..., RawServer], write_config: WriteConfig, head: bytes
) -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: %d\r\n\r\n" % len(REPLY)
                     + REPLY)

    server = raw_server(handler)
    with pytest.raises(TransportError) as caught:
        tokenflow.load_config(raw_config(write_config, server.url)).session("prod").token()
    assert "headers are too long or too many" in str(caught.value)
    assert not caught.value.transient


# -- item 13: an unreadable Retry-After backs off normally -----------------------------------------
@pytest.mark.parametrize("value", ["soon", "-5", "1e9", "Thu, 99 Foo 2026 25:61:00 GMT", "", "3.5"])
def test_an_unparsable_retry_after_backs_off_normally(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock,
    value: str,
) -> None:
    server = tokenflow_server_factory(clock=clock)
    server.script(ScriptedResponse(503, {"Retry-After": value, "Content-Type": "text/plain"},
                                   b"busy"))
    path = write_config(profile_yaml(server, extra_server={"retries": 1}))
    token = tokenflow.load_config(path).session("prod", clock=clock).token()
    assert server.is_valid_access_token(token.access_token)
    assert server.counts["token"] == 2


def test_an_unparsable_retry_after_gives_the_cli_no_internal_error(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    server = tokenflow_server_factory()
    for _ in range(2):
        server.script(ScriptedResponse(503, {"Retry-After": "later", "Content-Type": "text/plain"},
                                       b"busy"))
    path = write_config(profile_yaml(server, extra_server={"retries": 1}))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert "HTTP 503 after 2 tries" in result.stderr
