"""Interactive sign-in on the embedded server, over real HTTP: authorization code + PKCE,
loopback redirects, the device grant, and discovery metadata.

The test's HTTP client plays the browser (redirects are read, never followed), and the
test hooks play the user.  PKCE challenges are computed here with hashlib, independently
of the server's code.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import urllib3

from tokenflow.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PUBLIC_CLIENT_ID,
    OMIT,
    EmbeddedServer,
    HeadlessBrowser,
    ScriptedResponse,
)

HTTP = urllib3.PoolManager(retries=False, timeout=10)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REDIRECT = "http://127.0.0.1:53124/callback"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as srv:
        yield srv
    assert srv.errors == []


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
        assert srv.errors == []


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize(srv: EmbeddedServer, url: str | None = None, **params: str | None) -> urllib3.BaseHTTPResponse:
    """GET the authorization endpoint like a browser would; a None value drops a parameter."""
    query = {
        "response_type": "code",
        "client_id": DEFAULT_PUBLIC_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "state": "st-123",
        "scope": "read",
        "code_challenge": challenge_of("v" * 43),
        "code_challenge_method": "S256",
    }
    query.update(params)  # type: ignore[arg-type]
    clean = {k: v for k, v in query.items() if v is not None}
    return HTTP.request("GET", (url or srv.authorize_url) + "?" + urlencode(clean), redirect=False)


def redirected(resp: urllib3.BaseHTTPResponse, redirect_uri: str = REDIRECT) -> dict[str, str]:
    """The parameters of a 302 to ``redirect_uri``."""
    assert resp.status == 302, resp.data
    location = resp.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def post(url: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return HTTP.request("POST", url, body=urlencode(fields), headers=all_headers)


def exchange(
    srv: EmbeddedServer, code: str, verifier: str | None = "v" * 43, **extra: str
) -> urllib3.BaseHTTPResponse:
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": DEFAULT_PUBLIC_CLIENT_ID,
    }
    if verifier is not None:
        fields["code_verifier"] = verifier
    fields.update(extra)
    return post(srv.token_url, fields)


def assert_oauth_error(resp: urllib3.BaseHTTPResponse, error: str, description: str | None = None) -> None:
    assert resp.status == 400, resp.data
    body = resp.json()
    assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description


# -- authorization code + PKCE ------------------------------------------------------------


def test_public_client_code_flow_with_pkce(server: EmbeddedServer) -> None:
    verifier = secrets.token_urlsafe(32)
    params = redirected(authorize(server, code_challenge=challenge_of(verifier)))
    assert set(params) == {"code", "state"} and params["state"] == "st-123"
    resp = exchange(server, params["code"], verifier)
    assert resp.status == 200, resp.data
    body = resp.json()
    assert body["scope"] == "read" and body["token_type"] == "bearer" and body["refresh_token"]
    assert server.is_valid_access_token(body["access_token"])
    assert server.issued_tokens()[0].username == "alice"
    record = server.requests[-1]
    assert record.grant_type == "authorization_code" and record.client_auth == "body"
    assert "client_secret" not in record.body_params
    assert verifier not in repr(server.requests) and params["code"] not in repr(server.requests)
    counts = server.counts
    assert (counts["authorize"], counts["authorization_code"], counts["token"]) == (1, 1, 1)
    # The refresh token it came with works for the public client.
    refreshed = post(
        server.token_url,
        {
            "grant_type": "refresh_token",
            "client_id": DEFAULT_PUBLIC_CLIENT_ID,
            "refresh_token": body["refresh_token"],
        },
    )
    assert refreshed.status == 200 and refreshed.json()["access_token"] != body["access_token"]
    assert server.counts["refresh_token"] == 1


def test_code_reuse_is_refused_and_revokes_what_it_got(server: EmbeddedServer) -> None:
    code = redirected(authorize(server))["code"]
    first = exchange(server, code).json()
    assert server.is_valid_access_token(first["access_token"])
    assert_oauth_error(exchange(server, code), "invalid_grant", "Authorization code was already used")
    assert not server.is_valid_access_token(first["access_token"])
    assert not server.is_valid_refresh_token(first["refresh_token"])
    unknown = exchange(server, "made-up")
    assert_oauth_error(unknown, "invalid_grant", "Invalid authorization code: made-up")  # Spring echoes it


def test_wrong_verifier_is_refused_and_burns_the_code(server: EmbeddedServer) -> None:
    code = redirected(authorize(server))["code"]
    assert_oauth_error(exchange(server, code, "w" * 43), "invalid_grant", "PKCE verification failed")
    assert_oauth_error(exchange(server, code), "invalid_grant", "Authorization code was already used")
    code = redirected(authorize(server))["code"]
    assert_oauth_error(exchange(server, code, None), "invalid_request", "Missing parameter: code_verifier")
    code = redirected(authorize(server))["code"]
    assert_oauth_error(exchange(server, code, "short"), "invalid_grant", "Malformed code_verifier")
    assert server.issued_tokens() == []


def test_redirect_uri_and_client_must_match_the_authorization(server: EmbeddedServer) -> None:
    code = redirected(authorize(server))["code"]
    other_port = exchange(server, code, redirect_uri="http://127.0.0.1:53125/callback")
    assert_oauth_error(other_port, "invalid_grant", "Redirect URI mismatch.")
    code = redirected(authorize(server))["code"]
    missing = post(
        server.token_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": "v" * 43,
            "client_id": DEFAULT_PUBLIC_CLIENT_ID,
        },
    )
    assert_oauth_error(missing, "invalid_grant", "Redirect URI mismatch.")
    code = redirected(authorize(server))["code"]
    stolen = exchange(server, code, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    assert_oauth_error(stolen, "invalid_grant", "Client ID mismatch")


def test_codes_expire(make_server: Callable[..., EmbeddedServer], clock: FakeClock) -> None:
    srv = make_server(clock=clock, authorization_code_lifetime=30)
    code = redirected(authorize(srv))["code"]
    clock.now += 30
    assert_oauth_error(exchange(srv, code), "invalid_grant", "Authorization code expired")
    code = redirected(authorize(srv))["code"]
    srv.expire_authorization_codes()
    assert_oauth_error(exchange(srv, code), "invalid_grant", "Authorization code expired")


def test_confidential_client_in_the_teamserver_dialect(server: EmbeddedServer) -> None:
    """Team Server's /api/oauth/authorize, then a GET token request with everything in the query."""
    params = redirected(
        authorize(
            server,
            server.teamserver_authorize_url,
            client_id=DEFAULT_CLIENT_ID,
            code_challenge=None,
            code_challenge_method=None,
        )
    )
    query = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    resp = HTTP.request("GET", server.token_url + "?" + urlencode(query))
    assert resp.status == 200, resp.data
    record = server.requests[-1]
    assert (record.method, record.client_auth, record.grant_type) == ("GET", "query", "authorization_code")
    # A verifier for a code issued without a challenge is a downgrade attempt.
    code = redirected(
        authorize(server, client_id=DEFAULT_CLIENT_ID, code_challenge=None, code_challenge_method=None)
    )["code"]
    resp = HTTP.request(
        "GET", server.token_url + "?" + urlencode({**query, "code": code, "code_verifier": "v" * 43})
    )
    assert_oauth_error(resp, "invalid_grant")


def test_confidential_client_with_pkce_and_basic_auth(server: EmbeddedServer) -> None:
    code = redirected(authorize(server, client_id=DEFAULT_CLIENT_ID))["code"]
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": "v" * 43,
    }
    resp = post(server.token_url, fields, {"Authorization": "Basic " + basic})
    assert resp.status == 200 and server.requests[-1].client_auth == "basic"


def test_public_client_rules(server: EmbeddedServer) -> None:
    secret_sent = exchange(server, "x", client_secret="anything")
    assert secret_sent.status == 401 and secret_sent.json()["error"] == "invalid_client"
    cc = post(server.token_url, {"grant_type": "client_credentials", "client_id": DEFAULT_PUBLIC_CLIENT_ID})
    assert_oauth_error(cc, "unauthorized_client")


# -- authorization request validation --------------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/callback",
        "http://127.0.0.1/callback",
        "http://localhost:40000/callback",
        "http://[::1]:40001/callback",
    ],
)
def test_loopback_redirect_matches_any_port(server: EmbeddedServer, redirect_uri: str) -> None:
    params = redirected(authorize(server, redirect_uri=redirect_uri), redirect_uri)
    assert params["state"] == "st-123"
    resp = exchange(server, params["code"], redirect_uri=redirect_uri)
    assert resp.status == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.1:5000/other",
        "http://127.0.0.1:5000/callback/",
        "http://127.0.0.1:5000/callback?x=1",
        "http://127.0.0.1:5000/callback#top",
        "https://127.0.0.1:5000/callback",
        "http://127.0.0.2:5000/callback",
        "http://evil.example:5000/callback",
        "http://evil.example/callback",
        "http://user@127.0.0.1:5000/callback",
        "http://127.0.0.1:5000\\@evil.example/callback",
        None,
    ],
)
def test_unregistered_redirect_is_refused_without_redirecting(
    server: EmbeddedServer, redirect_uri: str | None
) -> None:
    resp = authorize(server, redirect_uri=redirect_uri)
    assert resp.status == 400 and "Location" not in resp.headers
    assert resp.json()["error"] == "invalid_request"


def test_non_loopback_redirects_match_exactly(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(redirect_uris=("https://app.example/cb",))
    assert redirected(authorize(srv, redirect_uri="https://app.example/cb"), "https://app.example/cb")["code"]
    assert authorize(srv, redirect_uri="https://app.example:8443/cb").status == 400
    assert authorize(srv, redirect_uri=REDIRECT).status == 400  # loopback not registered here


def test_unknown_client_is_refused_without_redirecting(server: EmbeddedServer) -> None:
    for client_id in ("nobody", None):
        resp = authorize(server, client_id=client_id)
        assert resp.status == 400 and "Location" not in resp.headers


@pytest.mark.parametrize(
    ("params", "error", "description"),
    [
        (
            {"code_challenge_method": "plain"},
            "invalid_request",
            "Transform algorithm not supported: only S256 is accepted",
        ),
        (
            {"code_challenge_method": None},
            "invalid_request",
            "Transform algorithm not supported: only S256 is accepted",
        ),
        (
            {"code_challenge": None, "code_challenge_method": None},
            "invalid_request",
            "PKCE code_challenge is required for public clients",
        ),
        ({"code_challenge": "tooshort"}, "invalid_request", "Malformed code_challenge"),
        ({"response_type": "token"}, "unsupported_response_type", "Unsupported response type: token"),
        ({"response_type": None}, "invalid_request", "Missing parameter: response_type"),
    ],
)
def test_bad_requests_are_redirected_with_an_error(
    server: EmbeddedServer, params: dict[str, str | None], error: str, description: str
) -> None:
    got = redirected(authorize(server, **params))
    assert got == {"error": error, "error_description": description, "state": "st-123"}


def test_state_is_required_unless_configured(make_server: Callable[..., EmbeddedServer]) -> None:
    strict = make_server()
    assert redirected(authorize(strict, state=None)) == {
        "error": "invalid_request",
        "error_description": "Missing parameter: state",
    }
    lenient = make_server(require_state=False)
    assert set(redirected(authorize(lenient, state=None))) == {"code"}
    odd = "a b&c=d/é"
    assert redirected(authorize(lenient, state=odd))["state"] == odd


def test_pkce_can_be_required_of_confidential_clients(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(require_pkce=True)
    got = redirected(
        authorize(srv, client_id=DEFAULT_CLIENT_ID, code_challenge=None, code_challenge_method=None)
    )
    assert got["error"] == "invalid_request"


def test_iss_in_authorization_responses(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(send_iss=True)
    assert redirected(authorize(srv))["iss"] == srv.url
    assert redirected(authorize(srv, response_type="token"))["iss"] == srv.url
    tenant = make_server(send_iss=True, issuer="{url}/realms/corp")
    assert redirected(authorize(tenant))["iss"] == tenant.url + "/realms/corp"
    assert "iss" not in redirected(authorize(make_server()))


def test_parked_request_waits_for_approval(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(auto_approve=False)
    answers: dict[str, urllib3.BaseHTTPResponse] = {}
    browser = threading.Thread(target=lambda: answers.update(first=authorize(srv, state="one")))
    browser.start()
    approved = srv.approve_authorization("one", user="bob")  # waits for the request to arrive
    browser.join(timeout=10)
    assert approved.state == "one" and approved.client_id == DEFAULT_PUBLIC_CLIENT_ID
    assert approved.redirect_uri == REDIRECT and approved.scope == "read"
    code = redirected(answers["first"])["code"]
    assert exchange(srv, code).status == 200
    assert srv.issued_tokens()[0].username == "bob"
    assert srv.pending_authorizations() == []


def test_parked_request_denied(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(auto_approve=False)
    answers: dict[str, urllib3.BaseHTTPResponse] = {}
    browser = threading.Thread(target=lambda: answers.update(resp=authorize(srv)))
    browser.start()
    srv.deny_authorization(description="Alice said no")
    browser.join(timeout=10)
    assert redirected(answers["resp"]) == {
        "error": "access_denied",
        "error_description": "Alice said no",
        "state": "st-123",
    }
    with pytest.raises(TimeoutError):
        srv.approve_authorization(timeout=0.05)


def test_parked_request_times_out_as_denied(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(auto_approve=False, authorization_wait=0.1)
    got = redirected(authorize(srv))
    assert got["error"] == "access_denied"
    assert srv.pending_authorizations() == []


def test_stopping_releases_parked_requests() -> None:
    srv = EmbeddedServer(auto_approve=False).start()
    answers: dict[str, urllib3.BaseHTTPResponse] = {}
    browser = threading.Thread(target=lambda: answers.update(resp=authorize(srv)))
    browser.start()
    for _ in range(500):
        if srv.pending_authorizations():
            break
        threading.Event().wait(0.01)
    srv.stop()
    browser.join(timeout=10)
    assert not browser.is_alive()
    assert redirected(answers["resp"])["error"] == "access_denied"


# -- device authorization grant -------------------------------------------------------------


def device_start(srv: EmbeddedServer, **fields: str) -> dict[str, Any]:
    resp = post(
        srv.device_authorization_url, {"client_id": DEFAULT_PUBLIC_CLIENT_ID, "scope": "read", **fields}
    )
    assert resp.status == 200, resp.data
    return dict(resp.json())


def poll(srv: EmbeddedServer, device_code: str, **fields: str) -> urllib3.BaseHTTPResponse:
    body = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": DEFAULT_PUBLIC_CLIENT_ID}
    return post(srv.token_url, {**body, **fields})


def test_device_flow_pending_then_approved(
    make_server: Callable[..., EmbeddedServer], clock: FakeClock
) -> None:
    srv = make_server(clock=clock, rotate_refresh_tokens=True)
    started = device_start(srv)
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    user_code = started["user_code"]
    assert len(user_code) == 9 and user_code[4] == "-" and user_code.replace("-", "").isalpha()
    assert started["verification_uri"] == srv.verification_url
    assert started["verification_uri_complete"] == f"{srv.verification_url}?user_code={user_code}"
    assert (started["expires_in"], started["interval"]) == (600, 5)
    assert_oauth_error(poll(srv, started["device_code"]), "authorization_pending")
    assert srv.device_requests()[0].status == "pending"
    approved = srv.approve_device(user_code.lower().replace("-", " "))
    assert approved.status == "approved" and approved.scope == "read"
    clock.now += 5
    resp = poll(srv, started["device_code"])
    assert resp.status == 200, resp.data
    token = resp.json()
    assert token["refresh_token"] and srv.is_valid_access_token(token["access_token"])
    clock.now += 5
    assert_oauth_error(poll(srv, started["device_code"]), "invalid_grant", "Device code was already used")
    counts = srv.counts
    assert (counts["device_authorization"], counts["device_code"], counts["token"]) == (1, 3, 3)
    assert srv.requests[-1].grant_type == DEVICE_GRANT
    # Its refresh token refreshes, and rotates as configured.
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"],
        "client_id": DEFAULT_PUBLIC_CLIENT_ID,
    }
    refreshed = post(srv.token_url, fields).json()
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert not srv.is_valid_refresh_token(token["refresh_token"])


def test_device_slow_down_adds_five_seconds(
    make_server: Callable[..., EmbeddedServer], clock: FakeClock
) -> None:
    srv = make_server(clock=clock)
    code = device_start(srv)["device_code"]
    assert_oauth_error(poll(srv, code), "authorization_pending")
    assert_oauth_error(poll(srv, code), "slow_down")
    assert srv.device_requests()[0].interval == 10
    clock.now += 5  # the old interval is no longer enough
    assert_oauth_error(poll(srv, code), "slow_down")
    assert srv.device_requests()[0].interval == 15
    clock.now += 15
    assert_oauth_error(poll(srv, code), "authorization_pending")
    no_limit = make_server(clock=clock, device_poll_interval=0)
    code = device_start(no_limit)["device_code"]
    for _ in range(3):
        assert_oauth_error(poll(no_limit, code), "authorization_pending")


def test_device_denied_and_expired(make_server: Callable[..., EmbeddedServer], clock: FakeClock) -> None:
    srv = make_server(clock=clock, device_code_lifetime=100)
    denied = device_start(srv)
    srv.deny_device(denied["user_code"], description="not me")
    assert_oauth_error(poll(srv, denied["device_code"]), "access_denied", "not me")
    expiring = device_start(srv)
    assert device_start(srv)["expires_in"] == 100
    clock.now += 100
    assert_oauth_error(poll(srv, expiring["device_code"]), "expired_token")
    assert [r.status for r in srv.device_requests()] == ["denied", "expired", "expired"]
    with pytest.raises(TimeoutError):
        srv.approve_device(expiring["user_code"], timeout=0.05)
    fresh = device_start(srv)
    srv.expire_device(fresh["user_code"])
    assert_oauth_error(poll(srv, fresh["device_code"]), "expired_token")


def test_device_poll_script(server: EmbeddedServer) -> None:
    code = device_start(server)["device_code"]
    server.script_device_polls(
        "slow_down", 429, ScriptedResponse(200, {"Content-Type": "text/plain"}, b"odd")
    )
    assert_oauth_error(poll(server, code), "slow_down", "Scripted slow_down")
    password = post(
        server.token_url,
        {
            "grant_type": "password",
            "username": "alice",
            "password": "wonderland",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )
    assert password.status == 200  # other grants are not scripted
    limited = poll(server, code)
    assert limited.status == 429 and limited.headers["Retry-After"] == "1"
    assert poll(server, code).data == b"odd"
    assert [r.scripted for r in server.requests[-4:]] == [True, False, True, True]


def test_device_errors(server: EmbeddedServer) -> None:
    assert_oauth_error(poll(server, "nope"), "invalid_grant", "Invalid device code")
    assert_oauth_error(
        post(server.token_url, {"grant_type": DEVICE_GRANT, "client_id": DEFAULT_PUBLIC_CLIENT_ID}),
        "invalid_request",
        "Missing parameter: device_code",
    )
    code = device_start(server)["device_code"]
    other = poll(server, code, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    assert_oauth_error(other, "invalid_grant", "Device code was issued to another client")
    assert HTTP.request("GET", server.device_authorization_url).status == 405
    assert post(server.device_authorization_url, {}).status == 401
    assert post(server.device_authorization_url, {"client_id": "nobody"}).status == 401


def test_device_flow_in_the_teamserver_dialect(
    make_server: Callable[..., EmbeddedServer], clock: FakeClock
) -> None:
    srv = make_server(clock=clock)
    started = device_start(srv, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    srv.approve_device()  # the oldest pending one
    query = {
        "grant_type": DEVICE_GRANT,
        "device_code": started["device_code"],
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    resp = HTTP.request("GET", srv.token_url + "?" + urlencode(query))
    assert resp.status == 200, resp.data
    assert srv.requests[-1].client_auth == "query"


def test_verification_page(server: EmbeddedServer) -> None:
    hostile = '"><script>alert(1)</script>'
    page = HTTP.request("GET", server.verification_url + "?" + urlencode({"user_code": hostile}))
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert b"<script>" not in page.data and b"&lt;script&gt;" in page.data
    started = device_start(server)
    assert post(server.verification_url, {"user_code": "BBBB-BBBB"}).status == 400
    done = post(server.verification_url, {"user_code": started["user_code"]})
    assert done.status == 200 and b"Approved" in done.data
    assert server.device_requests()[0].status == "approved"
    assert poll(server, started["device_code"]).status == 200
    denied = device_start(server)
    assert post(server.verification_url, {"user_code": denied["user_code"], "action": "deny"}).status == 200
    assert_oauth_error(poll(server, denied["device_code"]), "access_denied")
    assert server.counts["device_verification"] == 4


# -- discovery metadata ---------------------------------------------------------------------


def test_metadata_documents(server: EmbeddedServer) -> None:
    for url in (server.metadata_url, server.openid_configuration_url):
        resp = HTTP.request("GET", url)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
        doc = resp.json()
        assert doc["issuer"] == server.url == server.issuer
        assert doc["token_endpoint"] == server.token_url
        assert doc["authorization_endpoint"] == server.authorize_url
        assert doc["device_authorization_endpoint"] == server.device_authorization_url
        assert doc["revocation_endpoint"] == server.rfc7009_revoke_url
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert {"client_secret_basic", "client_secret_post"} <= set(
            doc["token_endpoint_auth_methods_supported"]
        )
        assert {"authorization_code", DEVICE_GRANT, "refresh_token"} <= set(doc["grant_types_supported"])
    assert server.metadata_url == server.url + "/.well-known/oauth-authorization-server"
    assert server.counts["metadata"] == 2


def test_metadata_for_an_issuer_with_a_path(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(issuer="{url}/realms/corp")
    assert srv.metadata_url == srv.url + "/.well-known/oauth-authorization-server/realms/corp"
    assert srv.openid_configuration_url == srv.url + "/realms/corp/.well-known/openid-configuration"
    for url in (srv.metadata_url, srv.openid_configuration_url):
        assert HTTP.request("GET", url).json()["issuer"] == srv.url + "/realms/corp"
    assert HTTP.request("GET", srv.url + "/.well-known/oauth-authorization-server").status == 404


def test_metadata_wrong_issuer_fallback_and_overrides(make_server: Callable[..., EmbeddedServer]) -> None:
    wrong = make_server(issuer="https://wrong.example")
    assert HTTP.request("GET", wrong.metadata_url).json()["issuer"] == "https://wrong.example"
    oidc_only = make_server(metadata_documents=("openid-configuration",))
    assert HTTP.request("GET", oidc_only.metadata_url).status == 404
    assert HTTP.request("GET", oidc_only.openid_configuration_url).status == 200
    custom = make_server(
        metadata_overrides={
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "device_authorization_endpoint": OMIT,
        }
    )
    doc = HTTP.request("GET", custom.metadata_url).json()
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_post"]
    assert "device_authorization_endpoint" not in doc
    assert post(custom.metadata_url, {}).status == 405


# -- the headless browser -------------------------------------------------------------------


class CallbackListener:
    """The client side of a loopback redirect: records the query of each callback."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
                body = b"signed in"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}/callback"
        threading.Thread(target=self.httpd.handle_request, daemon=True).start()

    def close(self) -> None:
        self.httpd.server_close()


def test_headless_browser_lands_on_the_client_callback(server: EmbeddedServer) -> None:
    listener = CallbackListener()
    try:
        browser = HeadlessBrowser(timeout=10)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": DEFAULT_PUBLIC_CLIENT_ID,
                "redirect_uri": listener.uri,
                "state": "s1",
                "code_challenge": challenge_of("v" * 43),
                "code_challenge_method": "S256",
            }
        )
        assert browser.open(server.authorize_url + "?" + query) is True
        (visit,) = browser.wait(timeout=10)
        assert (visit.status, visit.body, visit.error) == (200, b"signed in", None)
        assert visit.final_url is not None and visit.final_url.startswith(listener.uri + "?code=")
        (callback,) = listener.received
        assert callback["state"] == "s1"
        resp = exchange(server, callback["code"], redirect_uri=listener.uri)
        assert resp.status == 200
    finally:
        listener.close()


def test_headless_browser_stays_on_loopback(make_server: Callable[..., EmbeddedServer]) -> None:
    srv = make_server(redirect_uris=("https://app.example/cb",))
    browser = HeadlessBrowser(timeout=10)
    assert browser.open("https://example.com/authorize") is False
    assert browser.open(authorize_url_for(srv, "https://app.example/cb")) is True
    first, second = browser.wait(timeout=10)
    assert first.error == "not a loopback URL"
    assert second.status is None and second.error is not None and "off loopback" in second.error


def authorize_url_for(srv: EmbeddedServer, redirect_uri: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": DEFAULT_PUBLIC_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "state": "s",
            "code_challenge": challenge_of("v" * 43),
            "code_challenge_method": "S256",
        }
    )
    return srv.authorize_url + "?" + query
