"""The ``authorization_code`` grant (PKCE, loopback redirect) against oauthlib's implementation.

The independent server's authorization endpoint auto-approves and redirects to the loopback
``redirect_uri``; the test's :class:`Browser` follows the URL the grant shows, over real HTTP.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
from grant_harness import Browser, RealContext, with_param
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    PUBLIC_CLIENT,
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

from tokenflow.builtins.authcode import AuthorizationCodeGrant, pkce_pair
from tokenflow.builtins.loopback import parse_redirect_uris
from tokenflow.errors import CredentialError, ReauthenticationRequired, TokenRequestError


@pytest.fixture(autouse=True)
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLOW_NO_BROWSER", "1")  # tests never start a real browser


def context(server: IndependentServer, browser: Browser | None, **kw: object) -> RealContext:
    endpoints = {"token": server.token_url, "authorization": server.authorize_url}
    return RealContext(endpoints, kw.pop("client_id", PUBLIC_CLIENT),  # type: ignore[arg-type]
                       on_notify=browser, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def occupied() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_pkce_pair_is_s256_of_a_32_byte_verifier() -> None:
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert len(verifier) == 43 and len(base64.urlsafe_b64decode(verifier + "=")) == 32
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge == expected.decode()
    assert pkce_pair()[0] != verifier


def test_public_client_signs_in_through_the_printed_url(independent_server: IndependentServer) -> None:
    browser = Browser()
    ctx = context(independent_server, browser, scope="read")
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    assert independent_server.access_token_user(token.access_token) == independent_server.user
    assert token.refresh_token
    # the URL was shown on a line of its own and is the one the browser followed
    [notice] = ctx.notices
    assert notice.url is not None and notice.url.startswith(independent_server.authorize_url + "?")
    assert "code_challenge_method=S256" in notice.url and "scope=read" in notice.url
    assert browser.visits[0].url == notice.url
    # the exchange carried the verifier and the redirect URI with the real port, client_id in the body
    [exchange] = [r for r in independent_server.requests if r.grant_type == "authorization_code"]
    assert exchange.status == 200 and exchange.client_auth == "none"
    assert {"code", "redirect_uri", "code_verifier", "client_id"} <= set(exchange.param_names)
    sent = ctx.token_requests[0]["redirect_uri"]
    assert sent.startswith("http://127.0.0.1:") and not sent.startswith("http://127.0.0.1:0/")
    callback = browser.visits[-1]
    assert callback.status == 200 and callback.headers["Cache-Control"] == "no-store"
    assert callback.headers["Referrer-Policy"] == "no-referrer"
    # the port is closed at once
    port = int(sent.split(":")[2].split("/")[0])
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_a_confidential_client_authenticates_at_the_exchange(independent_server: IndependentServer) -> None:
    browser = Browser()
    ctx = context(independent_server, browser, client_id=independent_server.client_id,
                  client_secret=independent_server.client_secret)
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    [exchange] = [r for r in independent_server.requests if r.grant_type == "authorization_code"]
    assert exchange.client_auth == "basic"


def test_forged_callbacks_are_refused_and_the_real_one_still_completes(
    independent_server: IndependentServer,
) -> None:
    def forge(callback: str) -> list[str]:
        return [
            with_param(callback, "state", "forged-state-value"),
            with_param(callback, "state", None),
            with_param(callback, "state", ""),
            callback.replace("/callback", "/elsewhere"),
            with_param(with_param(callback, "state", "x"), "error", "access_denied"),
        ]

    browser = Browser(tamper=forge)
    token = AuthorizationCodeGrant().obtain(context(independent_server, browser))
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    statuses = [visit.status for visit in browser.visits[1:]]
    assert statuses == [400, 400, 400, 404, 400, 200]
    for visit in browser.visits[1:]:
        assert visit.headers["Cache-Control"] == "no-store"
        assert visit.headers["Referrer-Policy"] == "no-referrer"
    assert "wrong state" in browser.visits[1].body


def test_access_denied_ends_the_flow_with_the_servers_description(
    independent_server: IndependentServer,
) -> None:
    independent_server.deny_authorization = True
    browser = Browser()
    with pytest.raises(TokenRequestError) as caught:
        AuthorizationCodeGrant().obtain(context(independent_server, browser))
    browser.join()
    assert caught.value.error == "access_denied"
    assert "The user said no <b>loudly</b>" in str(caught.value)
    page = browser.visits[-1]
    assert page.status == 400 and "&lt;b&gt;loudly&lt;/b&gt;" in page.body and "<b>" not in page.body
    assert independent_server.counts["authorization_code"] == 0


def test_a_wrong_pkce_verifier_is_refused_by_the_server(independent_server: IndependentServer) -> None:
    browser = Browser()
    ctx = context(independent_server, browser)
    real = ctx.request_token

    def wrong_verifier(params: dict[str, str]) -> object:
        return real({**params, "code_verifier": pkce_pair()[0]})

    ctx.request_token = wrong_verifier  # type: ignore[method-assign,assignment]
    with pytest.raises(TokenRequestError) as caught:
        AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert caught.value.error == "invalid_grant"


def test_the_callbacks_issuer_must_be_the_servers(independent_server: IndependentServer) -> None:
    independent_server.callback_iss = "https://evil.example"
    browser = Browser()
    with pytest.raises(TokenRequestError, match=r"evil\.example"):
        AuthorizationCodeGrant().obtain(
            context(independent_server, browser, issuer=independent_server.issuer))
    browser.join()
    assert independent_server.counts["authorization_code"] == 0

    independent_server.callback_iss = independent_server.issuer
    browser = Browser()
    token = AuthorizationCodeGrant().obtain(
        context(independent_server, browser, issuer=independent_server.issuer))
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)


def test_a_taken_port_moves_on_to_the_next_one(independent_server: IndependentServer, occupied: int) -> None:
    spare = free_port()
    browser = Browser()
    ctx = context(independent_server, browser, options={"redirect_uri": [
        f"http://127.0.0.1:{occupied}/callback", f"http://127.0.0.1:{spare}/callback"]})
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    assert ctx.token_requests[0]["redirect_uri"] == f"http://127.0.0.1:{spare}/callback"


def test_all_ports_taken_is_a_clear_error(independent_server: IndependentServer, occupied: int) -> None:
    ctx = context(independent_server, None, options={"redirect_uri": f"http://127.0.0.1:{occupied}/callback"})
    with pytest.raises(CredentialError, match=rf"127\.0\.0\.1:{occupied}/callback \(in use\)"):
        AuthorizationCodeGrant().obtain(ctx)
    assert independent_server.counts["total"] == 0


def test_localhost_is_allowed_when_written(independent_server: IndependentServer) -> None:
    browser = Browser()
    ctx = context(independent_server, browser, options={"redirect_uri": "http://localhost:0/callback"})
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    assert ctx.token_requests[0]["redirect_uri"].startswith("http://localhost:")


@pytest.mark.parametrize("uri", ["https://127.0.0.1/callback", "http://example.com/callback",
                                 "http://127.0.0.1:99999/cb", "http://127.0.0.1/cb?x=1",
                                 "http://user@127.0.0.1/cb"])
def test_redirect_uris_that_cannot_be_served_here_are_refused(uri: str) -> None:
    with pytest.raises(CredentialError, match="redirect_uri"):
        parse_redirect_uris(uri)


def test_no_callback_before_the_timeout_is_a_clear_error(independent_server: IndependentServer) -> None:
    ctx = context(independent_server, Browser(follow=False), options={"login_timeout": 0.5})
    with pytest.raises(CredentialError, match=r"within [01] s"):
        AuthorizationCodeGrant().obtain(ctx)


def test_without_a_person_it_asks_for_tokenflow_login(independent_server: IndependentServer) -> None:
    ctx = context(independent_server, None, interactive=False)
    with pytest.raises(ReauthenticationRequired, match="tokenflow login dev"):
        AuthorizationCodeGrant().obtain(ctx)
    assert independent_server.counts["total"] == 0


def test_no_code_verifier_or_state_in_debug_logs(
    independent_server: IndependentServer, caplog: pytest.LogCaptureFixture,
) -> None:
    from tokenflow.redact import install_log_filters

    install_log_filters()
    caplog.set_level(logging.DEBUG)
    browser = Browser(tamper=lambda cb: [with_param(cb, "state", "nope-nope")])
    ctx = context(independent_server, browser)
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    sent = ctx.token_requests[0]
    state = dict(parse_qsl(urlsplit(ctx.notices[0].url or "").query))["state"]
    # what this process logged on tokenflow's side (the server's own oauthlib log is not ours)
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("oauthlib"))
    assert "GET /callback" not in text and "POST /oauth2/token" in text, "DEBUG logging was on"
    for secret in (sent["code"], sent["code_verifier"], state, token.access_token, token.refresh_token):
        assert secret and secret not in text


def test_authorize_params_are_added_but_cannot_replace_the_flows_own(
    independent_server: IndependentServer,
) -> None:
    import tokenflow
    from tokenflow.errors import ConfigError

    browser = Browser()
    ctx = context(independent_server, browser, options={"authorize_params": {"prompt": "login"}})
    AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert "&prompt=login&" in (ctx.notices[0].url or "")

    mapping = {
        "version": 1, "servers": {"s": {"token_url": independent_server.token_url,
                                        "authorization_url": independent_server.authorize_url}},
        "clients": {"c": {"client_id": PUBLIC_CLIENT}},
        "profiles": {"p": {"server": "s", "client": "c", "grant": "authorization_code",
                           "authorize_params": {"state": "fixed"}}},
    }
    with pytest.raises(ConfigError, match="authorize_params"):
        tokenflow.config_from_mapping(mapping)


def test_a_fixed_port_can_be_used_again_at_once(independent_server: IndependentServer) -> None:
    """The last sign-in's connection in TIME_WAIT must not make the next one fail."""
    from tokenflow.builtins.loopback import LoopbackListener

    port = free_port()
    targets = parse_redirect_uris(f"http://127.0.0.1:{port}/callback")
    # a previous sign-in served a page, closing the connection first
    with LoopbackListener(targets) as previous, socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET /favicon.ico HTTP/1.0\r\n\r\n")
        previous._server.handle_request()
        assert client.recv(65536).startswith(b"HTTP/1.0 404")
    with LoopbackListener(targets) as again:  # its end of that connection is in TIME_WAIT now
        assert again.port == port
    browser = Browser()
    ctx = context(independent_server, browser,
                  options={"redirect_uri": f"http://127.0.0.1:{port}/callback"})
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)


def test_ipv6_loopback_is_served_when_written(independent_server: IndependentServer) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    browser = Browser()
    ctx = context(independent_server, browser, options={"redirect_uri": "http://[::1]:0/callback"})
    token = AuthorizationCodeGrant().obtain(ctx)
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    assert ctx.token_requests[0]["redirect_uri"].startswith("http://[::1]:")


def test_a_client_dripping_its_request_cannot_hold_the_listener_past_the_wait() -> None:
    """Each read has a timeout; the whole request has one too, so a local client sending one
    byte every half second cannot keep the wait going long past its deadline."""
    import threading
    import time

    from tokenflow.builtins.loopback import CLIENT_TIMEOUT, LoopbackListener

    stop = threading.Event()
    with LoopbackListener(parse_redirect_uris("http://127.0.0.1:0/callback")) as listener:
        def drip() -> None:
            with socket.create_connection(("127.0.0.1", listener.port)) as client:
                for byte in b"GET /callback?state=x HTTP/1.0\r\n" * 20:
                    if stop.is_set():
                        return
                    try:
                        client.sendall(bytes([byte]))
                    except OSError:
                        return  # the listener cut us off
                    time.sleep(0.4)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(CredentialError, match="no sign-in came back"):
            listener.wait("the-state", 1.0)
        stop.set()
    assert time.monotonic() - started < CLIENT_TIMEOUT + 3


def test_a_callbacks_error_text_cannot_drive_the_terminal() -> None:
    import threading

    from tokenflow.builtins.loopback import LoopbackListener

    with LoopbackListener(parse_redirect_uris("http://127.0.0.1:0/callback")) as listener:
        def call() -> None:
            with socket.create_connection(("127.0.0.1", listener.port)) as client:
                client.sendall(b"GET /callback?state=s&error=access_denied"
                               b"&error_description=%1b%5d0%3bpwned%07no HTTP/1.0\r\n\r\n")
                client.recv(65536)

        threading.Thread(target=call, daemon=True).start()
        with pytest.raises(TokenRequestError) as caught:
            listener.wait("s", 10.0)
    assert "\x1b" not in str(caught.value) and "\x07" not in str(caught.value)
    assert "access_denied" in str(caught.value) and "pwned" in str(caught.value)
