"""Tests of the embedded OAuth 2.0 server over real HTTP on loopback.

The server is the yardstick every client test relies on, so its Spring
Security OAuth2 (Team Server) quirks and RFC 6749 behaviour are pinned here
byte for byte: field order, headers, exact error bodies.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import urllib3

from tokenflow.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    OMIT,
    EmbeddedServer,
    ScriptedResponse,
    ServerConfig,
    error_response,
    success_body,
    success_response,
)

pytest_plugins = ["pytester"]

JSON = "application/json;charset=UTF-8"
HTTP = urllib3.PoolManager(retries=False, timeout=5)
T0 = 1_700_000_000.0


class FakeClock:
    """Injectable clock so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Callable[..., EmbeddedServer]]:
    servers: list[EmbeddedServer] = []

    def make(**options: Any) -> EmbeddedServer:
        srv = EmbeddedServer(**options).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def basic(
    client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET
) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def post(
    url: str, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> urllib3.BaseHTTPResponse:
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return HTTP.request("POST", url, body=urlencode(fields or {}), headers=all_headers)


def get(
    url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> urllib3.BaseHTTPResponse:
    return HTTP.request("GET", url + ("?" + urlencode(params) if params else ""), headers=headers)


def password_grant(srv: EmbeddedServer, **extra: str) -> urllib3.BaseHTTPResponse:
    fields = {"grant_type": "password", "username": "alice", "password": "wonderland", **extra}
    return post(srv.token_url, fields, basic())


def refresh_grant(srv: EmbeddedServer, token: str, **extra: str) -> urllib3.BaseHTTPResponse:
    return post(
        srv.token_url, {"grant_type": "refresh_token", "refresh_token": token, **extra}, basic()
    )


def assert_error(resp: urllib3.BaseHTTPResponse, status: int, error: str, description: str) -> None:
    assert resp.status == status
    assert resp.headers["Content-Type"] == JSON
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.json() == {"error": error, "error_description": description}


def raw_exchange(srv: EmbeddedServer, data: bytes) -> bytes:
    """Send bytes no well-behaved client library would, read until the server closes."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- success responses -----------------------------------------------------------


def test_success_has_spring_field_order_and_headers(server: EmbeddedServer) -> None:
    resp = password_grant(server)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == JSON
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    assert "Date" in resp.headers
    body = resp.json()
    assert list(body) == ["access_token", "token_type", "refresh_token", "expires_in", "scope"]
    assert resp.data.startswith(b'{"access_token":"')  # compact, like Jackson
    assert body["token_type"] == "bearer"
    assert body["scope"] == "read write"
    assert body["expires_in"] in (86399, 86400)
    assert uuid.UUID(body["access_token"]).version == 4
    assert uuid.UUID(body["refresh_token"]).version == 4
    assert server.is_valid_access_token(body["access_token"])
    assert server.is_valid_refresh_token(body["refresh_token"])


def test_get_query_dialect_and_client_auth_methods(server: EmbeddedServer) -> None:
    params = {
        "grant_type": "password",
        "username": "alice",
        "password": "wonderland",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    assert get(server.token_url, params).status == 200
    assert post(server.token_url, params).status == 200
    assert password_grant(server).status == 200
    first, second, third = server.requests
    assert (first.method, first.client_auth, first.grant_type) == ("GET", "query", "password")
    assert first.query_params == tuple(params)
    assert (second.client_auth, second.body_params) == ("body", tuple(params))
    assert second.content_type == "application/x-www-form-urlencoded"
    assert third.client_auth == "basic"
    assert "wonderland" not in repr(server.requests)
    raw = server.last_raw_request
    assert raw is not None
    assert raw.method == "POST" and raw.query == ""
    assert b"password=wonderland" in raw.body
    assert raw.headers["Authorization"].startswith("Basic ")


def test_basic_credentials_are_urldecoded(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(clients={"my client:1": "s%cr+t/=é"})
    resp = post(
        srv.token_url, {"grant_type": "client_credentials"}, basic("my client:1", "s%cr+t/=é")
    )
    assert resp.status == 200


def test_repeated_grant_returns_same_token_with_time_left(
    make_server: Callable[..., EmbeddedServer], clock: FakeClock
) -> None:
    srv = make_server(clock=clock)
    first = password_grant(srv).json()
    assert first["expires_in"] == 86400
    clock.now += 100
    second = password_grant(srv).json()
    assert second["access_token"] == first["access_token"]
    assert second["refresh_token"] == first["refresh_token"]
    assert second["expires_in"] == 86300


def test_scope_is_requested_scope_sorted_like_spring(server: EmbeddedServer) -> None:
    default = password_grant(server).json()
    reordered = password_grant(server, scope="write read").json()
    narrow = password_grant(server, scope="read").json()
    assert reordered["scope"] == "read write"
    assert reordered["access_token"] == default["access_token"]
    assert narrow["scope"] == "read"
    assert narrow["access_token"] != default["access_token"]


def test_client_credentials_has_no_refresh_token(server: EmbeddedServer) -> None:
    resp = post(server.token_url, {"grant_type": "client_credentials"}, basic())
    assert resp.status == 200
    body = resp.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope"]
    assert server.issued_tokens()[0].username is None


# -- refresh -----------------------------------------------------------------------


def test_refresh_reuses_refresh_token_and_invalidates_old_access(server: EmbeddedServer) -> None:
    first = password_grant(server).json()
    resp = refresh_grant(server, first["refresh_token"])
    assert resp.status == 200
    second = resp.json()
    assert list(second) == ["access_token", "token_type", "refresh_token", "expires_in", "scope"]
    assert second["refresh_token"] == first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert not server.is_valid_access_token(first["access_token"])
    assert server.is_valid_access_token(second["access_token"])
    assert password_grant(server).json()["access_token"] == second["access_token"]


def test_refresh_rotation_switch(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(rotate_refresh_tokens=True)
    old = password_grant(srv).json()["refresh_token"]
    new = refresh_grant(srv, old).json()["refresh_token"]
    assert new != old
    assert srv.is_valid_refresh_token(new) and not srv.is_valid_refresh_token(old)
    assert_error(refresh_grant(srv, old), 400, "invalid_grant", f"Invalid refresh token: {old}")


def test_refresh_scope_can_only_narrow(server: EmbeddedServer) -> None:
    token = password_grant(server).json()["refresh_token"]
    assert refresh_grant(server, token, scope="read").json()["scope"] == "read"
    assert_error(
        refresh_grant(server, token, scope="admin"),
        400,
        "invalid_scope",
        "Unable to narrow the scope of the client authentication to [admin].",
    )


def test_refresh_errors(make_server: Callable[..., EmbeddedServer], clock: FakeClock) -> None:
    srv = make_server(clock=clock, refresh_token_lifetime=1000)
    assert_error(refresh_grant(srv, "nope"), 400, "invalid_grant", "Invalid refresh token: nope")
    token = password_grant(srv).json()["refresh_token"]
    clock.now += 1000
    resp = refresh_grant(srv, token)
    description = f"Invalid refresh token (expired): {token}"
    assert_error(resp, 401, "invalid_token", description)
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}"'
    )
    # Spring removes the expired token, so the next attempt does not know it.
    assert_error(refresh_grant(srv, token), 400, "invalid_grant", f"Invalid refresh token: {token}")


def test_revoke_and_expire_refresh_hooks(server: EmbeddedServer) -> None:
    token = password_grant(server).json()["refresh_token"]
    server.expire_refresh_tokens()
    assert refresh_grant(server, token).json()["error"] == "invalid_token"
    token = password_grant(server).json()["refresh_token"]
    server.revoke_refresh_tokens()
    assert_error(
        refresh_grant(server, token), 400, "invalid_grant", f"Invalid refresh token: {token}"
    )
    server.revoke_all()
    assert server.issued_tokens() == []


def test_fake_clock_expires_access_token_but_keeps_refresh_token(
    make_server: Callable[..., EmbeddedServer], clock: FakeClock
) -> None:
    srv = make_server(clock=clock, access_token_lifetime=60)
    first = password_grant(srv).json()
    assert first["expires_in"] == 60
    clock.now += 60
    assert not srv.is_valid_access_token(first["access_token"])
    second = password_grant(srv).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] == first["refresh_token"]


# -- errors ------------------------------------------------------------------------


def test_bad_user_credentials(server: EmbeddedServer) -> None:
    assert_error(password_grant(server, password="x"), 400, "invalid_grant", "Bad credentials")
    assert_error(password_grant(server, username="bob"), 400, "invalid_grant", "Bad credentials")


@pytest.mark.parametrize(
    "headers", [basic(secret="wrong"), basic(client_id="unknown")], ids=["secret", "client"]
)
def test_bad_client_credentials(server: EmbeddedServer, headers: dict[str, str]) -> None:
    resp = post(server.token_url, {"grant_type": "client_credentials"}, headers)
    assert_error(resp, 401, "invalid_client", "Bad client credentials")
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="oauth", error="invalid_client", error_description="Bad client credentials"'
    )


def test_invalid_client_status_400(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(invalid_client_status=400)
    resp = post(srv.token_url, {"grant_type": "client_credentials"}, basic(secret="wrong"))
    assert_error(resp, 400, "invalid_client", "Bad client credentials")
    assert "WWW-Authenticate" not in resp.headers


def test_missing_client_authentication(server: EmbeddedServer) -> None:
    resp = post(server.token_url, {"grant_type": "client_credentials"})
    description = "Full authentication is required to access this resource"
    assert_error(resp, 401, "unauthorized", description)
    assert resp.headers["WWW-Authenticate"].startswith('Basic realm="oauth2/client"')


@pytest.mark.parametrize(
    ("fields", "status", "error", "description"),
    [
        ({"grant_type": "foo"}, 400, "unsupported_grant_type", "Unsupported grant type: foo"),
        ({}, 400, "invalid_request", "Missing grant type"),
        ({"grant_type": "password"}, 400, "invalid_request", "Missing parameter: username"),
        (
            {"grant_type": "password", "username": "alice"},
            400,
            "invalid_request",
            "Missing parameter: password",
        ),
        (
            {"grant_type": "refresh_token"},
            400,
            "invalid_request",
            "Missing parameter: refresh_token",
        ),
    ],
)
def test_request_errors(
    server: EmbeddedServer, fields: dict[str, str], status: int, error: str, description: str
) -> None:
    assert_error(post(server.token_url, fields, basic()), status, error, description)
    grant = fields.get("grant_type", "foo")
    assert server.counts["invalid" if grant == "foo" else grant] == 1


@pytest.mark.parametrize(
    ("body", "headers", "description"),
    [
        (
            "grant_type=password&grant_type=password",
            basic(),
            "Parameter must not be repeated: grant_type",
        ),
        ("grant_type=%zz", basic(), "Malformed percent-encoding in request body"),
        ("grant_type=%ff", basic(), "Invalid UTF-8 in request body"),
        (
            "grant_type=client_credentials",
            {"Authorization": "Basic !!!"},
            "Failed to decode basic authentication token",
        ),
        (
            "grant_type=client_credentials",
            {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
            "Invalid basic authentication token",
        ),
        (
            '{"grant_type":"password"}',
            {**basic(), "Content-Type": "application/json"},
            "Unsupported Content-Type: expected application/x-www-form-urlencoded",
        ),
    ],
    ids=["repeated", "percent", "utf8", "base64", "colon", "json"],
)
def test_malformed_requests(
    server: EmbeddedServer, body: str, headers: dict[str, str], description: str
) -> None:
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    resp = HTTP.request("POST", server.token_url, body=body, headers=all_headers)
    assert_error(resp, 400, "invalid_request", description)
    assert server.errors == []


def test_history_never_holds_values(server: EmbeddedServer) -> None:
    body = '{"grant_type":"password","password":"wonderland"}'
    headers = {**basic(), "Content-Type": "application/json"}
    assert HTTP.request("POST", server.token_url, body=body, headers=headers).status == 400
    assert password_grant(server).status == 200
    assert server.requests[0].body_params == ()
    assert server.requests[1].body_params == ("grant_type", "username", "password")
    assert "wonderland" not in repr(server.requests)


def test_parameter_repeated_across_query_and_body(server: EmbeddedServer) -> None:
    resp = post(server.token_url + "?grant_type=password", {"grant_type": "password"}, basic())
    assert_error(resp, 400, "invalid_request", "Parameter must not be repeated: grant_type")


def test_missing_content_length_and_oversized_body(server: EmbeddedServer) -> None:
    reply = raw_exchange(server, b"POST /api/oauth/token HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 411 ")
    assert b'"error_description":"Content-Length required"' in reply
    resp = HTTP.request("POST", server.token_url, body=b"a" * (1024 * 1024 + 1), headers=basic())
    assert_error(resp, 413, "invalid_request", "Request body too large")
    reply = raw_exchange(server, b"POST /api/oauth/token HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert server.errors == []


def test_chunked_body_is_accepted(server: EmbeddedServer) -> None:
    resp = HTTP.request(
        "POST",
        server.token_url,
        body=iter([b"grant_type=client", b"_credentials"]),
        headers={"Content-Type": "application/x-www-form-urlencoded", **basic()},
        chunked=True,
    )
    assert resp.status == 200


def test_allow_get_false_and_allow_post_false(make_server: Callable[..., EmbeddedServer]) -> None:
    no_get = make_server(allow_get=False)
    resp = get(no_get.token_url, {"grant_type": "client_credentials"}, basic())
    assert_error(resp, 405, "method_not_allowed", "Request method 'GET' not supported")
    assert resp.headers["Allow"] == "POST"
    assert post(no_get.token_url, {"grant_type": "client_credentials"}, basic()).status == 200
    no_post = make_server(allow_post=False)
    resp = post(no_post.token_url, {"grant_type": "client_credentials"}, basic())
    assert_error(resp, 405, "method_not_allowed", "Request method 'POST' not supported")
    assert resp.headers["Allow"] == "GET"


# -- revocation and resource -------------------------------------------------------


def test_team_server_revocation(server: EmbeddedServer) -> None:
    body = password_grant(server).json()
    url = server.revoke_url_template.format(token=body["access_token"])
    resp = HTTP.request("DELETE", url)
    assert (resp.status, resp.data) == (200, b"revoke")
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert not server.is_valid_access_token(body["access_token"])
    assert not server.is_valid_refresh_token(body["refresh_token"])
    resp = HTTP.request("DELETE", server.revoke_url_template.format(token="unknown"))
    assert (resp.status, resp.data) == (200, b"revoke")
    assert server.counts["revoke"] == 2


def test_rfc7009_revocation(server: EmbeddedServer) -> None:
    body = password_grant(server).json()
    resp = post(server.rfc7009_revoke_url, {"token": body["access_token"]}, basic())
    assert (resp.status, resp.data) == (200, b"")
    assert not server.is_valid_access_token(body["access_token"])
    assert server.is_valid_refresh_token(body["refresh_token"])
    new = refresh_grant(server, body["refresh_token"]).json()["access_token"]
    fields = {"token": body["refresh_token"], "token_type_hint": "refresh_token"}
    fields |= {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    assert post(server.rfc7009_revoke_url, fields).status == 200
    assert not server.is_valid_refresh_token(body["refresh_token"])
    assert not server.is_valid_access_token(new)
    assert post(server.rfc7009_revoke_url, {"token": "unknown"}, basic()).status == 200
    assert post(server.rfc7009_revoke_url, {"token": "x"}).status == 401


def test_resource_endpoint(make_server: Callable[..., EmbeddedServer], clock: FakeClock) -> None:
    srv = make_server(clock=clock)
    token = password_grant(srv).json()["access_token"]
    for resp in (
        get(srv.resource_url, headers={"Authorization": f"Bearer {token}"}),
        get(srv.resource_url, headers={"Authorization": f"bearer {token}"}),
        get(srv.resource_url, {"access_token": token}),
    ):
        assert resp.status == 200
        assert resp.json()["ok"] is True and resp.json()["user"] == "alice"
    resp = get(srv.resource_url, headers={"Authorization": "Bearer nope"})
    assert_error(resp, 401, "invalid_token", "Invalid access token: nope")
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="oauth", error="invalid_token", '
        'error_description="Invalid access token: nope"'
    )
    clock.now += 86400
    resp = get(srv.resource_url, {"access_token": token})
    assert_error(resp, 401, "invalid_token", f"Access token expired: {token}")
    assert get(srv.resource_url).json()["error"] == "unauthorized"
    assert srv.counts["resource"] == 6


# -- fault injection, hooks, counters ----------------------------------------------


def test_fail_next(server: EmbeddedServer) -> None:
    server.fail_next(2, headers={"Retry-After": "3"})
    for _ in range(2):
        resp = password_grant(server)
        assert resp.status == 503
        assert resp.headers["Content-Type"] == "text/html"
        assert resp.headers["Retry-After"] == "3"
        assert resp.data == b"<html><body><h1>503 Service Unavailable</h1></body></html>"
    assert password_grant(server).status == 200
    assert server.counts["password"] == 3
    assert [r.scripted for r in server.requests] == [True, True, False]


def test_script_returns_responses_verbatim(server: EmbeddedServer) -> None:
    big = b"x" * (1024 * 1024 + 10)
    server.script(
        success_response(expires_in="3600", token_type="Bearer"),
        success_response(refresh_token=OMIT, expires_in=OMIT),
        ScriptedResponse(502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
        error_response(200, "invalid_grant", "Bad credentials"),
        (200, {"Content-Type": "application/json"}, big),
    )
    first = password_grant(server)
    assert first.json()["expires_in"] == "3600" and first.json()["token_type"] == "Bearer"
    assert list(password_grant(server).json()) == ["access_token", "token_type", "scope"]
    assert password_grant(server).status == 502
    assert password_grant(server).json()["error"] == "invalid_grant"
    assert password_grant(server).data == big
    assert password_grant(server).json()["expires_in"] in (86399, 86400)
    assert json.loads(success_body(scope=None))["scope"] is None


def test_date_header_offset(make_server: Callable[..., EmbeddedServer], clock: FakeClock) -> None:
    srv = make_server(clock=clock, date_offset=3600)
    assert password_grant(srv).headers["Date"] == formatdate(T0 + 3600, usegmt=True)
    assert get(srv.url + "/nowhere").headers["Date"] == formatdate(T0 + 3600, usegmt=True)


def test_counts_and_reset(server: EmbeddedServer) -> None:
    token = password_grant(server).json()["refresh_token"]
    refresh_grant(server, token)
    post(server.token_url, {"grant_type": "client_credentials"}, basic())
    post(server.token_url, {"grant_type": "bogus"}, basic())
    counts = server.counts
    assert counts["token"] == 4
    assert (counts["password"], counts["refresh_token"], counts["client_credentials"]) == (1, 1, 1)
    assert counts["invalid"] == 1 and counts["revoke"] == 0
    assert server.in_flight_max == 1
    server.reset_counts()
    assert server.counts["token"] == 0 and server.requests == [] and server.in_flight_max == 0


def test_in_flight_max_sees_concurrency(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(latency=0.15)
    threads = [
        threading.Thread(
            target=post, args=(srv.token_url, {"grant_type": "client_credentials"}, basic())
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert srv.in_flight_max == 3
    assert srv.counts["client_credentials"] == 3


# -- transport ---------------------------------------------------------------------


def test_keep_alive_and_quiet(server: EmbeddedServer, capfd: pytest.CaptureFixture[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    query = urlencode(
        {"grant_type": "password", "username": "alice", "password": "wonderland"}
        | {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    )
    for _ in range(3):
        conn.request("GET", "/api/oauth/token?" + query)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length") is not None
        resp.read()
    sock = conn.sock
    conn.request("GET", "/api/oauth/token?grant_type=password%zz")
    conn.getresponse().read()
    assert conn.sock is sock  # still the same connection
    conn.close()
    out, err = capfd.readouterr()
    assert "wonderland" not in out + err and err == ""


def test_lifecycle(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = EmbeddedServer(ServerConfig(), access_token_lifetime=5)
    with pytest.raises(RuntimeError):
        _ = srv.url
    with srv:
        assert srv.token_url == f"http://127.0.0.1:{srv.port}/api/oauth/token"
        assert srv.revoke_url_template.endswith("/api/revoketoken/{token}")
        assert srv.rfc7009_revoke_url.endswith("/oauth/revoke")
        assert srv.resource_url.endswith("/api/resource")
        assert password_grant(srv).json()["expires_in"] in (4, 5)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/api/resource")
        conn.getresponse().read()
    srv.stop()  # idempotent
    with pytest.raises(OSError):  # idle keep-alive connection was cut
        conn.request("GET", "/api/resource")
        conn.getresponse()
    with pytest.raises(TypeError):
        EmbeddedServer(no_such_option=1)
    with pytest.raises(ValueError):
        EmbeddedServer(host="0.0.0.0")
    assert make_server().default_account == ("alice", "wonderland")
    assert make_server().default_client.client_id == DEFAULT_CLIENT_ID


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https(host: str) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with EmbeddedServer(ssl_context=server_context, host=host) as srv:
        assert srv.url == f"https://{host}:{srv.port}"
        pool = urllib3.PoolManager(ssl_context=client_context, retries=False, timeout=5)
        resp = pool.request(
            "POST",
            srv.token_url,
            body="grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded", **basic()},
        )
        assert resp.status == 200
        assert srv.is_valid_access_token(resp.json()["access_token"])


def test_pytest_plugin_fixtures(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Load the plugin by module name with autoload off, whether or not the
    # ``tokenflow`` entry point is installed, so it is never registered twice.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
        from urllib.request import urlopen
        import pytest

        def test_default(tokenflow_server):
            assert tokenflow_server.token_url.startswith("http://127.0.0.1:")

        def test_factory(tokenflow_server_factory):
            srv = tokenflow_server_factory(allow_get=False)
            assert srv.config.allow_get is False
            with pytest.raises(Exception):
                urlopen(srv.token_url + "?grant_type=password")
        """
    )
    result = pytester.runpytest("-p", "tokenflow.testing.pytest_plugin")
    result.assert_outcomes(passed=2)
