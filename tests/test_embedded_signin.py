"""tokenflow's interactive grants against the embedded server too (a second implementation of
the server side, written separately): the Team Server-style GET code exchange, the browser opened
through ``webbrowser.open`` (a :class:`~tokenflow.testing.HeadlessBrowser` in its place), the
mix-up defence with a real ``iss``, and the device flow with the server's own ``slow_down``."""

from __future__ import annotations

import webbrowser
from collections.abc import Callable

import pytest
from conftest import FakeClock

import tokenflow
from tokenflow.engine.session import LoginPrompt
from tokenflow.errors import TokenRequestError
from tokenflow.testing import EmbeddedServer, HeadlessBrowser

ServerFactory = Callable[..., EmbeddedServer]


def flow(server: EmbeddedServer, grant: str, **server_keys: object) -> tokenflow.Tokenflow:
    keys: dict[str, object] = {"issuer": server.issuer, "retries": 0, **server_keys}
    return tokenflow.config_from_mapping({
        "version": 1, "servers": {"e": keys},
        "clients": {"cli": {"client_id": server.default_public_client_id}},
        "profiles": {"dev": {"server": "e", "client": "cli", "grant": grant}},
    })


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> HeadlessBrowser:
    headless = HeadlessBrowser()
    monkeypatch.setattr(webbrowser, "open", headless.open)
    monkeypatch.setenv("BROWSER", "headless")  # a graphical session, as far as tokenflow can tell
    monkeypatch.delenv("TOKENFLOW_NO_BROWSER", raising=False)
    return headless


@pytest.mark.parametrize("dialect", ["rfc6749", "teamserver"])
def test_browser_sign_in_opens_the_browser_and_exchanges_the_code(
    tokenflow_server_factory: ServerFactory, browser: HeadlessBrowser, dialect: str
) -> None:
    server = tokenflow_server_factory(send_iss=True)
    keys: dict[str, object] = {"dialect": dialect}
    if dialect == "teamserver":
        keys.update(token_url=server.token_url, authorization_url=server.teamserver_authorize_url)
    prompts: list[LoginPrompt] = []
    session = flow(server, "authorization_code", **keys).session("dev", login=prompts.append)
    token = session.token()
    assert server.is_valid_access_token(token.access_token)
    assert [visit.status for visit in browser.wait(10)][-1] == 200
    assert prompts and prompts[0].url is not None and "opened" in prompts[0].message
    assert server.counts["authorization_code"] == 1
    [exchange] = [r for r in server.requests if r.path.endswith("/token")]
    assert exchange.method == ("GET" if dialect == "teamserver" else "POST")


def test_an_iss_from_another_issuer_is_refused(
    tokenflow_server_factory: ServerFactory, browser: HeadlessBrowser
) -> None:
    server = tokenflow_server_factory(send_iss=True)
    # the profile names another issuer than the one the server puts in iss: a mix-up
    mixed = tokenflow.config_from_mapping({
        "version": 1,
        "servers": {"e": {"issuer": "https://other.example", "token_url": server.token_url,
                          "authorization_url": server.authorize_url, "retries": 0}},
        "clients": {"cli": {"client_id": server.default_public_client_id}},
        "profiles": {"dev": {"server": "e", "client": "cli", "grant": "authorization_code"}},
    })
    with pytest.raises(TokenRequestError, match=r"not 'https://other\.example'"):
        mixed.session("dev", login=lambda prompt: None).token()
    assert server.counts["authorization_code"] == 0
    # the right issuer: the same answer is accepted
    token = flow(server, "authorization_code").session("dev", login=lambda prompt: None).token()
    assert server.is_valid_access_token(token.access_token)


def test_device_flow_with_the_servers_slow_down(
    tokenflow_server_factory: ServerFactory, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock)
    server.script_device_polls("authorization_pending", "slow_down", 429)

    def approve(prompt: LoginPrompt) -> None:
        if prompt.user_code:
            server.approve_device(prompt.user_code)

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    session = flow(server, "device_code").session("dev", login=approve, clock=clock, sleep=sleep)
    token = session.token()
    assert server.is_valid_access_token(token.access_token)
    assert slept == [5.0, 5.0, 10.0, 15.0]
