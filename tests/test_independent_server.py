"""tokenflow's ``rfc6749`` dialect against an RFC 6749 server it was not written with (oauthlib).

See ``independent_server.py``: oauthlib decides what is a valid request, how client credentials
are decoded and which error and status a refusal gets, so these tests catch misreadings of the
RFC that tokenflow and its own embedded server might share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from conftest import FakeClock, run_cli
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

import tokenflow
from tokenflow.config.model import Config
from tokenflow.errors import TokenRequestError, TransportError
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import build_plugin_host

WriteConfig = Callable[..., Path]


class EventRecorder:
    """A ``tokenflow_event`` observer plugin."""

    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events]


def config_yaml(
    server: IndependentServer,
    *,
    client_auth: str = "basic",
    grant: str = "password",
    store: str = "file",
    password: str | None = None,
    client_secret: str | None = None,
    extra_server: Mapping[str, object] | None = None,
    extra_profile: Mapping[str, object] | None = None,
) -> str:
    """A config with one profile, ``prod``, for *server* (YAML; scalars as JSON strings)."""
    server_keys: dict[str, object] = {
        "token_url": server.token_url, "dialect": "rfc6749", "client_auth": client_auth,
        "revoke_url": server.revoke_url, "retries": 0, "timeout": 10,
    }
    server_keys.update(extra_server or {})
    profile_keys: dict[str, object] = {"server": "interop", "client": "app", "grant": grant,
                                       "store": store}
    if grant == "password":
        profile_keys["username"] = server.username
        profile_keys["password"] = server.password if password is None else password
    profile_keys.update(extra_profile or {})
    secret = server.client_secret if client_secret is None else client_secret
    lines = ["version: 1", "servers:", "  interop:"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in server_keys.items()]
    lines += ["clients:", "  app:", f"    client_id: {json.dumps(server.client_id)}",
              f"    client_secret: {json.dumps(secret)}", "profiles:", "  prod:"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in profile_keys.items()]
    return "\n".join(lines) + "\n"


def load(path: Path, recorder: EventRecorder | None = None) -> Config:
    plugins = build_plugin_host(extra_plugins=[recorder] if recorder is not None else [])
    return tokenflow.load_config(path, plugins=plugins)


@pytest.mark.parametrize("client_auth", ["basic", "body"])
@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_grant_then_cached(
    independent_server: IndependentServer, write_config: WriteConfig, grant: str, client_auth: str
) -> None:
    server = independent_server
    path = write_config(config_yaml(server, grant=grant, client_auth=client_auth,
                                    extra_profile={"scope": "read admin"}))
    config = load(path)
    token = config.session("prod").token()

    assert server.is_valid_access_token(token.access_token)
    assert token.token_type == "Bearer"
    assert token.scope == "read admin"
    assert 3500 < token.expires_in(token.obtained_at) <= 3600
    assert server.access_token_user(token.access_token) == (
        server.username if grant == "password" else None)
    if grant == "password":
        assert token.refresh_token and server.is_valid_refresh_token(token.refresh_token)
    else:
        assert token.refresh_token is None  # RFC 6749 4.4.3: no refresh token
    [request] = server.requests
    assert (request.method, request.grant_type, request.client_auth, request.status) == (
        "POST", grant, client_auth, 200)
    assert ("client_secret" in request.param_names) is (client_auth == "body")

    # cached: the same session, and a new process-like load reading the file store
    assert config.session("prod").token() == token
    assert load(path).session("prod").token().access_token == token.access_token
    assert server.counts["total"] == 1


@pytest.mark.parametrize("rotate", [False, True], ids=["no-rotation", "rotation"])
@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_refresh_after_margin(
    independent_server_factory: IndependentServerFactory,
    write_config: WriteConfig,
    clock: FakeClock,
    rotate: bool,
    client_auth: str,
) -> None:
    server = independent_server_factory(access_token_lifetime=120, rotate_refresh_tokens=rotate,
                                        clock=clock)
    path = write_config(config_yaml(server, client_auth=client_auth,
                                    extra_profile={"refresh_margin": 30}))
    recorder = EventRecorder()
    session = load(path, recorder).session("prod", clock=clock)
    first = session.token()
    assert first.expires_at == pytest.approx(clock() + 120)

    clock.advance(85)  # 35 s left: still outside the 30 s margin
    assert session.token() == first
    assert server.counts["total"] == 1

    clock.advance(10)  # 25 s left: inside the margin
    second = session.token()
    assert second.access_token != first.access_token
    assert server.is_valid_access_token(second.access_token)
    assert second.expires_at == pytest.approx(clock() + 120)
    assert server.counts["refresh_token"] == 1 and server.counts["password"] == 1
    assert server.requests[-1].client_auth == client_auth
    assert EventKind.REFRESHED in recorder.kinds()
    assert second.scope == "read write"  # oauthlib keeps the original scopes
    if rotate:
        assert second.refresh_token != first.refresh_token
        assert first.refresh_token is not None
        assert not server.is_valid_refresh_token(first.refresh_token)
    else:
        assert second.refresh_token == first.refresh_token  # echoed back, kept
    stored = session.store.load(session.cache_key)
    assert stored is not None and stored.refresh_token == second.refresh_token

    # once more: with rotation this only works if tokenflow kept the new refresh token
    clock.advance(200)  # expired
    third = session.token()
    assert server.is_valid_access_token(third.access_token)
    assert server.counts["refresh_token"] == 2 and server.counts["password"] == 1
    assert all(r.status == 200 for r in server.requests)


def test_client_credentials_grant_runs_again_inside_margin(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = independent_server_factory(access_token_lifetime=120, clock=clock)
    path = write_config(config_yaml(server, grant="client_credentials",
                                    extra_profile={"refresh_margin": 30}))
    session = load(path).session("prod", clock=clock)
    first = session.token()
    clock.advance(95)
    second = session.token()
    assert second.access_token != first.access_token and second.refresh_token is None
    assert server.counts["client_credentials"] == 2 and server.counts["refresh_token"] == 0


def test_revoked_refresh_token_reauthenticates_with_password(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = independent_server_factory(access_token_lifetime=120, clock=clock)
    path = write_config(config_yaml(server))
    recorder = EventRecorder()
    session = load(path, recorder).session("prod", clock=clock)
    first = session.token()
    server.revoke_refresh_tokens()
    clock.advance(300)  # expired: the refresh token is the only way short of the password

    second = session.token()
    assert server.is_valid_access_token(second.access_token)
    assert second.refresh_token != first.refresh_token
    assert second.refresh_token is not None and server.is_valid_refresh_token(second.refresh_token)
    assert [(r.grant_type, r.status) for r in server.requests] == [
        ("password", 200), ("refresh_token", 400), ("password", 200)]
    rejected = [e for e in recorder.events if e.kind is EventKind.REFRESH_REJECTED]
    assert [e.error for e in rejected] == ["invalid_grant"]
    assert EventKind.REAUTHENTICATED in recorder.kinds()
    stored = session.store.load(session.cache_key)
    assert stored is not None and stored.access_token == second.access_token


def test_logout_revokes_at_the_rfc7009_endpoint(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    server = independent_server
    config = load(write_config(config_yaml(server, client_auth="body")))
    session = config.session("prod")
    token = session.token()
    assert session.logout(revoke=True) is True
    assert token.refresh_token is not None
    assert not server.is_valid_refresh_token(token.refresh_token)
    assert not server.is_valid_access_token(token.access_token)
    revoke = server.requests[-1]
    assert (revoke.path, revoke.client_auth, revoke.status) == ("/oauth2/revoke", "body", 200)
    assert session.status().state.value == "absent"


def test_503_burst_is_retried(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    server = independent_server
    server.fail_next(2, 503)
    recorder = EventRecorder()
    session = load(write_config(config_yaml(server, extra_server={"retries": 2})), recorder).session(
        "prod")
    token = session.token()
    assert server.is_valid_access_token(token.access_token)
    assert [r.status for r in server.requests] == [503, 503, 200]
    retried = [e for e in recorder.events if e.kind is EventKind.RETRIED]
    assert [e.detail for e in retried] == ["HTTP 503", "HTTP 503"]
    assert EventKind.FETCHED in recorder.kinds()


def test_503_burst_longer_than_retries_fails_transiently(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    server = independent_server
    server.fail_next(3, 503)
    recorder = EventRecorder()
    session = load(write_config(config_yaml(server, extra_server={"retries": 2})), recorder).session(
        "prod")
    with pytest.raises(TransportError) as caught:
        session.token()
    assert caught.value.transient and caught.value.status == 503
    assert "503" in str(caught.value) and "3 tries" in str(caught.value)
    assert server.counts["total"] == 3
    assert recorder.kinds()[-1] is EventKind.FAILED
    assert session.status().state.value == "absent"


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_wrong_password_is_invalid_grant(
    independent_server: IndependentServer, write_config: WriteConfig, client_auth: str
) -> None:
    server = independent_server
    wrong = "not-the-password-4711"
    path = write_config(config_yaml(server, client_auth=client_auth, password=wrong,
                                    extra_server={"retries": 2}))
    with pytest.raises(TokenRequestError) as caught:
        load(path).session("prod").token()
    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 400
    assert wrong not in str(caught.value)
    assert server.counts["total"] == 1  # a refusal is never retried


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_wrong_client_secret_is_invalid_client(
    independent_server: IndependentServer, write_config: WriteConfig, client_auth: str
) -> None:
    server = independent_server
    wrong = "wrong-client-secret-0815"
    path = write_config(config_yaml(server, client_auth=client_auth, client_secret=wrong,
                                    extra_server={"retries": 2}))
    with pytest.raises(TokenRequestError) as caught:
        load(path).session("prod").token()
    assert caught.value.error == "invalid_client"
    assert caught.value.status in (400, 401)  # oauthlib answers 401
    assert wrong not in str(caught.value)
    [request] = server.requests
    assert request.client_auth == client_auth


def test_independent_server_refuses_get_and_double_client_auth(
    independent_server: IndependentServer,
) -> None:
    """The server itself: POST only, and one client authentication method per request."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import quote_plus, urlencode

    server = independent_server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(server.token_url + "?grant_type=client_credentials", timeout=10)
    assert caught.value.code == 405 and caught.value.headers["Allow"] == "POST"

    pair = f"{quote_plus(server.client_id)}:{quote_plus(server.client_secret)}"
    body = urlencode({"grant_type": "client_credentials", "client_id": server.client_id,
                      "client_secret": server.client_secret}).encode()
    request = urllib.request.Request(server.token_url, data=body, headers={
        "Authorization": "Basic " + base64.b64encode(pair.encode()).decode()})
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"] == "invalid_client"


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_token_against_independent_server(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    server = independent_server
    path = write_config(config_yaml(server))

    first = run_cli("token", "prod", "-c", str(path))
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert first.stdout == token + "\n"
    assert server.is_valid_access_token(token)
    assert first.stderr == ""

    again = run_cli("token", "prod", "-c", str(path))  # from the cache
    assert (again.returncode, again.stdout) == (0, first.stdout)
    assert server.counts["total"] == 1

    header = run_cli("token", "prod", "-c", str(path), "--format", "header")
    assert header.stdout == f"Authorization: Bearer {token}\n"

    forced = run_cli("token", "prod", "-c", str(path), "--force-refresh", "--format", "json")
    assert forced.returncode == 0, forced.stderr
    data = json.loads(forced.stdout)
    assert data["access_token"] != token and server.is_valid_access_token(data["access_token"])
    assert "refresh_token" not in data
    assert server.counts["refresh_token"] == 1 and server.counts["password"] == 1


def test_cli_refused_credentials_exit_1(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    wrong = "wrong-password-for-the-cli"
    path = write_config(config_yaml(independent_server, password=wrong))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "invalid_grant" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert wrong not in result.stderr

