"""Secrets never leak: the proof asked for in the issue.

"With the root logger and http.client debugging at maximum, run every flow (success, every
error, retries, CLI errors, tracebacks from bugs) and assert that no password, client secret,
access or refresh token appears in any captured output."

Captured: every log record of every logger (root at DEBUG, a handler with no filter of its
own, so only what tokenflow scrubs at the source is clean), fd-level stdout and stderr (what
``http.client`` debugging prints), warnings, ``str``/``repr`` of every exception and object a
user can get hold of, full tracebacks with chained causes, the events observers see, and in
the CLI, ``-vv`` output, crash files and an observer plugin's own file.

The secrets are distinctive (a UUID inside, and characters that URL-encoding changes) and each is
looked for raw, URL-encoded both ways, and as the HTTP Basic credential it becomes.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import re
import socket
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from conftest import profile_yaml, run_cli

import tokenflow
from tokenflow import hookimpl
from tokenflow.config.model import Config
from tokenflow.events import TokenEvent
from tokenflow.plugins.host import build_plugin_host
from tokenflow.redact import Secret
from tokenflow.testing import EmbeddedServer, ScriptedResponse, error_response, success_response

ServerFactory = Callable[..., EmbeddedServer]

USER = f"user-{uuid.uuid4().hex[:8]}"
CLIENT_ID = f"client-{uuid.uuid4().hex[:8]}"
PASSWORD = f"Pw-{uuid.uuid4()} +/&=?%"
CLIENT_SECRET = f"Cs-{uuid.uuid4()} +/&=?%"
WRONG_PASSWORD = f"WrongPw-{uuid.uuid4()}&x"
WRONG_SECRET = f"WrongCs-{uuid.uuid4()}&x"
JSON = {"Content-Type": "application/json;charset=UTF-8"}


def secret_forms(value: str) -> set[str]:
    """How a secret can show up: as is, URL-encoded (both ways), its UUID alone."""
    forms = {value, quote(value, safe=""), quote_plus(value)}
    forms.update(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value))
    return forms


def basic_credentials(client_secret: str) -> str:
    pair = f"{quote_plus(CLIENT_ID)}:{quote_plus(client_secret)}"
    return base64.b64encode(pair.encode()).decode()


class Recorder:
    """An observer plugin that keeps every event it is shown."""

    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        self.events.append(event)


class LeakCheck:
    """Collects everything a user could see and the secrets that must not be in it."""

    def __init__(self, server: EmbeddedServer, log: io.StringIO) -> None:
        self.server = server
        self.log = log
        self.texts: list[str] = []
        self.recorder = Recorder()
        self.errors: list[BaseException] = []
        self.secrets: set[str] = {PASSWORD, CLIENT_SECRET, WRONG_PASSWORD, WRONG_SECRET}
        self.basic = {basic_credentials(s) for s in (CLIENT_SECRET, WRONG_SECRET)}

    def collect_tokens(self, *tokens: str | None) -> None:
        """Remember every token the server has issued so far (revoked ones vanish from it)."""
        for issued in self.server.issued_tokens():
            self.secrets.add(issued.access_token)
            if issued.refresh_token:
                self.secrets.add(issued.refresh_token)
        self.secrets.update(t for t in tokens if t)

    def show(self, *objects: object) -> None:
        """What a user printing or logging these objects would see."""
        for obj in objects:
            self.texts += [str(obj), repr(obj), f"{obj}", "%s %r" % (obj, obj)]  # noqa: UP031

    def expect(self, kind: type[BaseException], call: Callable[[], object]) -> BaseException:
        try:
            call()
        except kind as exc:
            self.errors.append(exc)
            self.collect_tokens()
            return exc
        raise AssertionError(f"expected {kind.__name__}")

    def config(self, data: dict[str, Any], tmp: Path) -> Config:
        host = build_plugin_host(extra_plugins=[self.recorder])
        config = tokenflow.config_from_mapping(data, source="leaks.yaml", base_dir=tmp, plugins=host)
        self.show(config, *config.profiles.values(), *config.servers.values(),
                  *config.clients.values())
        for profile in config.profiles.values():
            self.show(profile.username, profile.grant_options.get("password"), profile.client.client_secret)
        return config

    def verify(self, capfd: pytest.CaptureFixture[str]) -> str:
        """Fail if any form of any secret is anywhere; returns the captured log for more checks."""
        self.collect_tokens()
        for exc in self.errors:
            self.show(exc)
            self.texts.append("".join(traceback.format_exception(exc)))
            for name in ("error", "error_description", "body_excerpt"):
                self.texts.append(str(getattr(exc, name, "")))
        self.show(*self.recorder.events)
        self.texts += [f"{e.kind} {e.profile} {e.fingerprint} {e.error} {e.detail}"
                       for e in self.recorder.events]
        out, err = capfd.readouterr()
        places = {"log": self.log.getvalue(), "stdout": out, "stderr": err,
                  "objects and errors": "\n".join(self.texts)}
        forms = set().union(*(secret_forms(s) for s in self.secrets)) | self.basic
        for where, text in places.items():
            for form in forms:
                assert form not in text, f"a secret ({form[:6]}...) leaked into {where}"
        return places["log"]


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory) -> EmbeddedServer:
    return tokenflow_server_factory(accounts={USER: PASSWORD}, clients={CLIENT_ID: CLIENT_SECRET})


@pytest.fixture
def leaks(server: EmbeddedServer) -> Iterator[LeakCheck]:
    """Root logger and http.client debugging at maximum, warnings recorded."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    debuglevel = http.client.HTTPConnection.debuglevel
    http.client.HTTPConnection.debuglevel = 1
    check = LeakCheck(server, stream)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield check
            check.texts += [str(w.message) for w in caught]
    finally:
        http.client.HTTPConnection.debuglevel = debuglevel
        root.removeHandler(handler)
        root.setLevel(level)


def mapping(
    server: EmbeddedServer,
    *,
    dialect: str = "teamserver",
    client_auth: str = "basic",
    retries: int = 0,
    token_url: str | None = None,
    password: str | dict[str, Any] = PASSWORD,
    client_secret: str = CLIENT_SECRET,
) -> dict[str, Any]:
    revoke = server.revoke_url_template if dialect == "teamserver" else server.rfc7009_revoke_url
    return {
        "version": 1,
        "servers": {"ts": {"token_url": token_url or server.token_url, "dialect": dialect,
                           "client_auth": client_auth, "revoke_url": revoke, "retries": retries}},
        "clients": {"app": {"client_id": CLIENT_ID, "client_secret": client_secret}},
        "profiles": {"prod": {"server": "ts", "client": "app", "grant": "password",
                              "username": USER, "password": password}},
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- in process ----------------------------------------------------------------------------------
def test_successful_flows_leak_nothing(
    server: EmbeddedServer, leaks: LeakCheck, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Team Server: GET with the password and the client secret in the query string
    team = leaks.config(mapping(server), tmp_path).session("prod")
    first = team.token()
    assert server.last_raw_request is not None and "password=" in server.last_raw_request.query
    refreshed = team.force_refresh()  # the refresh token in the query string
    assert server.counts["refresh_token"] == 1
    again = leaks.config(mapping(server), tmp_path).session("prod")
    assert again.token() == refreshed  # read from the store: cache_hit
    leaks.show(first, refreshed, team, again, team.status(), Secret(PASSWORD))
    leaks.collect_tokens(first.access_token, first.refresh_token)
    assert team.logout(revoke=True)  # DELETE /api/revoketoken/<access token>
    assert server.counts["revoke"] == 1

    for auth in ("basic", "body"):  # RFC 6749: POST form body, Basic or body client auth
        session = leaks.config(mapping(server, dialect="rfc6749", client_auth=auth),
                               tmp_path).session("prod")
        token = session.force_refresh() if auth == "body" else session.token()
        leaks.show(token, session)
        leaks.collect_tokens(token.access_token, token.refresh_token)
        assert session.logout(revoke=True)  # RFC 7009 with the refresh token in the body

    # retried twice after 503s, then served
    retried = leaks.config(mapping(server, retries=2), tmp_path).session("prod")
    server.fail_next(2, status=503)
    leaks.show(retried.force_refresh())
    kinds = {e.kind.value for e in leaks.recorder.events}
    assert {"fetched", "refreshed", "cache_hit", "revoked", "deleted", "retried"} <= kinds

    log = leaks.verify(capfd)
    # the capture really saw the HTTP traffic, scrubbed at the source
    assert "GET /api/oauth/token?" in log and "password=***" in log
    assert "/api/revoketoken/***" in log
    assert "Retry" in log


def test_refusals_and_failures_leak_nothing(
    server: EmbeddedServer, leaks: LeakCheck, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tokenflow.errors import (
        ReauthenticationRequired,
        TokenRequestError,
        TransportError,
    )

    wrong_pw = leaks.config(mapping(server, password=WRONG_PASSWORD), tmp_path).session("prod")
    assert leaks.expect(TokenRequestError, wrong_pw.token).error == "invalid_grant"  # type: ignore[attr-defined]
    wrong_cs = leaks.config(mapping(server, dialect="rfc6749", client_secret=WRONG_SECRET),
                            tmp_path).session("prod")
    assert leaks.expect(TokenRequestError, wrong_cs.token).error == "invalid_client"  # type: ignore[attr-defined]
    body_cs = leaks.config(mapping(server, client_secret=WRONG_SECRET), tmp_path).session("prod")
    leaks.expect(TokenRequestError, body_cs.token)

    config = leaks.config(mapping(server), tmp_path)
    session = config.session("prod")
    token = session.token()
    leaks.collect_tokens()

    # the refresh refused: Spring repeats the refresh token in error_description; re-grant
    server.revoke_refresh_tokens()
    session.force_refresh()
    session.logout(revoke=True)
    leaks.show(session.token())  # a new pair
    leaks.collect_tokens()
    # refresh token expired: 401 invalid_token, the token echoed in a WWW-Authenticate header too
    server.expire_refresh_tokens()
    session.force_refresh()
    leaks.collect_tokens()
    # a refresh error that is not a refusal is raised as it is, description scrubbed
    current = session.token()
    server.script(error_response(400, "invalid_request", f"bad refresh_token {current.refresh_token}"))
    exc = leaks.expect(TokenRequestError, session.force_refresh)
    assert "***" in str(exc)

    # refused refresh and no credentials to sign in again: ReauthenticationRequired
    no_creds = mapping(server, password={"command": [sys.executable, "-c", "raise SystemExit(3)"]})
    stranded = leaks.config(no_creds, tmp_path).session("prod")
    assert stranded.cache_key == session.cache_key  # the password is not part of the identity
    server.revoke_refresh_tokens()
    leaks.expect(ReauthenticationRequired, stranded.force_refresh)

    # a 200 carrying an error that repeats the token
    fresh = session.force_refresh()
    leaks.collect_tokens(fresh.access_token, fresh.refresh_token)
    server.script(ScriptedResponse(200, JSON, json.dumps(
        {"error": "server_error", "error_description": f"cannot refresh {fresh.refresh_token}"}
    ).encode()))
    leaks.expect(TokenRequestError, session.force_refresh)

    # a proxy's HTML error pages that echo the request line with the password in it
    echoed = (f"<html><body><h1>Bad gateway</h1><p>GET /api/oauth/token?password="
              f"{quote_plus(PASSWORD)}&client_secret={quote_plus(CLIENT_SECRET)}"
              f"&refresh_token={fresh.refresh_token} {PASSWORD}</p></body></html>").encode()
    server.fail_next(1, status=502, body=echoed)
    leaks.expect(TransportError, session.force_refresh)
    server.fail_next(1, status=400, body=echoed)
    exc = leaks.expect(TokenRequestError, session.force_refresh)
    assert getattr(exc, "body_excerpt", "")

    # retries spent on 503s, and a server that is not there
    retrying = leaks.config(mapping(server, retries=2), tmp_path).session("prod")
    server.fail_next(3, status=503)
    leaks.expect(TransportError, retrying.force_refresh)
    gone = mapping(server, retries=1, token_url=f"http://127.0.0.1:{closed_port()}/api/oauth/token")
    exc = leaks.expect(TransportError, leaks.config(gone, tmp_path).session("prod").token)
    assert "cannot connect" in str(exc)

    # revocation refused (wrong client secret): the local token is dropped, the error raised
    rfc = leaks.config(mapping(server, dialect="rfc6749"), tmp_path).session("prod")
    rfc.token()
    leaks.collect_tokens()
    wrong_revoker = leaks.config(mapping(server, dialect="rfc6749", client_secret=WRONG_SECRET),
                                 tmp_path).session("prod")
    leaks.expect(TokenRequestError, lambda: wrong_revoker.logout(revoke=True))

    # a successful token after all of that, to have one more pair to look for
    ok = leaks.config(mapping(server, dialect="rfc6749", client_auth="body"),
                      tmp_path).session("prod").token()
    leaks.show(token, ok)
    leaks.collect_tokens(token.access_token, ok.refresh_token)

    assert {e.kind.value for e in leaks.recorder.events} >= {
        "failed", "refresh_rejected", "reauthenticated", "retried"}
    assert {"invalid_grant", "invalid_token", "invalid_client"} <= {
        e.error for e in leaks.recorder.events}
    log = leaks.verify(capfd)
    assert "invalid_grant" in log and "Retrying" in log


# -- the command line ----------------------------------------------------------------------------
OBSERVER = '''
import os
from tokenflow import hookimpl

@hookimpl
def tokenflow_event(event):
    with open(os.environ["TF_TEST_EVENTS"], "a") as handle:
        handle.write(repr(event) + " " + str(event.detail) + "\\n")
'''

LEAKY_STORE = '''
import contextlib
from tokenflow import hookimpl

class LeakyStore:
    def load(self, key):
        return None
    def save(self, key, token):
        raise RuntimeError(
            f"quota exceeded saving {token.access_token} (refresh {token.refresh_token})")
    def delete(self, key):
        pass
    def lock(self, key):
        return contextlib.nullcontext()

@hookimpl
def tokenflow_register_stores(register):
    register("leaky", lambda options, context: LeakyStore())
'''


def test_the_cli_leaks_nothing(
    server: EmbeddedServer, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "tf_observer.py").write_text(OBSERVER)
    (tmp_path / "tf_leaky_store.py").write_text(LEAKY_STORE)
    events = tmp_path / "events.log"
    env = {"PYTHONPATH": str(tmp_path), "TF_TEST_EVENTS": str(events),
           "TOKENFLOW_PLUGINS": "tf_observer,tf_leaky_store"}
    texts: list[str] = []
    codes: dict[str, int] = {}
    secrets = {PASSWORD, CLIENT_SECRET, WRONG_PASSWORD, WRONG_SECRET}

    def cli(label: str, command: str, *args: str, config: Path, stdout_is_token: bool = False) -> str:
        """Run COMMAND -vv -c CONFIG ARGS; keep what it printed and the tokens issued so far."""
        result = run_cli(command, "-vv", "-c", str(config), *args, env=env)
        codes[label] = result.returncode
        texts.append(result.stderr)
        if stdout_is_token:  # printing the token is the point of `token`
            printed = result.stdout.strip()
            secrets.add(json.loads(printed)["access_token"] if printed.startswith("{") else printed)
        else:
            texts.append(result.stdout)
        for issued in server.issued_tokens():
            secrets.update(s for s in (issued.access_token, issued.refresh_token) if s)
        return result.stderr

    teamserver = write_config(profile_yaml(server, extra_server={"retries": 2}), name="ts.yaml")
    rfc = write_config(profile_yaml(server, dialect="rfc6749"), name="rfc.yaml")
    body = write_config(profile_yaml(server, dialect="rfc6749", client_auth="body"), name="body.yaml")
    # another scope, so that no cached token answers for them
    wrong_pw = write_config(profile_yaml(server, extra_profile={"password": WRONG_PASSWORD,
                                                                "scope": "other"}),
                            name="wrong-pw.yaml")
    wrong_cs = write_config(profile_yaml(server, dialect="rfc6749",
                                         extra_profile={"scope": "other"}).replace(
        json.dumps(CLIENT_SECRET), json.dumps(WRONG_SECRET)), name="wrong-cs.yaml")
    gone = write_config(profile_yaml(server).replace(server.url, f"http://127.0.0.1:{closed_port()}"),
                        name="gone.yaml")
    leaky = write_config(profile_yaml(server, store="leaky"), name="leaky.yaml")

    cli("token", "token", "prod", config=teamserver, stdout_is_token=True)
    cli("refresh", "token", "prod", "--force-refresh", config=teamserver, stdout_is_token=True)
    cli("rfc", "token", "prod", "--format", "json", config=rfc, stdout_is_token=True)
    cli("body", "token", "prod", config=body, stdout_is_token=True)
    cli("status", "status", config=teamserver)
    cli("exec", "exec", "prod", "--", sys.executable, "-c", "pass", config=teamserver)
    server.fail_next(2, status=503)
    cli("retried", "token", "prod", "--force-refresh", config=teamserver, stdout_is_token=True)
    server.fail_next(3, status=503)
    cli("503", "token", "prod", "--force-refresh", config=teamserver)
    server.fail_next(3, status=502, body=f"<html>{PASSWORD} {quote_plus(CLIENT_SECRET)}</html>".encode())
    cli("502", "token", "prod", "--force-refresh", config=teamserver)
    unused_access, unused_refresh = str(uuid.uuid4()), str(uuid.uuid4())
    secrets.update((unused_access, unused_refresh))  # in a reply carrying an error: never remembered
    server.script(success_response(error="server_error", access_token=unused_access,
                                   refresh_token=unused_refresh))
    cli("200-error", "token", "prod", "--force-refresh", config=teamserver)
    server.revoke_refresh_tokens()
    cli("re-grant", "token", "prod", "--force-refresh", config=teamserver, stdout_is_token=True)
    cli("wrong-password", "token", "prod", config=wrong_pw)
    cli("wrong-secret", "token", "prod", config=wrong_cs)
    cli("refused", "token", "prod", config=gone)
    bug = cli("bug", "token", "prod", config=leaky)
    cli("logout", "logout", "prod", "--revoke", config=teamserver)
    cli("logout-rfc", "logout", "prod", "--revoke", config=rfc)

    assert codes == {
        "token": 0, "refresh": 0, "rfc": 0, "body": 0, "status": 0, "exec": 0, "retried": 0,
        "503": 1, "502": 1, "200-error": 1, "re-grant": 0, "wrong-password": 1,
        # "refused" is a connection refused: a network failure, exit 4
        "wrong-secret": 1, "refused": 4, "bug": 3, "logout": 0, "logout-rfc": 0,
    }
    crash = re.search(r"traceback written to (\S+)", bug)
    assert crash is not None, bug
    crash_text = Path(crash[1]).read_text()
    assert "RuntimeError: quota exceeded saving ***" in crash_text
    texts.append(crash_text)
    event_text = events.read_text()
    assert "fetched" in event_text and "refreshed" in event_text and "failed" in event_text
    texts.append(event_text)

    forms = set().union(*(secret_forms(s) for s in secrets))
    forms |= {basic_credentials(CLIENT_SECRET), basic_credentials(WRONG_SECRET)}
    everything = "\n".join(texts)
    assert "password=***" in everything  # -vv really showed the requests
    for form in forms:
        assert form not in everything, f"a secret ({form[:6]}...) leaked into the CLI's output"


# -- nothing a server or a tampered cache sends reaches a terminal or a header (issue 9) -----------
HOSTILE_TOKEN = "tok-4321\r\nX-Injected: yes\x1b]0;pwned\x07\x1b[2J"


def test_the_cli_never_prints_a_hostile_token(
    server: EmbeddedServer, write_config: Callable[..., Path]
) -> None:
    """``curl -H "Authorization: Bearer $(tokenflow token p)"`` must not get a second header."""
    path = write_config(profile_yaml(server))
    for fmt in ("raw", "header", "json", "env", "exec-credential"):
        server.script(success_response(access_token=HOSTILE_TOKEN))
        result = run_cli("token", "prod", "-c", str(path), "--format", fmt)
        assert result.returncode == 1, (fmt, result.stderr)
        assert result.stdout == ""
        assert "access_token was refused: it has a line break" in result.stderr
        assert "\x1b" not in result.stderr and "\r" not in result.stderr
        assert "tok-4321" not in result.stderr and "X-Injected" not in result.stderr


def test_a_dpop_token_is_not_printed_as_bearer(
    server: EmbeddedServer, write_config: Callable[..., Path]
) -> None:
    path = write_config(profile_yaml(server))
    server.script(success_response(access_token="dpop-bound-token-1", token_type="DPoP"))
    result = run_cli("token", "prod", "-c", str(path), "--format", "header")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "token_type is 'DPoP', not Bearer" in result.stderr
    assert "dpop-bound-token-1" not in result.stderr


@pytest.mark.parametrize("field", ["access_token", "token_type", "scope"])
def test_a_tampered_cache_file_is_never_printed(
    server: EmbeddedServer, write_config: Callable[..., Path], cache_dir: Path, field: str
) -> None:
    """A cache entry rewritten (with a valid checksum) to carry control characters: neither the
    fast path nor the full path prints it; the full path sets it aside and fetches anew."""
    from tokenflow.base import cachefile

    path = write_config(profile_yaml(server))
    first = run_cli("token", "prod", "-c", str(path))
    assert first.returncode == 0, first.stderr
    again = run_cli("token", "prod", "-c", str(path))  # now the fast path answers from cache
    assert again.stdout == first.stdout
    entries = [p for p in cache_dir.rglob("*.json")
               if b'"access_token"' in p.read_bytes() and b"checksum" in p.read_bytes()]
    assert len(entries) == 1
    entry = entries[0]
    token = cachefile.decode(entry.read_bytes())
    token[field] = {"access_token": HOSTILE_TOKEN, "token_type": "DPoP",
                    "scope": "read\x1b[2Jwrite"}[field]
    entry.write_bytes(cachefile.encode(token))

    for fmt in ("raw", "header", "json"):
        result = run_cli("token", "prod", "-c", str(path), "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout + result.stderr
        assert "X-Injected" not in result.stdout and "DPoP" not in result.stdout
    status = run_cli("status", "-c", str(path))
    assert "\x1b" not in status.stdout + status.stderr
    if field != "scope":  # a scope is only printed JSON-escaped by `token`
        assert server.counts["token"] == 2  # the damaged entry was replaced by a fresh token


def test_the_repr_of_a_token_request_and_its_reply_shows_no_credential() -> None:
    """A traceback that shows locals, or a debug %r, prints these objects."""
    from tokenflow.base.oauthforms import rfc6749_token_request, teamserver_token_request
    from tokenflow.wire import HttpRequest, HttpResponse

    params = {"grant_type": "password", "username": "ann", "password": "pw-4711-secret"}
    for build, auth in ((rfc6749_token_request, "basic"), (rfc6749_token_request, "body"),
                        (teamserver_token_request, "basic")):
        request = HttpRequest(*build("https://ts.example/token?tenant=t1", params, "app",
                                     "client-secret-0815", auth))
        shown = repr(request)
        assert request.method in shown and "https://ts.example/token?..." in shown
        for secret in ("pw-4711-secret", "client-secret-0815", "tenant=t1",
                       base64.b64encode(b"app:client-secret-0815").decode()):
            assert secret not in shown
    reply = HttpResponse(200, {"Content-Type": "application/json"},
                         b'{"access_token": "at-secret-1", "refresh_token": "rt-secret-2"}')
    assert "200" in repr(reply) and "secret" not in repr(reply)
