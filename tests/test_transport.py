"""Transport policy against real servers: proxies, retries, Retry-After, timeouts, errors, http://.

The proxy is a real forward proxy on loopback (absolute-URI requests for http://, CONNECT tunnels
for https://) that counts what passes through it. conftest sets ``NO_PROXY`` for every test; the
proxy tests remove it. Loopback targets never go through a proxy, so the proxied tests name the
embedded server ``tokens.example.test``, a name only the proxy resolves (to 127.0.0.1).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from conftest import FakeClock, profile_yaml, run_cli

import tokenflow
from tokenflow.errors import ConfigError, TokenRequestError, TransportError
from tokenflow.testing import EmbeddedServer, error_response
from tokenflow.transport import MAX_RETRY_AFTER

WriteConfig = Callable[..., Path]
ServerFactory = Callable[..., EmbeddedServer]

PROXIED_HOST = "tokens.example.test"  # resolved by the test proxy only (RFC 2606 .test)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
                        "trailer", "transfer-encoding", "upgrade", "content-length"})


# -- a real forward proxy ------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str  # absolute URI, or host:port for CONNECT
    authorized: bool


class ForwardProxy:
    """An HTTP proxy on 127.0.0.1: forwards absolute-URI requests, tunnels CONNECT.

    With *credentials*, anything without the matching ``Proxy-Authorization`` gets 407.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.lock = threading.Lock()
        self.requests: list[ProxiedRequest] = []
        self.tunnelled_bytes = 0
        self.sockets: set[socket.socket] = set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.httpd.daemon_threads = True
        self.httpd.proxy = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url_with_credentials(self, user: str, password: str) -> str:
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:" \
               f"{self.httpd.server_address[1]}"

    def methods(self) -> list[str]:
        with self.lock:
            return [r.method for r in self.requests]

    def track(self, sock: socket.socket, active: bool) -> None:
        with self.lock:
            (self.sockets.add if active else self.sockets.discard)(sock)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def proxy(self) -> ForwardProxy:
        return self.server.proxy  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.proxy.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.proxy.track(self.connection, False)

    def _authorized(self) -> bool:
        if self.proxy.credentials is None:
            return True
        user, password = self.proxy.credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.headers.get("Proxy-Authorization") == expected

    def _record(self) -> bool:
        authorized = self._authorized()
        with self.proxy.lock:
            self.proxy.requests.append(ProxiedRequest(self.command, self.path, authorized))
        if not authorized:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="test proxy"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        return authorized

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if not self._record():
            return
        if not self.path.startswith("http://"):
            self._reply(400, [], b"absolute URI required")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        url = self.path.replace(f"http://{PROXIED_HOST}:", "http://127.0.0.1:", 1)
        request = urllib.request.Request(url, data=body, method=self.command, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                self._reply(response.status, list(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            self._reply(exc.code, list(exc.headers.items()), exc.read())

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def do_CONNECT(self) -> None:
        if not self._record():
            return
        host, port = self.path.rsplit(":", 1)
        host = "127.0.0.1" if host == PROXIED_HOST else host
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.proxy.track(upstream, True)
        self.send_response(200, "Connection established")
        self.end_headers()

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    with self.proxy.lock:  # counted before it is passed on: no race with asserts
                        self.proxy.tunnelled_bytes += len(data)
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join(timeout=30)
        self.proxy.track(upstream, False)
        upstream.close()
        self.close_connection = True


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy bypass for loopback (conftest sets one): tests then set the proxy variables."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[EmbeddedServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", PROXIED_HOST).configure_cert(context)
    with EmbeddedServer(ssl_context=context) as server:
        yield server


def config_for(
    write_config: WriteConfig, server: EmbeddedServer, *, dialect: str = "teamserver",
    **extra_server: Any
) -> Path:
    return write_config(profile_yaml(server, dialect=dialect, extra_server=extra_server))


def proxied(url: str) -> str:
    """*url* of the embedded server under the name only the test proxy resolves."""
    return url.replace("127.0.0.1", PROXIED_HOST)


def proxied_config_for(
    write_config: WriteConfig, server: EmbeddedServer, *, dialect: str = "teamserver",
    **extra_server: Any
) -> Path:
    """A config naming the server :data:`PROXIED_HOST`: reachable through the proxy only."""
    if server.url.startswith("http://"):
        extra_server.setdefault("allow_insecure_http", True)  # not loopback by name any more
    text = profile_yaml(server, dialect=dialect, extra_server=extra_server)
    return write_config(proxied(text))


# -- proxies ---------------------------------------------------------------------------------------
def test_http_proxy_carries_grant_refresh_and_revocation(
    tokenflow_server_factory: ServerFactory, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig, clock: FakeClock,
) -> None:
    server = tokenflow_server_factory(clock=clock, access_token_lifetime=600)
    proxy_env.setenv("http_proxy", proxy.url)
    session = tokenflow.load_config(proxied_config_for(write_config, server)).session("prod",
                                                                                      clock=clock)

    first = session.token()
    clock.advance(590)  # inside the refresh margin
    second = session.token()
    assert second.access_token != first.access_token
    assert session.logout(revoke=True)

    assert server.counts["password"] == 1 and server.counts["refresh_token"] == 1
    assert server.counts["revoke"] == 1
    assert proxy.methods() == ["GET", "GET", "DELETE"]  # Team Server: GET grants, DELETE revoke
    assert all(r.target.startswith(proxied(server.url) + "/") for r in proxy.requests)


def test_rfc6749_post_through_the_proxy(
    tokenflow_server: EmbeddedServer, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig,
) -> None:
    proxy_env.setenv("http_proxy", proxy.url)
    path = proxied_config_for(write_config, tokenflow_server, dialect="rfc6749")
    token = tokenflow.load_config(path).session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("POST", proxied(tokenflow_server.token_url))]


@pytest.mark.parametrize("bypass", ["127.0.0.1", "localhost,127.0.0.1", "*"])
def test_no_proxy_bypasses_the_proxy(
    tokenflow_server: EmbeddedServer, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig, bypass: str,
) -> None:
    proxy_env.setenv("http_proxy", proxy.url)
    proxy_env.setenv("no_proxy", bypass)
    token = tokenflow.load_config(config_for(write_config, tokenflow_server)).session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert proxy.requests == []


def test_https_proxy_tunnels_every_request(
    https_server: EmbeddedServer, ca: trustme.CA, proxy: ForwardProxy,
    proxy_env: pytest.MonkeyPatch, write_config: WriteConfig, clock: FakeClock,
) -> None:
    proxy_env.setenv("https_proxy", proxy.url)
    path = proxied_config_for(write_config, https_server, verify="ca.pem")
    ca.cert_pem.write_to_path(str(path.parent / "ca.pem"))
    session = tokenflow.load_config(path).session("prod", clock=clock)

    session.token()
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("CONNECT", f"{PROXIED_HOST}:{https_server.port}")]
    tunnelled = proxy.tunnelled_bytes
    assert tunnelled > 0

    session.force_refresh()  # rides the same tunnel (keep-alive) or opens a new one
    assert https_server.counts["refresh_token"] == 1
    assert proxy.tunnelled_bytes > tunnelled
    assert set(proxy.methods()) == {"CONNECT"}


def test_cli_uses_the_proxy(
    tokenflow_server: EmbeddedServer, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig,
) -> None:
    path = proxied_config_for(write_config, tokenflow_server)
    result = run_cli("token", "prod", "-c", str(path), env={"http_proxy": proxy.url})
    assert result.returncode == 0, result.stderr
    assert tokenflow_server.is_valid_access_token(result.stdout.strip())
    assert proxy.methods() == ["GET"]


PROXY_USER, PROXY_PASSWORD = "proxy user", "p@ss:w/rd%"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_credentials_from_the_proxy_url(
    scheme: str, tokenflow_server: EmbeddedServer, https_server: EmbeddedServer, ca: trustme.CA,
    proxy_env: pytest.MonkeyPatch, write_config: WriteConfig,
) -> None:
    """``https_proxy=http://user:pass@host:port`` (percent-encoded) authenticates to the proxy."""
    server = tokenflow_server if scheme == "http" else https_server
    proxy = ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD))
    try:
        proxy_env.setenv(f"{scheme}_proxy", proxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD))
        path = proxied_config_for(write_config, server, verify="ca.pem")
        ca.cert_pem.write_to_path(str(path.parent / "ca.pem"))
        token = tokenflow.load_config(path).session("prod").token()
        assert server.is_valid_access_token(token.access_token)
        assert [r.authorized for r in proxy.requests] == [True]

        proxy_env.setenv(f"{scheme}_proxy", proxy.url_with_credentials(PROXY_USER, "wrong-pw-1234"))
        with pytest.raises((TransportError, TokenRequestError)) as caught:
            tokenflow.load_config(path).session("prod").force_refresh()
        assert "wrong-pw-1234" not in str(caught.value)
        assert [r.authorized for r in proxy.requests] == [True, False]
        assert server.counts["token"] == 1
    finally:
        proxy.stop()


# -- retries -----------------------------------------------------------------------------------------
def test_503_twice_then_success_with_two_retries(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    tokenflow_server.fail_next(2, 503)
    path = config_for(write_config, tokenflow_server, retries=2)
    token = tokenflow.load_config(path).session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert tokenflow_server.counts["token"] == 3


def test_429_is_retried(tokenflow_server: EmbeddedServer, write_config: WriteConfig) -> None:
    tokenflow_server.fail_next(1, 429)
    path = config_for(write_config, tokenflow_server, retries=1)
    token = tokenflow.load_config(path).session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert [r.status for r in tokenflow_server.requests] == [429, 200]


def test_retry_after_is_honoured(tokenflow_server: EmbeddedServer, write_config: WriteConfig) -> None:
    tokenflow_server.fail_next(1, 503, headers={"Retry-After": "1"})
    path = config_for(write_config, tokenflow_server, retries=1)
    session = tokenflow.load_config(path).session("prod")
    started = time.monotonic()
    session.token()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.95
    assert elapsed < 15  # the backoff alone would be well under a second
    assert tokenflow_server.counts["token"] == 2


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_beyond_the_cap_fails_at_once(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, status: int
) -> None:
    """A server asking for an hour's pause does not park the caller: the answer is reported."""
    assert MAX_RETRY_AFTER < 3600
    tokenflow_server.fail_next(1, status, headers={"Retry-After": "3600"})
    path = config_for(write_config, tokenflow_server, retries=2)
    session = tokenflow.load_config(path).session("prod")
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        session.token()
    assert time.monotonic() - started < MAX_RETRY_AFTER / 2
    assert caught.value.transient and caught.value.status == status
    assert "3600" in str(caught.value)
    assert tokenflow_server.counts["token"] == 1

    token = session.token()  # the server is fine again: nothing was left in a bad state
    assert tokenflow_server.is_valid_access_token(token.access_token)


@pytest.mark.parametrize(("status", "error"), [
    (400, "invalid_grant"), (401, "invalid_client"), (400, "invalid_request"), (403, "access_denied"),
])
def test_client_errors_are_never_retried(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, status: int, error: str
) -> None:
    tokenflow_server.script(error_response(status, error, "refused by the test"))
    path = config_for(write_config, tokenflow_server, retries=2)
    with pytest.raises(TokenRequestError) as caught:
        tokenflow.load_config(path).session("prod").token()
    assert (caught.value.error, caught.value.status) == (error, status)
    assert tokenflow_server.counts["token"] == 1


# -- connection failures and timeouts ------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("retries", [0, 1])
def test_connection_refused(write_config: WriteConfig, retries: int) -> None:
    port = closed_port()
    path = write_config(f"""\
        version: 1
        servers:
          ts: {{token_url: "http://127.0.0.1:{port}/api/oauth/token", dialect: teamserver,
                retries: {retries}}}
        clients:
          app: {{client_id: the-client-id, client_secret: the-client-secret}}
        profiles:
          prod: {{server: ts, client: app, grant: password, username: alice,
                  password: the-password-42}}
        """)
    with pytest.raises(TransportError) as caught:
        tokenflow.load_config(path).session("prod").token()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message.lower() and "cannot connect" in message
    assert "timed out" not in message
    assert ("2 tries" in message) is (retries == 1)
    assert caught.value.transient
    for secret in ("?", "the-password-42", "the-client-secret", "password=", "grant_type"):
        assert secret not in message

    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "the-password-42" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_read_timeout(tokenflow_server_factory: ServerFactory, write_config: WriteConfig) -> None:
    server = tokenflow_server_factory(latency=3)
    path = config_for(write_config, server, timeout=0.5, retries=0)
    session = tokenflow.load_config(path).session("prod")
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        session.token()
    assert time.monotonic() - started < 2.5  # gave up long before the server answered
    assert "timed out" in str(caught.value)
    assert caught.value.transient
    assert server.counts["token"] == 1


# -- http:// policy ------------------------------------------------------------------------------------
def insecure_config(url: str, *, allow: bool | None = None, revoke_url: str | None = None) -> str:
    extra = "" if allow is None else f"\n    allow_insecure_http: {str(allow).lower()}"
    revoke = "" if revoke_url is None else f"\n    revoke_url: {revoke_url}"
    return (f"version: 1\nservers:\n  ts:\n    token_url: {url}{revoke}{extra}\n"
            "clients:\n  app:\n    client_id: cid\n"
            "profiles:\n  prod:\n    server: ts\n    client: app\n    grant: client_credentials\n")


@pytest.mark.parametrize("url", [
    "http://auth.example.com/oauth/token",
    "http://127.0.0.1.example.com/oauth/token",  # a public name that starts like loopback
    "HTTP://10.0.0.7:8080/token",
])
def test_http_to_a_non_loopback_host_is_refused_at_load(write_config: WriteConfig, url: str) -> None:
    path = write_config(insecure_config(url))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    [issue] = caught.value.issues
    assert issue.file == str(path) and issue.line == 4
    assert "token_url" in issue.path
    assert "allow_insecure_http" in issue.message

    config = tokenflow.load_config(write_config(insecure_config(url, allow=True)))
    assert config.profile("prod").server.allow_insecure_http is True


def test_http_revoke_url_to_a_non_loopback_host_is_refused(write_config: WriteConfig) -> None:
    path = write_config(insecure_config("https://auth.example.com/token",
                                        revoke_url="http://auth.example.com/revoke"))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    assert "revoke_url" in str(caught.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9000/token",
    "https://auth.example.com/token",
])
def test_loopback_and_https_urls_are_accepted(write_config: WriteConfig, url: str) -> None:
    config = tokenflow.load_config(write_config(insecure_config(url, allow=False)))
    assert config.profile("prod").server.token_url == url


# -- http.client debugging ----------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["teamserver", "rfc6749"])
def test_http_client_debuglevel_does_not_print_the_request(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, dialect: str,
) -> None:
    password = tokenflow_server.default_account.password
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)  # restored after the test

    # the switch works: plain http.client now prints what it sends
    plain = http.client.HTTPConnection("127.0.0.1", tokenflow_server.port, timeout=10)
    plain.request("GET", "/api/oauth/token?probe=1")
    plain.getresponse().read()
    plain.close()
    assert "send:" in capfd.readouterr().out

    path = config_for(write_config, tokenflow_server, dialect=dialect)
    session = tokenflow.load_config(path).session("prod")
    session.token()
    session.force_refresh()
    out, err = capfd.readouterr()
    for text in (out, err):
        assert password not in text
        assert "send:" not in text and "reply:" not in text
    assert tokenflow_server.counts["token"] == 3  # probe + grant + refresh


# -- loopback is never proxied (issue 9, item 4) ---------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("no_proxy", [None, "example.com", ""])
def test_loopback_targets_never_go_through_a_proxy(
    tokenflow_server: EmbeddedServer, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig, host: str, no_proxy: str | None,
) -> None:
    """Plain http is allowed to loopback because it stays here; a proxy would carry the
    credentials (Team Server: in the query string) off the machine in clear."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        proxy_env.setenv(name, proxy.url)
    if no_proxy is not None:
        proxy_env.setenv("NO_PROXY", no_proxy)
    text = profile_yaml(tokenflow_server).replace("127.0.0.1", host)
    session = tokenflow.load_config(write_config(text)).session("prod")
    token = session.token()
    session.force_refresh()
    assert session.logout(revoke=True)
    assert tokenflow_server.is_valid_access_token(token.access_token) is False  # revoked
    assert tokenflow_server.counts["token"] == 2 and tokenflow_server.counts["revoke"] == 1
    assert proxy.requests == []


def test_https_to_loopback_is_not_tunnelled_either(
    https_server: EmbeddedServer, ca: trustme.CA, proxy: ForwardProxy,
    proxy_env: pytest.MonkeyPatch, write_config: WriteConfig,
) -> None:
    proxy_env.setenv("https_proxy", proxy.url)
    path = config_for(write_config, https_server, verify="ca.pem")
    ca.cert_pem.write_to_path(str(path.parent / "ca.pem"))
    assert https_server.is_valid_access_token(tokenflow.load_config(path).session("prod")
                                              .token().access_token)
    assert proxy.requests == []


def test_the_cli_does_not_proxy_loopback(
    tokenflow_server: EmbeddedServer, proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch,
    write_config: WriteConfig,
) -> None:
    path = config_for(write_config, tokenflow_server)
    result = run_cli("token", "prod", "-c", str(path),
                     env={"http_proxy": proxy.url, "HTTP_PROXY": proxy.url})
    assert result.returncode == 0, result.stderr
    assert tokenflow_server.is_valid_access_token(result.stdout.strip())
    assert proxy.requests == []


# -- one URL parser for the check and the connection (item 5) --------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://127.1\\@127.0.0.1:9/token", "backslash", id="backslash-userinfo"),
        pytest.param("https://auth.example.com\\@evil.example/token", "backslash",
                     id="backslash-https"),
        pytest.param("http://127.0.0.1/to\\ken", "backslash", id="backslash-in-path"),
        pytest.param("http://user:pw-9876@127.0.0.1:9/token", "user-info", id="userinfo"),
        pytest.param("https://user@auth.example.com/token", "user-info", id="userinfo-https"),
        pytest.param("http://127.0.0.1%2f@evil.example/token", "user-info", id="encoded-slash"),
        pytest.param("http://evil.example#@127.0.0.1/token", "allow_insecure_http",
                     id="fragment-before-at"),
        pytest.param("http://127.1:9/token", "allow_insecure_http", id="short-ipv4"),
        pytest.param("http://127.0.0.1:9/tok en", "a space", id="space"),
        pytest.param("http://127.0.0.1:9/token\u00e9", "non-ASCII", id="non-ascii"),
        pytest.param('"http://127.0.0.1:9/tok\\x1bken"', "control character", id="escape"),
        pytest.param("http://[::1%25lo]:9/token", "host", id="ipv6-zone"),
    ],
)
def test_ambiguous_server_urls_are_refused_at_load(
    write_config: WriteConfig, url: str, expected: str
) -> None:
    path = write_config(insecure_config(url))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line) == (str(path), 4)
    assert issue.column > 0
    assert issue.path == "$.servers.ts.token_url"
    assert expected in issue.message
    assert "pw-9876" not in str(caught.value) and "evil" not in issue.message


@pytest.mark.parametrize("url", ["http://u:p@127.0.0.1:9/revoke", "https://h.example\\@x/revoke"])
def test_ambiguous_revoke_urls_are_refused_at_load(write_config: WriteConfig, url: str) -> None:
    path = write_config(insecure_config("https://auth.example.com/token", revoke_url=url))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    [issue] = caught.value.issues
    assert issue.path == "$.servers.ts.revoke_url" and issue.line == 5


def transport_for(url: str, **options: Any) -> Any:
    from tokenflow.config.model import ServerSpec
    from tokenflow.transport import Transport

    return Transport(ServerSpec(name="ts", token_url=url, **options))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.1\\@127.0.0.1:9/token", "backslash"),
        ("http://user:pw-5555@127.0.0.1:9/token", "user-info"),
        ("http://auth.example.com/token", "not loopback"),
        ("http://127.0.0.1:9/token?password=a\r\nX: y", "query string"),
        ("http://127.0.0.1:9/token?q=a\\b", "query string"),
    ],
)
def test_the_transport_checks_every_url_it_is_handed(url: str, expected: str) -> None:
    """A dialect builds the final URL: the transport checks it with the same parser."""
    from tokenflow.plugins.contracts import HttpRequest

    transport = transport_for("http://127.0.0.1:9/token")
    with pytest.raises(TransportError) as caught:
        transport.send(HttpRequest("GET", url))
    assert expected in str(caught.value)
    assert not caught.value.transient
    assert "pw-5555" not in str(caught.value)


# -- header names and values from config (item 7) --------------------------------------------------
def headers_config(server_url: str, headers: str) -> str:
    return (f"version: 1\nservers:\n  ts:\n    token_url: {server_url}\n    headers:\n{headers}"
            "clients:\n  app:\n    client_id: cid\n"
            "profiles:\n  prod:\n    server: ts\n    client: app\n    grant: client_credentials\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("api-key-4242\n", "line break (CR/LF) at position 13", id="trailing-newline"),
        pytest.param("api-key-4242\r\nX-Injected: 1", "line break", id="crlf-injection"),
        pytest.param("api\x00key-4242", "NUL", id="nul"),
        pytest.param("api-key-4242\x1b[2J", "control character", id="escape"),
        pytest.param("api-key-4242\u00e9", "non-ASCII", id="non-ascii"),
        pytest.param("api-key-4242 ", "whitespace", id="trailing-space"),
    ],
)
def test_bad_header_values_from_the_environment_are_config_errors(
    write_config: WriteConfig, value: str, expected: str
) -> None:
    path = write_config(headers_config("https://auth.example.com/token",
                                       '      X-Api-Key: "${API_KEY}"\n'))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path, environ={"API_KEY": value})
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.column) == (str(path), 6, 18)
    assert issue.path == "$.servers.ts.headers.X-Api-Key"
    assert expected in issue.message
    assert "api-key-4242" not in str(caught.value)


@pytest.mark.parametrize("name", ["X Api Key", "X-Api-Key:", "X-\u00e9", '"X"'])
def test_bad_header_names_are_config_errors(write_config: WriteConfig, name: str) -> None:
    path = write_config(headers_config("https://auth.example.com/token",
                                       f"      {json.dumps(name)}: value\n"))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    assert "is not an HTTP token" in str(caught.value)


def test_a_bad_header_value_gives_the_cli_exit_2_and_no_crash_file(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    text = profile_yaml(tokenflow_server, extra_server={"headers": '{X-Api-Key: "${API_KEY}"}'})
    path = write_config(text)
    result = run_cli("token", "prod", "-c", str(path), env={"API_KEY": "key-value-777\n"})
    assert result.returncode == 2, result.stderr
    assert f"{path}:" in result.stderr  # FILE:LINE:COL
    assert "X-Api-Key" in result.stderr and "line break" in result.stderr
    assert "key-value-777" not in result.stderr + result.stdout
    leftovers = [p for p in cache_dir.rglob("*") if p.is_file()] if cache_dir.exists() else []
    assert not any("key-value-777" in p.read_text(errors="replace") for p in leftovers)
    assert tokenflow_server.counts["token"] == 0


def test_configured_header_values_are_scrubbed_like_secrets(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    """A server that echoes the API key back in its error does not get it into messages."""
    key = "header-api-key-31337"
    text = profile_yaml(tokenflow_server, extra_server={"headers": '{X-Api-Key: "${API_KEY}"}'})
    session = tokenflow.load_config(write_config(text), environ={"API_KEY": key}).session("prod")
    tokenflow_server.script(error_response(400, "invalid_request", f"unknown api key {key}"))
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    assert key not in str(caught.value)
    assert "unknown api key ***" in str(caught.value)
    assert tokenflow_server.last_raw_request is not None
    sent = {k.lower(): v for k, v in tokenflow_server.last_raw_request.headers.items()}
    assert sent["x-api-key"] == key  # sent as configured


def test_the_transport_refuses_a_bad_header_a_dialect_built() -> None:
    from tokenflow.plugins.contracts import HttpRequest

    transport = transport_for("http://127.0.0.1:9/token")
    with pytest.raises(TransportError) as caught:
        transport.send(HttpRequest("POST", "http://127.0.0.1:9/token",
                                   {"Authorization": "Basic abc-secret-1\r\nX-Evil: 1"}))
    assert "line break" in str(caught.value)
    assert "abc-secret-1" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:9/t", True), ("http://127.255.0.9/t", True), ("http://localhost/t", True),
        ("http://LOCALHOST:80/t", True), ("http://[::1]:9/t", True),
        ("http://[0:0:0:0:0:0:0:1]/t", True),
        ("http://127.1/t", False), ("http://127.0.0.1.example.com/t", False),
        ("http://localhost.example.com/t", False), ("http://localhost./t", False),
        ("http://0x7f000001/t", False), ("http://2130706433/t", False),
        ("http://[::ffff:127.0.0.1]/t", False), ("http://10.0.0.1/t", False),
    ],
)
def test_loopback_is_decided_once_for_the_check_and_the_proxy(
    url: str, loopback: bool, proxy_env: pytest.MonkeyPatch
) -> None:
    """Only literal loopback addresses and ``localhost``; names that resolve there elsewhere do
    not count, for the http:// check and for the proxy choice alike."""
    from tokenflow.transport import _proxy_for
    from tokenflow.wire import ServerUrl, parse_server_url

    proxy_env.setenv("http_proxy", "http://proxy.example:3128")
    parsed = parse_server_url(url)
    assert isinstance(parsed, ServerUrl)
    assert parsed.is_loopback is loopback
    assert (_proxy_for(parsed) is None) is loopback
