"""The interactive grants through the library (sessions, store, events), against the
oauthlib-based independent server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from grant_harness import Browser, Notice
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    PUBLIC_CLIENT,
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)
from test_interactive_cli import config_yaml

import tokenflow
from tokenflow.builtins.teamserver import TeamServerDialect
from tokenflow.engine.session import LoginPrompt
from tokenflow.errors import ReauthenticationRequired
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import build_plugin_host

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLOW_NO_BROWSER", "1")


class Events:
    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        self.events.append(event)


def load(path: Path, events: Events | None = None) -> tokenflow.Tokenflow:
    plugins = build_plugin_host(extra_plugins=[events] if events else [])
    return tokenflow.load_config(path, plugins=plugins)


def test_a_session_without_a_person_raises_reauthentication_required(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    flow = load(write_config(config_yaml(independent_server, "authorization_code")))
    with pytest.raises(ReauthenticationRequired, match="tokenflow login dev"):
        flow.session("dev", interactive=False).token()
    assert independent_server.counts["total"] == 0


def test_a_login_callback_is_told_what_to_show_and_an_event_carries_no_state(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    events = Events()
    flow = load(write_config(config_yaml(independent_server, "authorization_code")), events)
    prompts: list[LoginPrompt] = []
    browser = Browser()

    def login(prompt: LoginPrompt) -> None:
        prompts.append(prompt)
        browser(Notice(prompt.message, prompt.url, prompt.user_code))

    session = flow.session("dev", interactive=False, login=login)
    token = session.token()
    browser.join()
    assert independent_server.is_valid_access_token(token.access_token)
    [prompt] = prompts
    assert prompt.profile == "dev" and prompt.url and "state=" in prompt.url
    [event] = [e for e in events.events if e.kind is EventKind.LOGIN_REQUIRED]
    assert event.detail == independent_server.authorize_url
    # cached for a new session, without a person
    assert load(Path(flow.files[0])).session("dev", interactive=False).token() == token


def test_refresh_bootstrap_never_goes_back_to_the_configured_token(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = independent_server_factory(rotate_refresh_tokens=True)
    first = tokenflow.config_from_mapping({
        "version": 1, "servers": {"s": {"token_url": server.token_url, "retries": 0}},
        "clients": {"c": {"client_id": server.client_id, "client_secret": server.client_secret}},
        "profiles": {"p": {"server": "s", "client": "c", "grant": "password",
                           "username": server.username, "password": server.password}},
    }).session("p").token()
    assert first.refresh_token
    monkeypatch.setenv("OFFLINE_TOKEN", first.refresh_token)
    path = write_config(json.dumps({
        "version": 1, "servers": {"s": {"token_url": server.token_url, "retries": 0}},
        "clients": {"c": {"client_id": server.client_id, "client_secret": server.client_secret}},
        "profiles": {"ci": {"server": "s", "client": "c", "grant": "refresh_token",
                            "refresh_token": {"env": "OFFLINE_TOKEN"}}},
    }))
    token = load(path).session("ci").token()
    assert server.is_valid_access_token(token.access_token)
    assert not server.is_valid_refresh_token(first.refresh_token)  # rotated: spent
    # a new process renews with the stored (rotated) refresh token: the configured one would
    # be refused now, and this one is not
    renewed = load(path).session("ci").force_refresh()
    assert server.is_valid_access_token(renewed.access_token)
    assert server.counts["refresh_token"] == 2

    # the stored one refused too (revoked): the configured one is tried once, refused, and the
    # message says to issue a new one
    server.revoke_refresh_tokens()
    with pytest.raises(ReauthenticationRequired, match="issue a new one"):
        load(path).session("ci").force_refresh()


def test_a_moved_token_endpoint_is_found_by_reading_the_metadata_again(
    independent_server: IndependentServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    path = write_config(config_yaml(independent_server, "client_credentials", discovery=True,
                                    public=False))
    load(path).session("dev").token()
    [cached] = (cache_dir / "discovery").iterdir()
    data = json.loads(cached.read_text())
    data["metadata"]["endpoints"]["token"] = independent_server.url + "/old/token"
    cached.write_text(json.dumps(data))
    token = load(path).session("dev").force_refresh()
    assert independent_server.is_valid_access_token(token.access_token)
    assert independent_server.counts["metadata"] == 2
    assert json.loads(cached.read_text())["metadata"]["endpoints"]["token"] == independent_server.token_url


def test_threads_asking_at_once_cause_one_sign_in(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    flow = load(write_config(config_yaml(independent_server, "device_code")))
    approved = threading.Event()

    def login(prompt: LoginPrompt) -> None:
        if prompt.user_code and prompt.url and "user_code=" not in prompt.url:
            independent_server.approve_device(prompt.user_code)
            approved.set()

    session = flow.session("dev", login=login, sleep=lambda s: None)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(session.token().access_token))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert approved.is_set() and len(results) == 8 and len(set(results)) == 1
    assert independent_server.counts["device_authorization"] == 1


def test_teamserver_puts_the_code_exchange_in_the_query_with_a_public_clients_id() -> None:
    request = TeamServerDialect().token_request(
        "https://ts.example/api/oauth/token",
        {"grant_type": "authorization_code", "code": "c0de", "redirect_uri": "http://127.0.0.1:5/cb",
         "code_verifier": "v" * 43},
        PUBLIC_CLIENT, None, "basic")
    assert request.method == "GET" and request.body is None
    query = dict(parse_qsl(request.url.split("?", 1)[1]))
    assert query == {"grant_type": "authorization_code", "code": "c0de",
                     "redirect_uri": "http://127.0.0.1:5/cb", "code_verifier": "v" * 43,
                     "client_id": PUBLIC_CLIENT}


def test_a_moved_device_endpoint_is_found_by_reading_the_metadata_again(
    independent_server: IndependentServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    path = write_config(config_yaml(independent_server, "device_code", discovery=True))

    def approve(prompt: LoginPrompt) -> None:
        if prompt.user_code and prompt.url and "user_code=" not in prompt.url:
            independent_server.approve_device(prompt.user_code)

    load(path).session("dev", login=approve, sleep=lambda s: None).login()
    [cached] = (cache_dir / "discovery").iterdir()
    data = json.loads(cached.read_text())
    data["metadata"]["endpoints"]["device_authorization"] = independent_server.url + "/old/device"
    cached.write_text(json.dumps(data))
    token = load(path).session("dev", login=approve, sleep=lambda s: None).login()
    assert independent_server.is_valid_access_token(token.access_token)
    assert independent_server.counts["metadata"] == 2
    assert independent_server.counts["device_authorization"] == 2
    assert [r.status for r in independent_server.requests if r.path == "/old/device"] == [404]


def test_what_a_person_is_told_cannot_drive_the_terminal_or_leak_the_state() -> None:
    """A device grant relays the server's user code and URI: control characters never reach
    the terminal or the login callback, and a prompt's repr hides the URL (it carries state)."""
    from tokenflow.engine.session import _SessionGrantContext

    flow = tokenflow.config_from_mapping({
        "version": 1, "servers": {"s": {"token_url": "https://login.example/token",
                                        "device_authorization_url": "https://login.example/device"}},
        "clients": {"c": {"client_id": "cli"}},
        "profiles": {"dev": {"server": "s", "client": "c", "grant": "device_code",
                             "store": "memory"}},
    })
    prompts: list[LoginPrompt] = []
    session = flow.session("dev", login=prompts.append)
    _SessionGrantContext(session).notify("enter \x1b]0;pwned\x07the code", url="https://x/\x1b[2J",
                                         user_code="AB\x07CD")
    (prompt,) = prompts
    for text in (prompt.message, prompt.url or "", prompt.user_code or ""):
        assert all(char.isprintable() for char in text), repr(text)
    secret_url = LoginPrompt("dev", "open it", "https://idp/authorize?state=s3cret", None)
    assert "s3cret" not in repr(secret_url)


def test_cli_errors_cannot_drive_the_terminal() -> None:
    from tokenflow.cli.app import _clean

    assert _clean("refused: \x1b]0;pwned\x07 bad\r\nline") == "refused: ?]0;pwned? bad line"
