"""A Hypothesis state machine driving one TokenSession against one embedded server.

Time, refresh-token revocation and expiry, transient 503s and process restarts are interleaved at
random; after every step the engine's promises must hold:

* a token handed out is never expired at that moment, and it is the one in the store;
* the server never sees two token requests at once (single flight);
* a refresh token is never lost: after a successful ``token()`` the stored refresh token is still
  valid on the server, unless the server itself invalidated it and has not issued a new token
  since (with Spring's reuse of a live access token, a re-grant can hand back a dead one);
* a transient failure surfaces only when there is no valid token to fall back on.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import FakeClock, profile_yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tokenflow
from tokenflow.engine.session import State
from tokenflow.errors import TransportError
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import EmbeddedServer
from tokenflow.tokens import Token

LIFETIME = 600  # seconds an access token lives
MARGIN = 60  # the profile's refresh margin
MAX_PENDING_FAILURES = 3

SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)


class Recorder:
    def __init__(self) -> None:
        self.kinds: list[EventKind] = []
        self._lock = threading.Lock()

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        with self._lock:
            self.kinds.append(event.kind)

    def take(self) -> list[EventKind]:
        with self._lock:
            kinds, self.kinds = self.kinds, []
        return kinds


class TokenMachine(RuleBasedStateMachine):
    rotate = False
    examples = 0
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.clock = FakeClock()
        self.server = EmbeddedServer(
            clock=self.clock,
            rotate_refresh_tokens=self.rotate,
            access_token_lifetime=LIFETIME,
            refresh_token_lifetime=None,  # only the expire rule expires them
        ).start()
        self.root = Path(tempfile.mkdtemp(prefix="tokenflow-machine-"))
        store = f"{{file: {{path: {self.root / 'tokens'}}}}}"
        self.path = self.root / "tokenflow.yaml"
        self.path.write_text(profile_yaml(self.server, store=store,
                                          extra_profile={"refresh_margin": MARGIN}))
        self.recorder = Recorder()
        self.session = self._new_session()
        self.pending_failures = 0  # 503s queued on the server, not yet consumed
        self.server_invalidated = False  # the server dropped refresh tokens behind our back
        self.last_access: str | None = None

    def _new_session(self) -> tokenflow.TokenSession:
        host = build_plugin_host([self.recorder])
        config = tokenflow.load_config(self.path, plugins=host, cache_dir=self.root / "cache")
        return config.session("prod", clock=self.clock)

    def teardown(self) -> None:
        self.session.close()
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------------------
    @rule(seconds=st.one_of(st.integers(1, 6), st.integers(1, 90)))
    def advance_a_little(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.integers(LIFETIME - MARGIN, 5 * LIFETIME))
    def advance_a_lot(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def revoke_refresh_tokens(self) -> None:
        self.server.revoke_refresh_tokens()
        self.server_invalidated = True

    @rule()
    def expire_refresh_tokens(self) -> None:
        self.server.expire_refresh_tokens()
        self.server_invalidated = True

    @precondition(lambda self: self.pending_failures < MAX_PENDING_FAILURES)
    @rule()
    def inject_transient_failure(self) -> None:
        self.server.fail_next(1, 503)
        self.pending_failures += 1

    @rule()
    def restart_the_process(self) -> None:
        self.session.close()
        self.session = self._new_session()

    @rule()
    def get_token(self) -> None:
        self._call(force=False)

    @rule()
    def force_refresh(self) -> None:
        self._call(force=True)

    # -- the checks --------------------------------------------------------------------------------
    def _call(self, *, force: bool) -> None:
        type(self).steps += 1
        before_state = self.session.status().state
        before_stored = self.session.store.load(self.session.cache_key)
        before_requests = self.server.counts["token"]
        self.recorder.take()
        try:
            token = self.session.force_refresh() if force else self.session.token()
        except TransportError as exc:
            made = self.server.counts["token"] - before_requests
            assert exc.transient and exc.status == 503
            assert self.pending_failures > 0, "a 503 nobody injected"
            assert made == 1
            assert force or before_state in (State.ABSENT, State.EXPIRED), before_state
            self.pending_failures -= 1
            return
        made = self.server.counts["token"] - before_requests
        kinds = self.recorder.take()
        if self.pending_failures and made:
            # the first request met the injected 503: only an EXPIRING token may be served stale
            assert not force
            assert made == 1
            assert before_state is State.EXPIRING
            assert before_stored is not None and token == before_stored
            assert kinds == [EventKind.STALE_SERVED]
            self.pending_failures -= 1
        if force:
            assert made >= 1
        self._check_handed_out(token)

    def _check_handed_out(self, token: Token) -> None:
        now = self.clock()
        assert token.expires_at > now, "handed out an expired token"
        saved = self.session.store.load(self.session.cache_key)
        assert saved is not None and saved.access_token == token.access_token, "not saved"
        assert saved.refresh_token == token.refresh_token
        if token.access_token != self.last_access:
            self.server_invalidated = False  # a new token came from the server since
            self.last_access = token.access_token
        if not self.server_invalidated:
            assert token.refresh_token is not None
            assert self.server.is_valid_refresh_token(token.refresh_token), "refresh token lost"

    @invariant()
    def single_flight(self) -> None:
        assert self.server.in_flight_max <= 1

    @invariant()
    def server_is_healthy(self) -> None:
        assert self.server.errors == []


class RotatingTokenMachine(TokenMachine):
    rotate = True


@pytest.mark.parametrize("machine", [TokenMachine, RotatingTokenMachine], ids=["reuse", "rotate"])
def test_token_session_state_machine(machine: type[TokenMachine]) -> None:
    machine.examples = machine.steps = 0
    run_state_machine_as_test(machine, settings=SETTINGS)  # type: ignore[no-untyped-call]
    print(f"{machine.__name__}: {machine.examples} examples, {machine.steps} token calls")
    assert machine.examples >= 10
