"""The token state machine (DESIGN.md section 5) against the embedded server over real HTTP.

Session and server share one FakeClock, so expiry, refresh margins and refresh-token lifetimes
are exercised without sleeping.
"""

from __future__ import annotations

import io
import json
import logging
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, profile_yaml

import tokenflow
from tokenflow.builtins.file_store import FileStore, token_dir
from tokenflow.builtins.memory_store import MemoryStore
from tokenflow.config.model import Config
from tokenflow.engine.session import State, classify
from tokenflow.errors import (
    ReauthenticationRequired,
    StorageError,
    TokenRequestError,
    TransportError,
)
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import OMIT, EmbeddedServer, success_response
from tokenflow.testing.pytest_plugin import ServerFactory
from tokenflow.tokens import Token, fingerprint

WriteConfig = Callable[..., Path]
K = EventKind


class Recorder:
    """A ``tokenflow_event`` observer plugin that keeps every event."""

    def __init__(self) -> None:
        self.events: list[TokenEvent] = []
        self._lock = threading.Lock()

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        with self._lock:
            self.events.append(event)

    def take(self) -> list[EventKind]:
        """The kinds seen since the last call, in order."""
        with self._lock:
            kinds = [e.kind for e in self.events]
            self.events.clear()
        return kinds


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def load(
    server: EmbeddedServer,
    write_config: WriteConfig,
    recorder: Recorder | None = None,
    *,
    text: str | None = None,
    **options: Any,
) -> Config:
    """A config for *server* (``profile_yaml(server, **options)`` unless *text* is given)."""
    path = write_config(text if text is not None else profile_yaml(server, **options))
    host = build_plugin_host([recorder] if recorder is not None else [])
    return tokenflow.load_config(path, plugins=host)


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory, clock: FakeClock) -> EmbeddedServer:
    """The default Team Server (one-day access tokens) on the test's clock."""
    return tokenflow_server_factory(clock=clock)


def stored(config: Config, name: str = "prod") -> Token | None:
    """What the profile's file store holds, read by a fresh store object (as another process would)."""
    session = config.session(name, clock=lambda: 0.0)
    return FileStore(token_dir(config.cache_dir)).load(session.cache_key)


# -- ABSENT -> FRESH -> EXPIRING -> refresh ------------------------------------------------------
def test_first_call_runs_the_grant_and_saves_the_token(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    token = session.token()
    assert server.counts["password"] == 1
    assert server.counts["token"] == 1
    assert server.is_valid_access_token(token.access_token)
    assert token.refresh_token is not None and server.is_valid_refresh_token(token.refresh_token)
    assert token.token_type == "Bearer"
    assert token.expires_at == clock() + 86400
    on_disk = stored(config)
    assert on_disk is not None and on_disk.access_token == token.access_token
    assert recorder.take() == [K.FETCHED, K.STORED]


def test_fresh_token_is_served_without_a_request(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    first = session.token()
    recorder.take()
    clock.advance(3600)
    assert session.token() is first  # from memory: no request, no event
    assert recorder.take() == []
    # a new session (a new process, say) reads it from the file store
    other = config.session("prod", clock=clock)
    assert other.token().access_token == first.access_token
    assert recorder.take() == [K.CACHE_HIT]
    assert server.counts["token"] == 1


def test_refresh_after_the_margin_makes_exactly_one_request(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder, extra_profile={"refresh_margin": 60})
    session = config.session("prod", clock=clock)
    first = session.token()
    recorder.take()
    clock.advance(86400 - 61)  # just outside the margin
    assert session.token() is first
    assert server.counts["token"] == 1
    clock.advance(2)  # 59 s left: inside the margin
    second = session.token()
    assert server.counts["refresh_token"] == 1
    assert server.counts["token"] == 2
    assert second.access_token != first.access_token
    assert second.expires_at == clock() + 86400
    assert session.token() is second
    assert server.counts["token"] == 2
    assert recorder.take() == [K.REFRESHED, K.STORED]


def test_refresh_margin_is_capped_at_half_the_lifetime(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, access_token_lifetime=100)
    config = load(server, write_config, extra_profile={"refresh_margin": 60})
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(45)  # inside the 60 s margin, but the margin is capped at 50 s
    assert session.token() is first
    assert session.status().state is State.FRESH
    assert server.counts["token"] == 1
    clock.advance(6)  # 51 s into a 100 s life
    assert session.status().state is State.EXPIRING
    second = session.token()
    assert second.access_token != first.access_token
    assert server.counts["refresh_token"] == 1


def test_refresh_keeps_the_refresh_token_the_server_does_not_replace(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config)
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(86400)
    second = session.token()  # Team Server (no rotation) sends the same refresh token again
    assert second.refresh_token == first.refresh_token
    clock.advance(86400)
    server.script(success_response(refresh_token=OMIT, expires_in=600))
    third = session.token()  # a reply without refresh_token keeps the previous one
    assert server.requests[-1].grant_type == "refresh_token"
    assert third.access_token not in (first.access_token, second.access_token)
    assert third.refresh_token == first.refresh_token
    on_disk = stored(config)
    assert on_disk is not None and on_disk.refresh_token == first.refresh_token
    assert on_disk.expires_at == clock() + 600


def test_rotated_refresh_token_is_stored_before_token_returns(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, rotate_refresh_tokens=True)
    seen_on_disk: list[str | None] = []
    config_holder: list[Config] = []

    class DiskChecker:
        """On STORED (emitted before token() returns), read the file as another process would."""

        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            if event.kind is EventKind.STORED:
                token = stored(config_holder[0])
                seen_on_disk.append(token.refresh_token if token else None)

    path = write_config(profile_yaml(server))
    config = tokenflow.load_config(path, plugins=build_plugin_host([DiskChecker()]))
    config_holder.append(config)
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(86400)
    second = session.token()
    assert first.refresh_token and second.refresh_token
    assert second.refresh_token != first.refresh_token
    assert not server.is_valid_refresh_token(first.refresh_token)
    assert server.is_valid_refresh_token(second.refresh_token)
    assert seen_on_disk == [first.refresh_token, second.refresh_token]
    # and the rotated one keeps working from another session
    clock.advance(86400)
    third = config.session("prod", clock=clock).token()
    assert server.counts["refresh_token"] == 2
    assert third.refresh_token is not None and server.is_valid_refresh_token(third.refresh_token)


class FailingSaveStore(MemoryStore):
    """A memory store whose saves fail after the first *allowed* ones."""

    def __init__(self, allowed: int) -> None:
        super().__init__()
        self.allowed = allowed

    def save(self, key: str, token: Token) -> None:
        if self.allowed <= 0:
            raise StorageError("disk full")
        self.allowed -= 1
        super().save(key, token)


def test_a_token_that_cannot_be_saved_is_not_handed_out(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config)
    store = FailingSaveStore(allowed=1)
    session = config.session("prod", clock=clock, store=store)
    first = session.token()
    clock.advance(86400)
    with pytest.raises(StorageError, match="disk full"):
        session.token()
    assert server.counts["refresh_token"] == 1
    kept = store.load(session.cache_key)
    assert kept is not None and kept.access_token == first.access_token


# -- refused refresh ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("refuse", "error"),
    [("revoke_refresh_tokens", "invalid_grant"), ("expire_refresh_tokens", "invalid_token")],
)
def test_refused_refresh_runs_the_grant_again(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    recorder: Recorder,
    refuse: str,
    error: str,
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    first = session.token()
    getattr(server, refuse)()
    clock.advance(86400)
    recorder.take()
    second = session.token()
    assert server.counts["refresh_token"] == 1
    assert server.counts["password"] == 2
    assert [r.status for r in server.requests[-2:]] == [400 if error == "invalid_grant" else 401, 200]
    assert second.access_token != first.access_token
    assert second.refresh_token is not None and server.is_valid_refresh_token(second.refresh_token)
    assert recorder.take() == [K.REFRESH_REJECTED, K.REAUTHENTICATED, K.STORED]
    on_disk = stored(config)
    assert on_disk is not None and on_disk.refresh_token == second.refresh_token


def test_refresh_rejected_event_carries_the_oauth_error(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    first = session.token()
    server.expire_refresh_tokens()
    clock.advance(86400)
    session.token()
    rejected = [e for e in recorder.events if e.kind is K.REFRESH_REJECTED]
    assert len(rejected) == 1
    assert rejected[0].error == "invalid_token"
    assert rejected[0].fingerprint == first.fingerprint


def test_refused_refresh_without_credentials_raises_reauthentication_required(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    seeded = load(server, write_config).session("prod", clock=clock).token()  # seed the cache
    config = load(server, write_config, recorder, extra_profile={"password": "{prompt: Password}"})
    session = config.session("prod", clock=clock)
    assert session.token().access_token == seeded.access_token  # cached: no prompt needed
    server.revoke_refresh_tokens()
    clock.advance(86400)
    recorder.take()
    with pytest.raises(ReauthenticationRequired) as caught:
        session.token()
    exc = caught.value
    assert isinstance(exc, TokenRequestError)
    assert exc.error == "invalid_grant"
    assert exc.status == 400
    assert "terminal" in str(exc)
    assert seeded.refresh_token is not None
    assert seeded.refresh_token not in str(exc)
    assert seeded.refresh_token not in (exc.error_description or "")
    assert server.counts["password"] == 1  # the grant was never sent without a password
    assert recorder.take() == [K.REFRESH_REJECTED, K.FAILED]


class LaggingStore(MemoryStore):
    """A shared store whose next reads return an old copy (a replica that lags, no real lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: list[Token] = []

    def load(self, key: str) -> Token | None:
        if self.stale:
            return self.stale.pop()
        return super().load(key)


def test_refused_refresh_uses_the_token_a_sibling_rotated(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock,
    recorder: Recorder,
) -> None:
    server = tokenflow_server_factory(clock=clock, rotate_refresh_tokens=True)
    config = load(server, write_config, recorder)
    store = LaggingStore()
    sibling = config.session("prod", clock=clock, store=store)
    first = sibling.token()
    clock.advance(86400)
    second = sibling.token()  # the sibling rotates the refresh token
    assert second.refresh_token != first.refresh_token
    session = config.session("prod", clock=clock, store=store)
    store.stale = [first, first]  # ...but this session reads the old copy (before and in the lock)
    recorder.take()
    got = session.token()
    assert got == second
    assert server.counts["refresh_token"] == 2  # the old refresh token was tried and refused
    assert server.counts["password"] == 1  # no needless sign-in
    assert recorder.take() == [K.REFRESH_REJECTED]


# -- transient failures ---------------------------------------------------------------------------
def test_transient_failure_while_expiring_serves_the_current_token(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(86400 - 30)  # EXPIRING: 30 s left
    server.fail_next(5, 503)
    recorder.take()
    assert session.token() == first
    assert server.counts["refresh_token"] == 1
    stale = [e for e in recorder.events if e.kind is K.STALE_SERVED]
    assert [e.kind for e in recorder.events] == [K.STALE_SERVED]
    assert stale[0].fingerprint == first.fingerprint
    assert stale[0].error == "TransportError"
    assert "503" in stale[0].detail
    # the stale token is reused for a few seconds without hammering the failing server
    clock.advance(1)
    assert session.token() == first
    assert server.counts["refresh_token"] == 1
    # then retried: still failing -> still served
    clock.advance(5)
    assert session.token() == first
    assert server.counts["refresh_token"] == 2
    server.clear_script()
    clock.advance(5)
    second = session.token()
    assert second.access_token != first.access_token
    assert server.counts["refresh_token"] == 3


def test_transient_failure_of_a_renewing_grant_serves_the_current_token(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    """client_credentials has no refresh token: the grant renews it, with the same grace."""
    config = load(server, write_config, recorder, grant="client_credentials")
    session = config.session("prod", clock=clock)
    first = session.token()
    assert first.refresh_token is None
    clock.advance(86400 - 30)  # EXPIRING: 30 s left
    server.fail_next(5, 503)
    recorder.take()
    assert session.token() == first
    assert recorder.take() == [K.STALE_SERVED]
    assert server.counts["client_credentials"] == 2
    clock.advance(31)  # expired: no more grace
    with pytest.raises(TransportError):
        session.token()


def test_stale_token_is_never_served_past_its_expiry(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config)
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(86400 - 3)  # 3 s left, less than the stale retry interval
    server.fail_next(5, 503)
    assert session.token() == first
    clock.advance(2)
    assert session.token() == first  # still valid: served from memory
    assert server.counts["refresh_token"] == 1
    clock.advance(1)  # now expired
    with pytest.raises(TransportError):
        session.token()
    assert server.counts["refresh_token"] == 2


def test_transient_failure_when_expired_raises(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    first = session.token()
    clock.advance(86400)  # EXPIRED
    server.fail_next(5, 503)
    recorder.take()
    with pytest.raises(TransportError) as caught:
        session.token()
    exc = caught.value
    assert exc.transient and exc.status == 503
    assert "503" in str(exc)
    assert first.refresh_token is not None and first.refresh_token not in str(exc)
    assert server.default_client.secret not in str(exc)
    assert recorder.take() == [K.FAILED]
    assert server.counts["token"] == 2  # retries: 0 -> one attempt


def test_transient_failure_is_retried_when_retries_allow(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder, extra_server={"retries": 2})
    session = config.session("prod", clock=clock)
    server.fail_next(1, 503)
    token = session.token()
    assert server.is_valid_access_token(token.access_token)
    assert server.counts["password"] == 2
    events = recorder.events
    assert [e.kind for e in events] == [K.RETRIED, K.FETCHED, K.STORED]
    assert events[0].detail == "HTTP 503"


def test_force_refresh_is_not_served_stale(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config)
    session = config.session("prod", clock=clock)
    session.token()
    clock.advance(86400 - 30)
    server.fail_next(1, 503)
    with pytest.raises(TransportError):
        session.force_refresh()


# -- grants and stores ---------------------------------------------------------------------------
def test_client_credentials_grant(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder, grant="client_credentials")
    session = config.session("prod", clock=clock)
    first = session.token()
    assert server.counts["client_credentials"] == 1
    assert first.refresh_token is None
    assert server.issued_tokens()[0].username is None
    assert session.token() is first
    clock.advance(86400)  # no refresh token: the grant runs again
    second = session.token()
    assert server.counts["client_credentials"] == 2
    assert server.counts["refresh_token"] == 0
    assert second.access_token != first.access_token
    assert [e for e in recorder.take() if e is not K.STORED] == [K.FETCHED, K.FETCHED]


def test_file_store_keeps_a_private_json_file(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, cache_dir: Path
) -> None:
    config = load(server, write_config, store="file")
    session = config.session("prod", clock=clock)
    token = session.token()
    path = token_dir(cache_dir) / f"{session.cache_key}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())["token"]
    assert data["access_token"] == token.access_token
    assert data["refresh_token"] == token.refresh_token
    assert "prod" not in path.name  # keyed by identity, not by profile name


def test_memory_store_writes_nothing_and_is_private_to_the_session(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, cache_dir: Path
) -> None:
    config = load(server, write_config, store="memory")
    session = config.session("prod", clock=clock)
    token = session.token()
    assert session.token() is token
    assert isinstance(session.store, MemoryStore)
    assert session.store.load(session.cache_key) == token
    assert not token_dir(cache_dir).exists() or not any(token_dir(cache_dir).iterdir())
    config.session("prod", clock=clock).token()  # its own memory: asks the server again
    assert server.counts["password"] == 2


def two_profiles(server: EmbeddedServer, *more: str) -> str:
    """``prod`` plus ``other`` (same identity through ``extends``) and any *more* YAML lines."""
    lines = ["  other:", '    extends: "prod"', '    description: "same user, another name"', *more]
    return profile_yaml(server) + "\n".join(lines) + "\n"


def test_two_profiles_for_one_identity_share_one_token(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, accounts={"alice": "wonderland", "bob": "builder"})
    text = two_profiles(server, "  bob:", '    extends: "prod"', '    username: "bob"',
                        '    password: "builder"')
    config = load(server, write_config, text=text)
    prod = config.session("prod", clock=clock)
    other = config.session("other", clock=clock)
    bob = config.session("bob", clock=clock)
    assert prod.cache_key == other.cache_key
    assert bob.cache_key != prod.cache_key
    token = prod.token()
    assert other.token().access_token == token.access_token
    assert server.counts["token"] == 1
    bobs = bob.token()
    assert server.counts["password"] == 2
    assert bobs.access_token != token.access_token
    assert [t.username for t in server.issued_tokens()].count("bob") == 1
    # a refresh through one profile is seen by the other
    clock.advance(86400)
    refreshed = other.token()
    assert prod.token().access_token == refreshed.access_token
    assert server.counts["refresh_token"] == 1


@pytest.mark.parametrize("state", ["absent", "expiring", "expired"])
def test_concurrent_callers_cause_one_request(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock, state: str
) -> None:
    server = tokenflow_server_factory(clock=clock, latency=0.05)
    config = load(server, write_config)
    session = config.session("prod", clock=clock)
    if state != "absent":
        session.token()
        clock.advance(86400 - 30 if state == "expiring" else 86400)
    server.reset_counts()
    barrier = threading.Barrier(16)
    results: list[Token] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def call() -> None:
        try:
            barrier.wait(timeout=10)
            token = session.token()
            with guard:
                results.append(token)
        except BaseException as exc:  # reported below
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 16
    assert len({t.access_token for t in results}) == 1
    assert server.counts["token"] == 1
    assert server.in_flight_max == 1
    assert server.is_valid_access_token(results[0].access_token)


def test_concurrent_sessions_of_two_profiles_cause_one_request(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, latency=0.05)
    config = load(server, write_config, text=two_profiles(server))
    sessions = [config.session(name, clock=clock) for name in ("prod", "other") for _ in range(4)]
    barrier = threading.Barrier(len(sessions))
    tokens: list[str] = []

    def call(session: tokenflow.TokenSession) -> None:
        barrier.wait(timeout=10)
        tokens.append(session.token().access_token)

    threads = [threading.Thread(target=call, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == len(sessions) and len(set(tokens)) == 1
    assert server.counts["token"] == 1
    assert server.in_flight_max == 1


# -- force_refresh, status, logout --------------------------------------------------------------
def test_force_refresh(server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock) -> None:
    config = load(server, write_config)
    session = config.session("prod", clock=clock)
    first = session.token()
    second = session.force_refresh()  # fresh, but refreshed anyway
    assert server.counts["refresh_token"] == 1
    assert second.access_token != first.access_token
    assert not server.is_valid_access_token(first.access_token)
    assert session.token() is second
    on_disk = stored(config)
    assert on_disk is not None and on_disk.access_token == second.access_token


def test_force_refresh_without_a_token_runs_the_grant(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = load(server, write_config).session("prod", clock=clock)
    session.force_refresh()
    assert server.counts["password"] == 1
    assert server.counts["refresh_token"] == 0


def test_status_reports_each_state_without_network(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, clock: FakeClock
) -> None:
    server = tokenflow_server_factory(clock=clock, access_token_lifetime=1000)
    config = load(server, write_config, extra_profile={"refresh_margin": 100})
    session = config.session("prod", clock=clock)
    absent = session.status()
    assert absent.state is State.ABSENT
    assert absent.expires_at is None and absent.fingerprint is None
    assert not absent.has_refresh_token
    token = session.token()
    report = session.status()
    assert report.state is State.FRESH
    assert report.expires_in == 1000
    assert report.fingerprint == fingerprint(token.access_token)
    assert report.has_refresh_token
    assert report.scope == "read write"
    assert report.store == "file"
    assert report.cache_key == session.cache_key
    assert token.access_token not in repr(report)
    clock.advance(901)
    assert session.status().state is State.EXPIRING
    clock.advance(99)
    expired = session.status()
    assert expired.state is State.EXPIRED
    assert expired.expires_in == 0
    assert server.counts["token"] == 1


def test_logout_forgets_the_token(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    token = session.token()
    recorder.take()
    assert session.logout() is True
    assert recorder.take() == [K.DELETED]
    assert stored(config) is None
    assert session.status().state is State.ABSENT
    assert server.counts["revoke"] == 0
    assert server.is_valid_access_token(token.access_token)  # not revoked by default
    assert session.logout() is False
    session.token()  # signs in again
    assert server.counts["password"] == 2


def test_logout_revoke_teamserver_sends_delete(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock, recorder: Recorder
) -> None:
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    token = session.token()
    recorder.take()
    assert session.logout(revoke=True) is True
    raw = server.last_raw_request
    assert raw is not None
    assert raw.method == "DELETE"
    assert raw.target == f"/api/revoketoken/{token.access_token}"
    assert server.counts["revoke"] == 1
    assert not server.is_valid_access_token(token.access_token)
    assert token.refresh_token is not None and not server.is_valid_refresh_token(token.refresh_token)
    assert recorder.take() == [K.REVOKED, K.DELETED]
    assert stored(config) is None


def test_logout_revoke_rfc6749_posts_rfc7009(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config, dialect="rfc6749")
    session = config.session("prod", clock=clock)
    token = session.token()
    assert session.logout(revoke=True) is True
    raw = server.last_raw_request
    assert raw is not None
    assert (raw.method, raw.target) == ("POST", "/oauth/revoke")
    assert raw.headers["Content-Type"] == "application/x-www-form-urlencoded"
    from urllib.parse import parse_qs

    assert parse_qs(raw.body.decode()) == {
        "token": [token.refresh_token], "token_type_hint": ["refresh_token"]}
    assert raw.headers["Authorization"].startswith("Basic ")
    assert server.requests[-1].status == 200
    assert token.refresh_token is not None and not server.is_valid_refresh_token(token.refresh_token)
    assert not server.is_valid_access_token(token.access_token)


def test_logout_revoke_failure_still_forgets_the_token(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    config = load(server, write_config, extra_server={"revoke_url": server.url + "/nowhere/{token}"})
    session = config.session("prod", clock=clock)
    token = session.token()
    with pytest.raises(TokenRequestError) as caught:
        session.logout(revoke=True)
    assert caught.value.status == 404
    assert "revocation refused" in str(caught.value)
    assert token.access_token not in str(caught.value)
    assert stored(config) is None
    assert session.status().state is State.ABSENT


def test_logout_without_a_token_sends_no_revocation(
    server: EmbeddedServer, write_config: WriteConfig, clock: FakeClock
) -> None:
    session = load(server, write_config).session("prod", clock=clock)
    assert session.logout(revoke=True) is False
    assert server.counts["revoke"] == 0


# -- classify --------------------------------------------------------------------------------------
def plain(expires_at: float, obtained_at: float = 0.0) -> Token:
    return Token(access_token="a" * 8, token_type="Bearer", expires_at=expires_at,
                 obtained_at=obtained_at)


@pytest.mark.parametrize(
    ("token", "now", "margin", "state"),
    [
        (None, 0.0, 60.0, State.ABSENT),
        (plain(1000), 0.0, 60.0, State.FRESH),
        (plain(1000), 939.9, 60.0, State.FRESH),
        (plain(1000), 940.0, 60.0, State.EXPIRING),
        (plain(1000), 999.9, 60.0, State.EXPIRING),
        (plain(1000), 1000.0, 60.0, State.EXPIRED),
        (plain(1000), 5000.0, 60.0, State.EXPIRED),
        # the margin never exceeds half the lifetime
        (plain(100), 49.9, 60.0, State.FRESH),
        (plain(100), 50.0, 60.0, State.EXPIRING),
        (plain(100, obtained_at=50), 74.9, 60.0, State.FRESH),
        (plain(100, obtained_at=50), 75.0, 60.0, State.EXPIRING),
        # no margin: fresh until it expires
        (plain(1000), 999.9, 0.0, State.FRESH),
        (plain(1000), 1000.0, 0.0, State.EXPIRED),
        # an already-dead token (obtained after its expiry) is expired, never fresh
        (plain(1000, obtained_at=2000), 1500.0, 60.0, State.EXPIRED),
    ],
)
def test_classify(token: Token | None, now: float, margin: float, state: State) -> None:
    assert classify(token, now, margin) is state


# -- events ----------------------------------------------------------------------------------------
def test_events_carry_fingerprints_never_tokens(
    tokenflow_server_factory: ServerFactory,
    write_config: WriteConfig,
    clock: FakeClock,
    recorder: Recorder,
) -> None:
    server = tokenflow_server_factory(clock=clock, rotate_refresh_tokens=True)
    config = load(server, write_config, recorder)
    session = config.session("prod", clock=clock)
    tokens = [session.token()]
    config.session("prod", clock=clock).token()  # cache hit from the store
    clock.advance(86400)
    tokens.append(session.token())  # refreshed (rotated)
    server.revoke_refresh_tokens()
    clock.advance(86400)
    tokens.append(session.token())  # rejected, re-authenticated
    clock.advance(86400)
    server.fail_next(1, 503)
    with pytest.raises(TransportError):
        session.token()
    session.logout(revoke=True)
    kinds = [e.kind for e in recorder.events]
    assert kinds == [
        K.FETCHED, K.STORED, K.CACHE_HIT, K.REFRESHED, K.STORED,
        K.REFRESH_REJECTED, K.REAUTHENTICATED, K.STORED, K.FAILED, K.REVOKED, K.DELETED,
    ]
    secrets = {t.access_token for t in tokens} | {t.refresh_token for t in tokens if t.refresh_token}
    secrets |= {server.default_client.secret, server.default_account.password}
    prints = {t.fingerprint for t in tokens}
    for event in recorder.events:
        assert event.profile == "prod"
        assert event.cache_key == session.cache_key
        assert event.duration >= 0
        text = repr(event)
        assert not any(secret in text for secret in secrets), event
        if event.kind is not K.FAILED:
            assert event.fingerprint in prints
    assert recorder.events[0].fingerprint == tokens[0].fingerprint
    assert recorder.events[3].fingerprint == tokens[1].fingerprint
    assert recorder.events[8].fingerprint is None and recorder.events[8].error == "TransportError"


def test_a_raising_observer_does_not_break_token(
    server: EmbeddedServer,
    write_config: WriteConfig,
    clock: FakeClock,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            raise RuntimeError("observer bug")

    path = write_config(profile_yaml(server))
    host = build_plugin_host([Broken(), recorder])
    session = tokenflow.load_config(path, plugins=host).session("prod", clock=clock)
    with caplog.at_level(logging.WARNING, logger="tokenflow.plugins"):
        token = session.token()
    assert server.is_valid_access_token(token.access_token)
    assert recorder.take() == [K.FETCHED, K.STORED]  # the other observer still got them
    assert "observer bug" in caplog.text
    assert token.access_token not in caplog.text


def test_config_from_mapping_with_an_observer(
    server: EmbeddedServer, clock: FakeClock, recorder: Recorder, cache_dir: Path
) -> None:
    data = {
        "version": 1,
        "servers": {"ts": {"token_url": server.token_url, "dialect": "teamserver", "retries": 0}},
        "clients": {"app": {"client_id": server.default_client.client_id,
                            "client_secret": server.default_client.secret}},
        "profiles": {"prod": {"server": "ts", "client": "app", "grant": "password",
                              "username": "alice", "password": "wonderland", "store": "memory"}},
    }
    config = tokenflow.config_from_mapping(data, source="app.yaml",
                                           plugins=build_plugin_host([recorder]))
    session = config.session("prod", clock=clock)
    assert session.headers() == {"Authorization": f"Bearer {session.token().access_token}"}
    assert recorder.take() == [K.FETCHED, K.STORED]
