"""What the dialects put on the wire, checked on the embedded server's side of a real connection."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import pytest
import urllib3
from conftest import FakeClock, profile_yaml

import tokenflow
from tokenflow.builtins.rfc6749 import basic_authorization
from tokenflow.errors import TokenRequestError
from tokenflow.testing import EmbeddedServer, RawRequest, success_response
from tokenflow.testing.pytest_plugin import ServerFactory

WriteConfig = Callable[..., Path]
FORM = "application/x-www-form-urlencoded"


def session_for(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, **options: Any
) -> tokenflow.TokenSession:
    path = write_config(profile_yaml(server, **options))
    return tokenflow.load_config(path).session("prod", clock=clock)


def query_of(raw: RawRequest) -> dict[str, list[str]]:
    return parse_qs(raw.query, keep_blank_values=True, strict_parsing=bool(raw.query))


def form_of(raw: RawRequest) -> dict[str, list[str]]:
    return parse_qs(raw.body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw.body))


def last(server: EmbeddedServer) -> RawRequest:
    raw = server.last_raw_request
    assert raw is not None
    return raw


def header(raw: RawRequest, name: str) -> str | None:
    lowered = {k.lower(): v for k, v in raw.headers.items()}
    return lowered.get(name.lower())


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory, clock: FakeClock) -> EmbeddedServer:
    return tokenflow_server_factory(clock=clock)


# -- teamserver ---------------------------------------------------------------------------------
def test_teamserver_password_grant_is_a_get_with_everything_in_the_query(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session_for(server, write_config, clock).token()
    raw = last(server)
    assert raw.method == "GET"
    assert raw.target.startswith("/api/oauth/token?")
    assert query_of(raw) == {
        "grant_type": ["password"],
        "username": ["alice"],
        "password": ["wonderland"],
        "client_id": [server.default_client.client_id],
        "client_secret": [server.default_client.secret],
    }
    assert raw.body == b""
    assert header(raw, "Content-Type") is None
    assert header(raw, "Authorization") is None
    assert header(raw, "Accept") == "application/json"
    record = server.requests[-1]
    assert (record.grant_type, record.client_auth, record.status) == ("password", "query", 200)


def test_teamserver_sends_the_configured_scope(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    token = session_for(server, write_config, clock, extra_profile={"scope": ["read"]}).token()
    assert query_of(last(server))["scope"] == ["read"]
    assert token.scope == "read"


def test_teamserver_refresh_sends_no_scope_and_no_password(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock, extra_profile={"scope": "read write"})
    first = session.token()
    assert query_of(last(server))["scope"] == ["read write"]
    clock.advance(86400)
    session.token()
    raw = last(server)
    assert raw.method == "GET"
    assert raw.body == b""
    assert query_of(raw) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [first.refresh_token],
        "client_id": [server.default_client.client_id],
        "client_secret": [server.default_client.secret],
    }


def test_teamserver_keeps_a_query_already_in_the_token_url(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock,
                          extra_server={"token_url": server.token_url + "?tenant=acme"})
    session.token()
    query = query_of(last(server))
    assert query["tenant"] == ["acme"]
    assert query["grant_type"] == ["password"]


def test_teamserver_secrets_are_percent_encoded(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    password = "p&ss=wörd+ %/?#"
    server = tokenflow_server_factory(clock=clock, accounts={"bob@example.com": password})
    text = profile_yaml(server).replace('"alice"', '"bob@example.com"')
    text = text.replace('"wonderland"', json.dumps(password))
    token = tokenflow.load_config(write_config(text)).session("prod", clock=clock).token()
    assert server.is_valid_access_token(token.access_token)
    query = query_of(last(server))
    assert query["username"] == ["bob@example.com"]
    assert query["password"] == [password]


# -- rfc6749 ------------------------------------------------------------------------------------
def test_rfc6749_posts_a_form_with_basic_client_auth(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session_for(server, write_config, clock, dialect="rfc6749", extra_profile={"scope": "read"}).token()
    raw = last(server)
    assert (raw.method, raw.target, raw.query) == ("POST", "/api/oauth/token", "")
    assert header(raw, "Content-Type") == FORM
    assert form_of(raw) == {
        "grant_type": ["password"], "username": ["alice"], "password": ["wonderland"],
        "scope": ["read"],
    }
    client = server.default_client
    assert header(raw, "Authorization") == basic_authorization(client.client_id, client.secret)
    assert server.requests[-1].client_auth == "basic"


def test_rfc6749_refresh_is_a_form_post(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock, dialect="rfc6749")
    first = session.token()
    clock.advance(86400)
    session.token()
    raw = last(server)
    assert raw.method == "POST"
    assert form_of(raw) == {"grant_type": ["refresh_token"], "refresh_token": [first.refresh_token]}
    assert (header(raw, "Authorization") or "").startswith("Basic ")


def decode_basic(value: str) -> tuple[str, str]:
    """RFC 6749 2.3.1: base64 of form-urlencoded id, ':', form-urlencoded secret."""
    scheme, _, encoded = value.partition(" ")
    assert scheme == "Basic"
    pair = base64.b64decode(encoded, validate=True).decode("ascii")  # urlencoded: plain ASCII
    raw_id, colon, raw_secret = pair.partition(":")
    assert colon and ":" not in raw_secret  # the colons inside were encoded
    return unquote_plus(raw_id), unquote_plus(raw_secret)


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        ("app:prod+1", "s3:cr+t/wörd€%=&"),
        ("plain-id", "a:b:c"),
        ("ünïcode-id", "++::"),
        ("my app", "a b+c:d é"),  # a space is "+" in form encoding
    ],
)
def test_rfc6749_basic_credentials_are_form_urlencoded_first(
    tokenflow_server_factory: ServerFactory,
    write_config: WriteConfig,
    clock: FakeClock,
    client_id: str,
    secret: str,
) -> None:
    server = tokenflow_server_factory(clock=clock, clients={client_id: secret})
    token = session_for(server, write_config, clock, dialect="rfc6749").token()
    assert server.is_valid_access_token(token.access_token)  # the server decoded them right
    raw = last(server)
    auth = header(raw, "Authorization")
    assert auth is not None
    assert decode_basic(auth) == (client_id, secret)
    assert "client_secret" not in form_of(raw)


def test_basic_authorization_encodes_spaces_as_plus() -> None:
    assert decode_basic(basic_authorization("my app", "a b")) == ("my app", "a b")
    assert base64.b64decode(basic_authorization("my app", "a b")[6:]) == b"my+app:a+b"


def test_rfc6749_client_auth_body(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session_for(server, write_config, clock, dialect="rfc6749", client_auth="body").token()
    raw = last(server)
    assert header(raw, "Authorization") is None
    form = form_of(raw)
    assert form["client_id"] == [server.default_client.client_id]
    assert form["client_secret"] == [server.default_client.secret]
    assert form["grant_type"] == ["password"]
    assert raw.query == ""
    assert server.requests[-1].client_auth == "body"


def public_client_yaml(server: EmbeddedServer, dialect: str) -> str:
    text = profile_yaml(server, dialect=dialect)
    lines = [line for line in text.splitlines() if "client_secret" not in line]
    assert len(lines) == len(text.splitlines()) - 1
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_rfc6749_public_client_sends_its_id_in_the_body(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock,
    client_auth: str,
) -> None:
    server = tokenflow_server_factory(clock=clock, clients={"public-app": ""})
    text = public_client_yaml(server, "rfc6749").replace(server.default_client.client_id, "public-app")
    text = text.replace('"basic"', json.dumps(client_auth))
    token = tokenflow.load_config(write_config(text)).session("prod", clock=clock).token()
    assert server.is_valid_access_token(token.access_token)
    raw = last(server)
    assert header(raw, "Authorization") is None
    form = form_of(raw)
    assert form["client_id"] == ["public-app"]
    assert "client_secret" not in form


def test_teamserver_public_client_sends_no_secret(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, clients={"public-app": ""})
    text = public_client_yaml(server, "teamserver").replace(server.default_client.client_id,
                                                            "public-app")
    tokenflow.load_config(write_config(text)).session("prod", clock=clock).token()
    query = query_of(last(server))
    assert query["client_id"] == ["public-app"]
    assert "client_secret" not in query


# -- servers that take only one method -----------------------------------------------------------
def test_server_refusing_get_gives_a_clear_error_for_teamserver(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, allow_get=False)
    session = session_for(server, write_config, clock)
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    exc = caught.value
    assert exc.status == 405
    assert exc.error == "method_not_allowed"
    message = str(exc)
    assert "405" in message and "GET" in message
    assert "try dialect: rfc6749 (POST) for server 'ts'" in message
    for secret in ("wonderland", server.default_client.secret):
        assert secret not in message
    assert server.requests[-1].method == "GET"
    # the standard dialect works against the same server
    assert session_for(server, write_config, clock, dialect="rfc6749").token().access_token
    assert server.requests[-1].method == "POST"


def test_get_only_server_works_with_teamserver(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, allow_post=False)
    session = session_for(server, write_config, clock)
    session.token()
    clock.advance(86400)
    session.token()  # and its refresh
    assert [r.method for r in server.requests] == ["GET", "GET"]
    assert [r.status for r in server.requests] == [200, 200]
    standard = session_for(server, write_config, clock, dialect="rfc6749", store="memory")
    with pytest.raises(TokenRequestError) as caught:
        standard.token()
    assert caught.value.status == 405
    assert "try dialect: teamserver (GET)" in str(caught.value)


# -- extra parameters -----------------------------------------------------------------------------
EXTRA: Mapping[str, str] = {"audience": "api://team", "resource": "https://r.example/x?y=1"}


@pytest.mark.parametrize("dialect", ["teamserver", "rfc6749"])
def test_extra_params_are_sent_with_the_grant(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, dialect: str
) -> None:
    session = session_for(server, write_config, clock, dialect=dialect,
                          extra_profile={"params": json.dumps(dict(EXTRA))})
    session.token()
    raw = last(server)
    sent = query_of(raw) if dialect == "teamserver" else form_of(raw)
    for name, value in EXTRA.items():
        assert sent[name] == [value]


def test_extra_params_cannot_override_the_grant(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock,
                          extra_profile={"params": '{"grant_type": "client_credentials"}'})
    session.token()
    assert query_of(last(server))["grant_type"] == ["password"]


def test_params_are_part_of_the_cache_key(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    plain = session_for(server, write_config, clock)
    with_audience = session_for(server, write_config, clock,
                                extra_profile={"params": '{"audience": "a"}'})
    assert plain.cache_key != with_audience.cache_key


# -- the Authorization header ---------------------------------------------------------------------
@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", None])
def test_headers_always_say_bearer(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, token_type: str | None
) -> None:
    session = session_for(server, write_config, clock)
    if token_type is None:
        from tokenflow.testing import OMIT

        server.script(success_response(token_type=OMIT))
    else:
        server.script(success_response(token_type=token_type))
    token = session.token()
    assert session.headers() == {"Authorization": f"Bearer {token.access_token}"}
    assert token.token_type == "Bearer"


def test_headers_are_accepted_by_the_resource_server(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    http = urllib3.PoolManager(retries=False, timeout=10)
    response = http.request("GET", server.resource_url, headers=session.headers())
    assert response.status == 200
    assert response.json()["user"] == "alice"
