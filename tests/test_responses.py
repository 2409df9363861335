"""Odd but real token endpoint replies, scripted on the embedded server and read over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, profile_yaml

import tokenflow
from tokenflow.errors import TokenflowError, TokenRequestError, TransportError
from tokenflow.testing import (
    OMIT,
    EmbeddedServer,
    ScriptedResponse,
    error_response,
    success_response,
)
from tokenflow.testing.pytest_plugin import ServerFactory
from tokenflow.transport import MAX_BODY

WriteConfig = Callable[..., Path]
JSON = {"Content-Type": "application/json;charset=UTF-8"}
HTML = {"Content-Type": "text/html"}


def session_for(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, **options: Any
) -> tokenflow.TokenSession:
    path = write_config(profile_yaml(server, **options))
    return tokenflow.load_config(path).session("prod", clock=clock)


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory, clock: FakeClock) -> EmbeddedServer:
    return tokenflow_server_factory(clock=clock)


def jwt(claims: Mapping[str, object]) -> str:
    """An unsigned JWT (``alg: none``): the client reads ``exp`` as a hint, never verifies it."""

    def part(data: Mapping[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# -- expiry ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "profile", "lifetime", "warns"),
    [
        pytest.param({"expires_in": 3600}, {}, 3600, False, id="int"),
        pytest.param({"expires_in": 1800.5}, {}, 1800.5, False, id="float"),
        pytest.param({"expires_in": "3600"}, {}, 3600, False, id="numeric-string"),
        pytest.param({"expires_in": " 120 "}, {}, 120, False, id="padded-string"),
        pytest.param({"expires_in": "7.5e2"}, {}, 750, False, id="exponent-string"),
        pytest.param({"expires_in": None}, {}, 3600, False, id="null"),
        pytest.param({"expires_in": OMIT}, {}, 3600, False, id="missing"),
        pytest.param({"expires_in": OMIT}, {"default_lifetime": 900}, 900, False,
                     id="missing-profile-default"),
        pytest.param({"expires_in": None}, {"default_lifetime": 42.5}, 42.5, False,
                     id="null-profile-default"),
        # unusable values are never taken silently: one warning, then the default lifetime
        pytest.param({"expires_in": "soon"}, {}, 3600, True, id="non-numeric-string"),
        pytest.param({"expires_in": "abc"}, {"default_lifetime": 900}, 900, True,
                     id="non-numeric-string-profile-default"),
        pytest.param({"expires_in": True}, {}, 3600, True, id="boolean"),
        pytest.param({"expires_in": [3600]}, {}, 3600, True, id="list"),
        pytest.param({"expires_in": {"s": 1}}, {}, 3600, True, id="object"),
        pytest.param({"expires_in": ""}, {}, 3600, True, id="empty-string"),
        pytest.param({"expires_in": "NaN"}, {}, 3600, True, id="nan-string"),
        pytest.param({"expires_in": "Infinity"}, {}, 3600, True, id="infinity-string"),
        pytest.param({"expires_in": "-inf"}, {}, 3600, True, id="minus-infinity-string"),
        pytest.param({"expires_in": float("nan")}, {}, 3600, True, id="json-NaN"),
        pytest.param({"expires_in": float("inf")}, {}, 3600, True, id="json-Infinity"),
        pytest.param({"expires_in": -float("inf")}, {}, 3600, True, id="json-minus-Infinity"),
        pytest.param({"expires_in": 10**400}, {}, 3600, True, id="integer-beyond-float"),
        pytest.param({"expires_in": "1e400"}, {}, 3600, True, id="string-beyond-float"),
        pytest.param({"expires_in": 0}, {}, 3600, True, id="zero"),
        pytest.param({"expires_in": 0.5}, {}, 3600, True, id="under-a-second"),
        pytest.param({"expires_in": -5}, {}, 3600, True, id="negative"),
        pytest.param({"expires_in": 10**9}, {}, 3600, True, id="absurd"),
        pytest.param({"expires_in": 10**9}, {"default_lifetime": 600}, 600, True,
                     id="absurd-profile-default"),
        pytest.param({"expires_in": 366 * 86400}, {}, 366 * 86400, False, id="one-year"),
    ],
)
def test_expires_in(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, object],
    profile: dict[str, object],
    lifetime: float,
    warns: bool,
) -> None:
    session = session_for(server, write_config, clock, extra_profile=profile)
    server.script(success_response(200, **fields))
    with caplog.at_level(logging.WARNING, logger="tokenflow.tokens"):
        token = session.token()
    assert token.expires_at - clock() == lifetime
    assert token.obtained_at == clock()
    warnings = [r for r in caplog.records if r.name == "tokenflow.tokens"]
    assert bool(warnings) == warns
    if warns:
        assert len(warnings) == 1
        assert "expires_in" in warnings[0].getMessage()
        assert "default lifetime" in warnings[0].getMessage()
        assert token.access_token not in caplog.text


@pytest.mark.parametrize(
    ("date_offset", "claims_offset", "fields", "lifetime", "warns"),
    [
        pytest.param(0, 1234, {}, 1234, False, id="jwt-exp"),
        pytest.param(3600, 1234, {}, 1234, False, id="server-clock-an-hour-ahead"),
        pytest.param(-3600, 1234, {}, 1234, False, id="server-clock-an-hour-behind"),
        pytest.param(3, 1234, {}, 1237, False, id="small-skew-ignored"),
        pytest.param(0, 1234, {"expires_in": 60}, 60, False, id="expires-in-wins"),
        pytest.param(0, -10, {}, 3600, True, id="jwt-already-expired"),
        pytest.param(0, 10**9, {}, 3600, True, id="jwt-absurd"),
    ],
)
def test_jwt_exp_is_used_when_expires_in_is_missing(
    tokenflow_server_factory: ServerFactory,
    write_config: WriteConfig,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    date_offset: float,
    claims_offset: float,
    fields: dict[str, object],
    lifetime: float,
    warns: bool,
) -> None:
    server = tokenflow_server_factory(clock=clock, date_offset=date_offset)
    session = session_for(server, write_config, clock)
    server_now = clock() + date_offset  # the server writes exp on its own clock
    access = jwt({"sub": "alice", "exp": server_now + claims_offset})
    server.script(success_response(200, access_token=access, **{"expires_in": OMIT, **fields}))
    with caplog.at_level(logging.WARNING, logger="tokenflow.tokens"):
        token = session.token()
    assert token.access_token == access
    assert token.expires_at - clock() == lifetime
    assert bool([r for r in caplog.records if r.name == "tokenflow.tokens"]) == warns


@pytest.mark.parametrize(
    "access_token",
    [
        pytest.param(jwt({"sub": "alice"}), id="no-exp"),
        pytest.param(jwt({"exp": "tomorrow"}), id="exp-not-a-number"),
        pytest.param("a.b.c", id="not-base64-json"),
        pytest.param("eyJhbGciOiJub25lIn0.W10.", id="claims-not-an-object"),
    ],
)
def test_unusable_jwt_falls_back_to_the_default_lifetime(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, access_token: str
) -> None:
    session = session_for(server, write_config, clock, extra_profile={"default_lifetime": 777})
    server.script(success_response(access_token=access_token, expires_in=OMIT))
    assert session.token().expires_at - clock() == 777


# -- other fields ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token_type", "expected"),
    [("bearer", "Bearer"), ("BEARER", "Bearer"), ("Bearer", "Bearer"), ("bEaReR", "Bearer"),
     (OMIT, "Bearer"), ("", "Bearer"), (None, "Bearer")],
)
def test_token_type(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, token_type: object,
    expected: str,
) -> None:
    session = session_for(server, write_config, clock)
    server.script(success_response(token_type=token_type))
    assert session.token().token_type == expected


@pytest.mark.parametrize(
    "token_type",
    ["DPoP", "dpop", "mac", "N_A", "Bearer ", "bearer\r\nX-Evil: 1", 7, ["Bearer"], True],
)
def test_token_types_other_than_bearer_are_refused(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, token_type: object
) -> None:
    """Printing ``Bearer`` for a DPoP or mac token would fail later, at the API, obscurely."""
    session = session_for(server, write_config, clock)
    server.script(success_response(access_token="good-token-1234", token_type=token_type))
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    message = str(caught.value)
    assert "token_type" in message and "not Bearer" in message
    assert "good-token-1234" not in message
    assert "\r" not in message and "\n" not in message
    assert session.status().expires_at is None  # nothing was stored


@pytest.mark.parametrize(
    ("scope", "profile_scope", "expected"),
    [("read write", None, "read write"), ("read", None, "read"),
     (["read", "write"], None, "read write"),
     (OMIT, None, None), (None, None, None), (7, None, None),
     # RFC 6749 5.1: a reply without scope was granted the requested scope
     (OMIT, "read write", "read write"), (None, "read", "read"), (7, "read", "read"),
     ("read", "read write", "read")],
)
def test_scope(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, scope: object,
    profile_scope: str | None, expected: str | None,
) -> None:
    extra = {"scope": profile_scope} if profile_scope else {}
    session = session_for(server, write_config, clock, extra_profile=extra)
    server.script(success_response(scope=scope))
    assert session.token().scope == expected
    assert session.status().scope == expected


def test_a_refresh_reply_without_scope_keeps_the_granted_scope(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    """RFC 6749 section 6: the refreshed token has the scope granted before."""
    session = session_for(server, write_config, clock, extra_profile={"scope": "read write"})
    server.script(success_response(scope="read"))  # the server granted less than asked
    assert session.token().scope == "read"
    server.script(success_response(scope=OMIT))
    assert session.force_refresh().scope == "read"


def test_unknown_fields_are_kept_as_extra(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    server.script(success_response(jti="abc-123", id_token="x.y.z"))
    token = session.token()
    assert token.extra == {"jti": "abc-123", "id_token": "x.y.z"}


def test_refresh_reply_without_refresh_token_keeps_the_previous(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    first = session.token()
    clock.advance(86400)
    for missing in (OMIT, None, ""):
        server.script(success_response(refresh_token=missing))
        token = session.force_refresh()
        assert token.refresh_token == first.refresh_token
        assert session.store.load(session.cache_key) == token
    assert server.counts["refresh_token"] == 3


def test_refresh_reply_with_a_new_refresh_token_replaces_it(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    session.token()
    server.script(success_response(refresh_token="rotated-by-script"))
    assert session.force_refresh().refresh_token == "rotated-by-script"


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "error", "description", "status"),
    [
        pytest.param(error_response(400, "invalid_grant", "Bad credentials"), "invalid_grant",
                     "Bad credentials", 400, id="invalid_grant"),
        pytest.param(error_response(401, "invalid_client", "Bad client credentials"),
                     "invalid_client", "Bad client credentials", 401, id="invalid_client-401"),
        pytest.param(error_response(400, "unsupported_grant_type", "Unsupported grant type: x"),
                     "unsupported_grant_type", "Unsupported grant type: x", 400,
                     id="unsupported_grant_type"),
        pytest.param(ScriptedResponse(400, JSON, b'{"error":"invalid_scope"}'), "invalid_scope",
                     None, 400, id="no-description"),
        pytest.param(ScriptedResponse(200, JSON, b'{"error":"invalid_request",'
                                                 b'"error_description":"missing thing"}'),
                     "invalid_request", "missing thing", 200, id="200-carrying-error"),
        pytest.param(ScriptedResponse(200, JSON, b'{"error":"access_denied","access_token":"x1234"}'),
                     "access_denied", None, 200, id="200-error-and-token"),
    ],
)
def test_oauth_errors(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    response: ScriptedResponse,
    error: str,
    description: str | None,
    status: int,
) -> None:
    session = session_for(server, write_config, clock)
    server.script(response)
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    exc = caught.value
    assert (exc.error, exc.error_description, exc.status) == (error, description, status)
    assert error in str(exc)
    if status == 200:
        assert "carried an error" in str(exc)
    assert session.status().expires_at is None  # nothing was stored


@pytest.mark.parametrize("invalid_client_status", [401, 400])
def test_invalid_client_from_the_real_server(
    tokenflow_server_factory: ServerFactory,
    write_config: WriteConfig,
    clock: FakeClock,
    invalid_client_status: int,
) -> None:
    server = tokenflow_server_factory(clock=clock, invalid_client_status=invalid_client_status)
    text = profile_yaml(server, dialect="rfc6749").replace(server.default_client.secret,
                                                           "wrong-secret-123")
    session = tokenflow.load_config(write_config(text)).session("prod", clock=clock)
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    exc = caught.value
    assert (exc.error, exc.status) == ("invalid_client", invalid_client_status)
    assert exc.error_description == "Bad client credentials"
    assert "wrong-secret-123" not in str(exc)


def test_error_description_repeating_the_refresh_token_is_scrubbed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    refresh = session.token().refresh_token
    assert refresh is not None
    clock.advance(86400)
    server.script(error_response(400, "invalid_request", f"Cannot use refresh token: {refresh}"))
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    exc = caught.value
    assert exc.error == "invalid_request"
    assert exc.error_description == "Cannot use refresh token: ***"
    assert refresh not in str(exc)
    assert refresh not in repr(exc.args)


def test_non_oauth_5xx_is_a_transport_error_naming_the_status(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    echo = (f"<html><body><h1>502 Bad Gateway</h1><p>upstream failed for /api/oauth/token?"
            f"username=alice&password=wonderland&client_secret={server.default_client.secret}"
            f"</p></body></html>").encode()
    server.fail_next(1, 502, body=echo)
    with pytest.raises(TransportError) as caught:
        session.token()
    exc = caught.value
    message = str(exc)
    assert exc.status == 502 and exc.transient
    assert "HTTP 502" in message and "Bad Gateway" in message
    assert "wonderland" not in message
    assert server.default_client.secret not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("response", "kind", "status"),
    [
        pytest.param(ScriptedResponse(200, HTML, b"<!DOCTYPE html><html><title>Sign in</title></html>"),
                     "HTML", 200, id="200-html-login-page"),
        pytest.param(ScriptedResponse(403, HTML, b"<html><h1>Forbidden by proxy</h1></html>"),
                     "HTML", 403, id="403-html"),
        pytest.param(ScriptedResponse(200, {}, b"   <html>no content type</html>"),
                     "HTML", 200, id="html-by-shape"),
        pytest.param(ScriptedResponse(200, {"Content-Type": "text/plain"},
                                      b"Proxy says: service temporarily unavailable"),
                     "non-JSON", 200, id="200-text"),
        pytest.param(ScriptedResponse(407, {"Content-Type": "text/plain"}, b"Proxy auth required"),
                     "non-JSON", 407, id="407-text"),
        pytest.param(ScriptedResponse(200, JSON, b""), "non-JSON", 200, id="empty-body"),
        pytest.param(ScriptedResponse(200, JSON, b"[1, 2]"), "non-JSON", 200, id="json-array"),
        pytest.param(ScriptedResponse(200, JSON, b'{"access_token": "abc'), "non-JSON", 200,
                     id="truncated-json"),
    ],
)
def test_non_oauth_bodies_are_clear_errors(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    response: ScriptedResponse,
    kind: str,
    status: int,
) -> None:
    session = session_for(server, write_config, clock)
    server.script(response)
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    exc = caught.value
    assert exc.status == status
    assert f"HTTP {status} with a {kind} body" in str(exc)
    assert exc.error is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"token_type":"bearer","expires_in":3600,"refresh_token":"r-secret-42"}',
                     id="missing"),
        pytest.param(b'{"access_token":"","refresh_token":"r-secret-42"}', id="empty"),
        pytest.param(b'{"access_token":12345,"refresh_token":"r-secret-42"}', id="number"),
        pytest.param(b'{"access_token":null,"refresh_token":"r-secret-42"}', id="null"),
    ],
)
def test_success_without_access_token_is_a_failure(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, body: bytes
) -> None:
    session = session_for(server, write_config, clock)
    server.script(ScriptedResponse(200, JSON, body))
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    message = str(caught.value)
    assert "without an access_token" in message
    assert "refresh_token" in message  # the field names help...
    assert "r-secret-42" not in message  # ...their values never appear


def chunked(data: bytes, size: int = 64 * 1024) -> bytes:
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_one_mebibyte_is_refused(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, framing: str
) -> None:
    session = session_for(server, write_config, clock)
    padding = "x" * (MAX_BODY + 10)
    body = json.dumps({"access_token": "huge-token-1", "padding": padding}).encode()
    if framing == "chunked":
        response = ScriptedResponse(200, {**JSON, "Transfer-Encoding": "chunked"}, chunked(body))
    else:
        response = ScriptedResponse(200, JSON, body)
    server.script(response)
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    assert f"over {MAX_BODY} bytes" in str(caught.value)
    assert caught.value.status == 200
    # the half-read connection is not reused for the next request
    token = session.token()
    assert server.is_valid_access_token(token.access_token)


def test_body_of_exactly_one_mebibyte_is_read(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    shell = json.dumps({"access_token": "big-token-1", "padding": ""}).encode()
    body = shell.replace(b'""', b'"' + b"x" * (MAX_BODY - len(shell)) + b'"')
    assert len(body) == MAX_BODY
    server.script(ScriptedResponse(200, JSON, body))
    assert session.token().access_token == "big-token-1"


def test_redirect_is_not_followed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    server.script(ScriptedResponse(302, {"Location": server.token_url}, b""))
    with pytest.raises(TransportError) as caught:
        session.token()
    exc = caught.value
    assert exc.status == 302
    assert not exc.transient
    assert "redirect" in str(exc)
    assert "wonderland" not in str(exc)
    assert server.counts["token"] == 1  # following it would have sent the password again


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_retryable_statuses_with_no_retries_are_transient_transport_errors(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, status: int
) -> None:
    session = session_for(server, write_config, clock)
    server.script(error_response(status, "server_error", "try later"))
    with pytest.raises(TransportError) as caught:
        session.token()
    assert caught.value.status == status
    assert caught.value.transient
    assert f"HTTP {status}" in str(caught.value)


def test_every_error_is_one_secret_free_line(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    """A proxy echoing the whole request back, on every kind of failure."""
    session = session_for(server, write_config, clock)
    secret = server.default_client.secret
    echo = f"GET /api/oauth/token?username=alice&password=wonderland&client_secret={secret}"
    responses = [
        ScriptedResponse(400, {"Content-Type": "text/plain"}, echo.encode()),
        ScriptedResponse(200, HTML, f"<html>{echo}</html>".encode()),
        error_response(400, "invalid_request", echo),
        ScriptedResponse(503, {"Content-Type": "text/plain"}, echo.encode()),
    ]
    for response in responses:
        server.script(response)
        with pytest.raises(TokenflowError) as caught:
            session.token()
        message = str(caught.value)
        assert "wonderland" not in message and secret not in message, message
        assert "\n" not in message
        excerpt = getattr(caught.value, "body_excerpt", "")
        assert "wonderland" not in excerpt and secret not in excerpt


# -- older and stricter servers --------------------------------------------------------------------
def test_a_form_encoded_token_reply_is_understood(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    """Some older servers answer application/x-www-form-urlencoded, not JSON."""
    body = b"access_token=form-token-1234&token_type=bearer&expires_in=600&scope=read+write"
    server.script(ScriptedResponse(200, {"Content-Type": "application/x-www-form-urlencoded"}, body))
    token = session_for(server, write_config, clock, grant="client_credentials").token()
    assert token.access_token == "form-token-1234"
    assert token.token_type == "Bearer"
    assert token.scope == "read write"
    assert token.expires_at == pytest.approx(clock() + 600)


def test_a_form_encoded_error_reply_keeps_its_oauth_fields(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    body = b"error=invalid_grant&error_description=Bad+credentials"
    server.script(ScriptedResponse(400, {"Content-Type": "application/x-www-form-urlencoded"}, body))
    with pytest.raises(TokenRequestError) as caught:
        session_for(server, write_config, clock).token()
    assert (caught.value.error, caught.value.error_description) == ("invalid_grant", "Bad credentials")


def test_a_bare_401_takes_the_error_from_www_authenticate(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    """RFC 6750 style: an empty 401 body with the OAuth error in the challenge."""
    challenge = 'Basic realm="oauth", error="invalid_client", error_description="Unknown client"'
    server.script(ScriptedResponse(401, {"WWW-Authenticate": challenge}, b""))
    with pytest.raises(TokenRequestError) as caught:
        session_for(server, write_config, clock).token()
    assert caught.value.error == "invalid_client"
    assert caught.value.error_description == "Unknown client"
    assert "invalid_client: Unknown client" in str(caught.value)


# -- what a token may contain (issue 9, item 3) ------------------------------------------------------
@pytest.mark.parametrize(
    ("access_token", "problem"),
    [
        pytest.param("tok-1234\r\nX-Injected: 1", "a line break at position 9", id="crlf"),
        pytest.param("tok-1234\n", "a line break", id="trailing-newline"),
        pytest.param("tok-1234\x1b[2J\x1b]0;pwned\x07", "a control character", id="escape-sequence"),
        pytest.param("tok-1234\x00", "a control character", id="nul"),
        pytest.param("tok-1234\x85", "a control character", id="c1-control"),
        pytest.param("tok 1234", "whitespace", id="space"),
        pytest.param("tok-1234\u00e9", "a non-ASCII character", id="non-ascii"),
        pytest.param("tok-1234\u202e", "a non-ASCII character", id="bidi-override"),
        pytest.param('tok-1234"; rm -rf /', "the character '\"'", id="quote"),
        pytest.param("tok-1234$(id)", "the character '$'", id="shell"),
        pytest.param("tok=1234", "the character '='", id="equals-inside"),
        pytest.param("t" * 70_000, "over 65536 characters", id="huge"),
    ],
)
def test_access_tokens_outside_the_rfc6750_syntax_are_refused(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, access_token: str,
    problem: str,
) -> None:
    session = session_for(server, write_config, clock)
    server.script(success_response(access_token=access_token))
    with pytest.raises(TokenRequestError) as caught:
        session.token()
    message = str(caught.value)
    assert "unusable token" in message and problem in message
    assert "tok-1234" not in message and "tok 1234" not in message
    assert all(c.isprintable() for c in message)
    assert session.status().expires_at is None  # nothing was stored


@pytest.mark.parametrize("access_token", ["abc", "a.b.c", "A-Z_a~z+0/9==", "x" * 4096 + "="])
def test_rfc6750_tokens_are_accepted(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, access_token: str
) -> None:
    server.script(success_response(access_token=access_token))
    assert session_for(server, write_config, clock).token().access_token == access_token


def test_a_token_is_checked_however_it_is_made() -> None:
    """Stores build tokens with from_dict: a tampered store entry is a damaged one."""
    from tokenflow.tokens import Token

    good = {"access_token": "good-1234", "token_type": "bearer", "expires_at": 2e9,
            "obtained_at": 1e9}
    assert Token.from_dict(good).token_type == "Bearer"
    for bad in ({"access_token": "evil\x1b[31m"}, {"token_type": "DPoP"},
                {"scope": "read\r\nwrite"}, {"access_token": "a\nb"}):
        with pytest.raises(ValueError, match=r"access_token|token_type|scope") as caught:
            Token.from_dict({**good, **bad})
        assert "evil" not in str(caught.value)


# -- error messages: scrub, then cut; never echo a token of the reply (item 8) ----------------------
def test_a_token_cut_at_the_excerpt_boundary_leaks_no_prefix(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    token = session.token().access_token
    # 150-199: the message's own cut; around 196,611: the window a long body is scrubbed in
    # (with blanks before it, the rest of the body collapses into the message)
    for offset, pad in ((150, "x"), (180, "x"), (190, "x"), (199, "x"), (3 * 65537 - 20, " "),
                        (3 * 65537 - 5, " ")):
        body = (pad * offset + " " + token + " trailing text").encode()
        server.script(ScriptedResponse(502, {"Content-Type": "text/plain"}, body))
        server.script(ScriptedResponse(400, {"Content-Type": "text/plain"}, body))
        for _ in range(2):
            with pytest.raises(TokenflowError) as caught:
                session.force_refresh()
            message = str(caught.value) + getattr(caught.value, "body_excerpt", "")
            assert token[:6] not in message, (offset, message)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{'error': 'invalid_grant', 'access_token': 'leaky-access-5150'}",
                     id="python-repr"),
        pytest.param(b"{'access_token': 'leaky-access-5150', 'error': 'server_error'}",
                     id="python-repr-token-first"),
        pytest.param(b'{"error": "x", "access_token": "leaky\\"-access-5150"}', id="escaped-quote"),
        pytest.param(b'{"accessToken": "leaky-access-5150"}', id="camel-case"),
        pytest.param(b"oops: access-token=leaky-access-5150; retry", id="dashed-name"),
        pytest.param(b'{"error": "x", "access_token": "leaky-access-5150', id="truncated-json"),
    ],
)
@pytest.mark.parametrize("status", [400, 200, 503])
def test_token_fields_in_unparsable_bodies_are_scrubbed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, body: bytes, status: int
) -> None:
    session = session_for(server, write_config, clock)
    server.script(ScriptedResponse(status, {"Content-Type": "text/plain"}, body))
    with pytest.raises(TokenflowError) as caught:
        session.token()
    message = str(caught.value) + getattr(caught.value, "body_excerpt", "")
    assert "5150" not in message, message


@pytest.mark.parametrize("field", ["access_token", "refresh_token", "id_token"])
@pytest.mark.parametrize("status", [200, 400])
def test_token_values_of_a_reply_are_never_echoed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, field: str, status: int
) -> None:
    """A reply with an error *and* a token, repeating the token in its description."""
    value = f"reply-{field}-6789"
    body = json.dumps({"error": "server_error", field: value,
                       "error_description": f"could not finish issuing {value}"}).encode()
    server.script(ScriptedResponse(status, JSON, body))
    with pytest.raises(TokenRequestError) as caught:
        session_for(server, write_config, clock).token()
    exc = caught.value
    assert exc.error == "server_error"
    assert exc.error_description == "could not finish issuing ***"
    assert value not in str(exc) and value not in repr(exc.args)


def test_an_error_description_repeating_the_current_access_token_is_scrubbed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    access = session.token().access_token
    server.script(error_response(400, "invalid_request", f"token {access} is not accepted here"))
    with pytest.raises(TokenRequestError) as caught:
        session.force_refresh()
    assert "invalid_request: token *** is not accepted here" in str(caught.value)
    assert access not in str(caught.value)


def test_oauth_error_fields_are_in_the_message_and_printable(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    body = json.dumps({"error": "invalid_grant\x1b[31m",
                       "error_description": "Bad\r\ncredentials\x07 " + "y" * 2000}).encode()
    server.script(ScriptedResponse(400, JSON, body))
    with pytest.raises(TokenRequestError) as caught:
        session_for(server, write_config, clock).token()
    message = str(caught.value)
    assert "token request refused (HTTP 400): invalid_grant?[31m: Bad??credentials?" in message
    assert all(c.isprintable() for c in message)
    assert len(message) < 500


def test_an_error_code_that_repeats_a_token_is_scrubbed(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = session_for(server, write_config, clock)
    refresh = session.token().refresh_token
    assert refresh is not None
    server.script(error_response(400, f"bad_token_{refresh}", "no"))
    with pytest.raises(TokenRequestError) as caught:
        session.force_refresh()
    assert refresh not in str(caught.value)
    assert caught.value.error is not None and refresh not in caught.value.error


@pytest.mark.parametrize("value", ["abc", "NaN", "-Infinity"])
def test_the_cli_warns_on_one_line_about_an_unusable_expires_in(
    server: EmbeddedServer, write_config: WriteConfig, value: str
) -> None:
    from conftest import run_cli

    path = write_config(profile_yaml(server))
    server.script(success_response(access_token="warned-token-1", expires_in=value))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "warned-token-1\n"
    [line] = result.stderr.splitlines()
    assert "expires_in" in line and "default lifetime of 3600 seconds" in line
