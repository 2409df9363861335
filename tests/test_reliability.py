"""Reliability promises of issue 4, proven by injecting the fault (docs/reliability.md lists them).

Everything is real: the embedded OAuth server on loopback, the file store on disk, worker
processes (tests/reliability_worker.py) started with ``sys.executable`` and killed with SIGKILL.
Fake clocks appear only where waiting for real time would make a test slow.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest
from conftest import FakeClock, profile_yaml

import tokenflow.engine.session as session_module
from tokenflow import load_config
from tokenflow.base import cachefile
from tokenflow.builtins.file_store import SWEEP_MARKER, FileStore
from tokenflow.engine.session import STALE_RETRY_INTERVAL, TokenSession
from tokenflow.errors import StorageError, TokenRequestError, TransportError
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import OMIT, EmbeddedServer, error_response, success_response
from tokenflow.testing.pytest_plugin import ServerFactory
from tokenflow.tokens import MAX_SANE_LIFETIME, Token, parse_token_response

WORKER = Path(__file__).with_name("reliability_worker.py")
WriteConfig = Callable[..., Path]
posix_only = pytest.mark.skipif(os.name != "posix", reason="fork, SIGKILL and file modes are POSIX")


# -- helpers -------------------------------------------------------------------------------------
class Recorder:
    """An event observer plugin that keeps every event (and can run a callback on one)."""

    def __init__(self, on_event: Callable[[TokenEvent], None] | None = None) -> None:
        self.events: list[TokenEvent] = []
        self._on_event = on_event

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events]

    def count(self, kind: EventKind) -> int:
        return self.kinds().count(kind)


def session_for(path: Path, recorder: Recorder | None = None, **options: Any) -> TokenSession:
    """A session of profile ``prod`` from a freshly loaded config (so nothing is in memory)."""
    plugins = build_plugin_host(extra_plugins=[recorder] if recorder is not None else [])
    config = load_config(path, plugins=plugins)
    return config.session("prod", **options) if options else config.session("prod")


def file_store(session: TokenSession) -> FileStore:
    assert isinstance(session.store, FileStore)
    return session.store


def token_path(session: TokenSession) -> Path:
    return file_store(session).path(session.cache_key)


def make_expiring(session: TokenSession, left: float = 30) -> Token:
    """Rewrite the stored token so it expires in *left* seconds after an hour of life.

    With ``refresh_margin: 60`` every caller then sees it EXPIRING: still valid, refresh now.
    """
    token = session.store.load(session.cache_key)
    assert token is not None
    now = time.time()
    data = token.to_dict()
    data["expires_at"] = now + left
    data["obtained_at"] = now - 3600
    token_path(session).write_bytes(cachefile.encode(data))
    return Token.from_dict(data)


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


class Worker:
    """A reliability_worker.py process; its stdout lines arrive on a queue (reads never hang)."""

    def __init__(self, *args: str, stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = 60) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker {self.proc.pid} said nothing for {timeout}s") from None
        assert line is not None, f"worker {self.proc.pid} exited (status {self.proc.poll()})"
        return line

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # this process only, by its own handle
            self.proc.wait(timeout=10)


@contextmanager
def workers(tmp_path: Path, count: int, *args: str) -> Iterator[list[Worker]]:
    log = (tmp_path / "workers.stderr").open("wb")
    started: list[Worker] = []
    try:
        for _ in range(count):
            started.append(Worker(*args, stderr=log))
        yield started
    finally:
        for worker in started:
            worker.stop()
        log.close()


def worker_stderr(tmp_path: Path) -> str:
    path = tmp_path / "workers.stderr"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelname == "WARNING"]


# -- 1. single flight ----------------------------------------------------------------------------
@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("rotate", [False, True], ids=["reused-refresh-token", "rotation"])
def test_single_flight_8_processes_x_16_threads(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, tmp_path: Path,
    rotate: bool,
) -> None:
    # latency keeps the one refresh in flight while the other 127 callers arrive
    server = tokenflow_server_factory(rotate_refresh_tokens=rotate, latency=0.2)
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    session = session_for(config)
    first = session.token()
    make_expiring(session)
    server.reset_counts()

    with workers(tmp_path, 8, "flight", str(config), "prod", "16") as procs:
        for proc in procs:
            assert proc.line() == "ready", worker_stderr(tmp_path)
        for proc in procs:  # the start signal, as close together as a test can send it
            proc.send("go")
        go = time.monotonic()
        results = [json.loads(proc.line()) for proc in procs]
        print(f"\n128 callers served in {time.monotonic() - go:.2f}s; "
              f"requests at once at most: {server.in_flight_max}")

    errors = [e for r in results for e in r["errors"]]
    tokens = [t for r in results for t in r["tokens"]]
    assert errors == []
    assert len(tokens) == 8 * 16
    assert server.counts["refresh_token"] == 1, server.requests
    assert server.counts["password"] == 0
    assert server.counts["token"] == 1
    new = tokens[0]
    assert set(tokens) == {new}
    assert new != first.access_token
    assert server.is_valid_access_token(new)
    stored = file_store(session).load(session.cache_key)
    assert stored is not None and stored.access_token == new
    assert stored.refresh_token is not None and server.is_valid_refresh_token(stored.refresh_token)


@pytest.mark.parametrize("rotate", [False, True], ids=["reused-refresh-token", "rotation"])
def test_single_flight_32_threads_in_process(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, rotate: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # threads waiting for a renewal must be woken when it ends, not when their wait runs out
    monkeypatch.setattr(session_module, "FLIGHT_WAIT", 600.0)
    server = tokenflow_server_factory(rotate_refresh_tokens=rotate, latency=0.1)
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    first = session_for(config).token()
    make_expiring(session_for(config))
    server.reset_counts()
    # four independently loaded configs (four sessions), eight threads on each
    sessions = [session_for(config) for _ in range(4)]
    barrier = threading.Barrier(32)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def call(session: TokenSession) -> None:
        barrier.wait()
        try:
            tokens.append(session.token().access_token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(sessions[i % 4],)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(tokens) == 32
    assert len(set(tokens)) == 1 and tokens[0] != first.access_token
    assert server.counts["refresh_token"] == 1
    assert server.counts["token"] == 1
    assert server.in_flight_max == 1


@posix_only
def test_a_caller_waits_for_another_processs_renewal_and_reads_it_without_the_lock(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    """The engine waits for the holder of the store's lock (a shared flock, which all waiters
    get at once) and reads the token it saved; it takes the lock itself only if that token is
    not fresh. Here a "process" (another store object with its own lock descriptor) renews."""
    server = tokenflow_server_factory()
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    session = session_for(config)
    session.token()
    make_expiring(session)
    directory = file_store(session).directory
    renewed = Token("renewed-by-the-other-process", "Bearer", time.time() + 3600, time.time(),
                    "rt-renewed")
    locked, done = threading.Event(), threading.Event()

    def other_process() -> None:
        other = FileStore(directory)
        with other.lock(session.cache_key):
            locked.set()
            time.sleep(0.3)  # renewing; the caller below must wait for it, not go around it
            other.save(session.cache_key, renewed)
        done.set()

    class CountingStore(FileStore):
        locks = 0

        def lock(self, key: str) -> Any:
            CountingStore.locks += 1
            return super().lock(key)

    waiter = load_config(config).session("prod", store=CountingStore(directory))
    server.reset_counts()
    thread = threading.Thread(target=other_process)
    thread.start()
    try:
        assert locked.wait(30)
        token = waiter.token()
    finally:
        thread.join(timeout=30)
    assert done.is_set()
    assert token.access_token == "renewed-by-the-other-process"
    assert CountingStore.locks == 0  # read after the holder let go, without taking the lock
    assert server.counts["token"] == 0

    session.force_refresh()  # a token the server knows again
    make_expiring(session)  # and nobody renewing: a caller takes the lock and refreshes itself
    alone = load_config(config).session("prod", store=CountingStore(directory))
    server.reset_counts()
    assert alone.token().access_token != "renewed-by-the-other-process"
    assert CountingStore.locks == 1 and server.counts["token"] == 1


def test_threads_waiting_for_a_renewal_that_fails_are_woken_and_try_themselves(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "FLIGHT_WAIT", 600.0)  # woken by the failure, not this
    server = tokenflow_server_factory(latency=0.2)
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    session = session_for(config)
    session.token()
    make_expiring(session, left=-10)  # expired: nothing stale to serve
    session = session_for(config)
    server.fail_next(8, status=400, body=b'{"error": "invalid_request"}',
                     headers={"Content-Type": "application/json"})
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            session.token()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 8 and all(isinstance(e, TokenRequestError) for e in errors)


def test_a_store_whose_wait_for_a_writer_fails_is_locked_as_usual(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    """wait_for_writer is only a shortcut: a store whose wait raises is not a broken session."""
    server = tokenflow_server_factory()
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    session = session_for(config)
    first = session.token()
    make_expiring(session)

    class BrokenWait(FileStore):
        def wait_for_writer(self, key: str, timeout: float) -> bool:
            raise OSError(37, "No locks available")

    broken = load_config(config).session("prod", store=BrokenWait(file_store(session).directory))
    server.reset_counts()
    token = broken.token()
    assert token.access_token != first.access_token and server.counts["token"] == 1


# -- 2. rotation-safe ----------------------------------------------------------------------------
def test_rotated_refresh_token_is_on_disk_before_the_token_is_handed_out(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    on_disk_at_refreshed: list[str | None] = []
    paths: list[Path] = []

    def observe(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESHED:
            data = cachefile.read(str(paths[0]))
            on_disk_at_refreshed.append(data["refresh_token"] if data else None)

    session = session_for(config, Recorder(observe))
    paths.append(token_path(session))
    previous = session.token()
    for round_ in range(6):
        if round_ % 2:
            token = session.force_refresh()
        else:
            make_expiring(session)
            token = session_for(config, Recorder(observe)).token()  # the EXPIRING path
        assert token.refresh_token is not None and token.refresh_token != previous.refresh_token
        assert on_disk_at_refreshed[-1] == token.refresh_token  # saved before REFRESHED fired
        data = cachefile.read(str(paths[0]))
        assert data is not None and data["refresh_token"] == token.refresh_token
        assert server.is_valid_refresh_token(token.refresh_token)
        assert previous.refresh_token is not None
        assert not server.is_valid_refresh_token(previous.refresh_token)  # really rotated
        previous = token
    assert len(on_disk_at_refreshed) == 6
    assert server.counts["password"] == 1


class SiblingRotatesWhileWeRefresh:
    """A FileStore as another process sees it: between our read under the lock and our refresh,
    a sibling that does not share our lock (another host on a shared cache, an older tokenflow)
    refreshes the same refresh token, the server rotates it, and the sibling saves its token."""

    def __init__(self, inner: FileStore, sibling: Callable[[Token], None]) -> None:
        self.inner = inner
        self.sibling = sibling
        self.locked = False
        self.loads_under_lock = 0

    def load(self, key: str) -> Token | None:
        token = self.inner.load(key)
        if self.locked:
            self.loads_under_lock += 1
            if self.loads_under_lock == 1 and token is not None:
                self.sibling(token)
        return token

    def save(self, key: str, token: Token) -> None:
        self.inner.save(key, token)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self.inner.lock(key):
            self.locked = True
            try:
                yield
            finally:
                self.locked = False


def test_refused_refresh_rereads_the_store_and_uses_a_siblings_rotated_token(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    config = write_config(profile_yaml(server, extra_profile={"refresh_margin": 60}))
    setup = session_for(config)
    setup.token()
    expiring = make_expiring(setup)
    inner = file_store(setup)
    client = server.default_client
    sibling_tokens: list[Token] = []

    def sibling(old: Token) -> None:  # a real refresh over HTTP, then an atomic save
        assert old.refresh_token is not None
        query = urlencode({"grant_type": "refresh_token", "refresh_token": old.refresh_token,
                           "client_id": client.client_id, "client_secret": client.secret})
        with urlopen(f"{server.token_url}?{query}", timeout=10) as reply:
            token = parse_token_response(reply.status, reply.read(), now=time.time(),
                                         default_lifetime=3600)
        inner.save(setup.cache_key, token)
        sibling_tokens.append(token)

    store = SiblingRotatesWhileWeRefresh(inner, sibling)
    recorder = Recorder()
    server.reset_counts()
    token = session_for(config, recorder, store=store).token()

    assert len(sibling_tokens) == 1
    assert token.access_token == sibling_tokens[0].access_token  # the sibling's, not a new grant
    assert token.refresh_token != expiring.refresh_token
    assert server.counts["password"] == 0
    assert server.counts["refresh_token"] == 2  # the sibling's, and ours (refused)
    assert store.loads_under_lock == 2  # the read under the lock, and one re-read
    assert EventKind.REFRESH_REJECTED in recorder.kinds()
    assert EventKind.REAUTHENTICATED not in recorder.kinds()


def test_refused_refresh_without_a_sibling_signs_in_again(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_profile={"refresh_margin": 60}))
    session_for(config).token()
    expiring = make_expiring(session_for(config))
    tokenflow_server.revoke_refresh_tokens()
    tokenflow_server.reset_counts()
    recorder = Recorder()
    token = session_for(config, recorder).token()
    assert token.expires_at > expiring.expires_at + 3600  # signed in again (Spring may hand
    # out the same live access token for a repeated grant, so compare lifetimes, not values)
    assert tokenflow_server.counts["refresh_token"] == 1
    assert tokenflow_server.counts["password"] == 1
    assert recorder.kinds()[:2] == [EventKind.REFRESH_REJECTED, EventKind.REAUTHENTICATED]


# -- 2. crash-safe -------------------------------------------------------------------------------
KILLS = 50


def settle(server: EmbeddedServer) -> None:
    """Wait until every token request the server has started is answered (or 5 s)."""
    deadline = time.monotonic() + 5
    while server.counts["token"] != len(server.requests) and time.monotonic() < deadline:
        time.sleep(0.005)


@posix_only
@pytest.mark.slow
def test_kill_9_during_refreshes_never_corrupts_the_cache(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    config = write_config(profile_yaml(server))
    checker = session_for(config)
    path = token_path(checker)
    checker.token()
    rng = random.Random(4)
    outcomes = {"current": 0, "one behind": 0, "absent": 0, "re-granted": 0}
    started = time.monotonic()
    with workers(tmp_path, 1, "zygote", str(config), "prod") as (zygote,):
        assert zygote.line() == "ready", worker_stderr(tmp_path)
        for _ in range(KILLS):
            zygote.send("fork")
            looping = zygote.line()
            assert looping.startswith("looping "), looping
            pid = int(looping.split()[1])
            time.sleep(rng.uniform(0, 0.06))  # a random point in the refresh loop
            os.kill(pid, signal.SIGKILL)  # the child we asked the zygote to fork
            reaped = zygote.line()
            assert reaped.startswith(f"reaped {pid} "), reaped
            status = int(reaped.split()[2])
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            settle(server)  # let the server finish a request the dead child had sent

            data = cachefile.read(str(path))  # never corrupt: this raises on a damaged file
            if data is None:
                outcomes["absent"] += 1
            else:
                stored = Token.from_dict(data)
                assert stored.refresh_token is not None
                # the old token (the server rotated, the save was cut off) or the new one
                current = server.is_valid_refresh_token(stored.refresh_token)
                outcomes["current" if current else "one behind"] += 1
            grants = server.counts["password"]
            token = checker.force_refresh()  # the next call succeeds: refresh or sign in again
            outcomes["re-granted"] += server.counts["password"] - grants
            assert server.is_valid_access_token(token.access_token)
            assert token.refresh_token is not None
            assert server.is_valid_refresh_token(token.refresh_token)
            assert cachefile.read(str(path)) is not None
    elapsed = time.monotonic() - started
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    print(f"\nkill -9 runs survived: {KILLS}; refreshes: {server.counts['refresh_token']}; "
          f"file after kill: {outcomes}; temp files left by kills: {len(leftovers)}; "
          f"{elapsed:.1f}s")
    assert outcomes["absent"] == 0  # the file is replaced, never removed, during a refresh
    assert outcomes["current"] + outcomes["one behind"] == KILLS
    # a refresh the dead child sent can still rotate the token after we looked: >=, not ==
    assert outcomes["one behind"] <= outcomes["re-granted"] <= KILLS
    assert server.errors == []
    # a killed writer's temporary file (a token in it) is swept once stale, and by logout
    for leftover in [*leftovers, path.parent / SWEEP_MARKER]:  # an hour later
        os.utime(leftover, (time.time() - 3601, time.time() - 3601))
    checker.store.save(checker.cache_key, checker.token())  # this store looked at the marker
    assert len([p for p in path.parent.iterdir() if p.name.endswith(".tmp")]) == len(leftovers)
    session_for(config).force_refresh()  # a fresh store, as in another process an hour later
    left = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert left == [], (left, path.name)


# -- 3. self-healing cache -----------------------------------------------------------------------
def _valid_entry() -> dict[str, Any]:
    now = time.time()
    return Token("at-other-entry-000", "Bearer", now + 3000, now, "rt-other-entry-000").to_dict()


def _damage(kind: str) -> bytes:
    good = cachefile.encode(_valid_entry())
    if kind == "garbage":
        return b"\x00\xff\xfe garbage {{{ \x89PNG\r\n"
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "foreign":
        return json.dumps({"apiVersion": "v1", "kind": "ExecCredential", "status": {}}).encode()
    if kind == "bad-checksum":
        entry = json.loads(good)
        entry["token"]["access_token"] = "at-tampered-0000"
        return json.dumps(entry).encode()
    if kind == "unknown-format":
        entry = json.loads(good)
        entry["format"] = 99
        return json.dumps(entry).encode()
    if kind == "malformed-token":  # format and checksum fine, but not a token
        return cachefile.encode({"access_token": 42, "expires_at": "soon"})
    if kind == "empty":
        return b""
    raise AssertionError(kind)


DAMAGE = ["garbage", "truncated", "foreign", "bad-checksum", "unknown-format", "malformed-token",
          "empty"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_entry_is_moved_aside_reported_once_and_replaced(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture, kind: str,
) -> None:
    caplog.set_level("WARNING", logger="tokenflow.store.file")
    config = write_config(profile_yaml(tokenflow_server))
    session = session_for(config)
    store = file_store(session)
    target = store.path(session.cache_key)
    neighbour_key = "0" * 32
    store.save(neighbour_key, Token.from_dict(_valid_entry()))
    neighbour = store.path(neighbour_key).read_bytes()
    damaged = _damage(kind)
    target.write_bytes(damaged)
    target.chmod(0o600)

    token = session.token()

    assert tokenflow_server.counts["password"] == 1  # the grant ran
    messages = warnings_of(caplog, "tokenflow.store.file")
    assert len(messages) == 1, messages
    assert str(target) in messages[0] and "moved it to" in messages[0]
    asides = sorted(store.directory.glob(f"{target.name}.corrupt-*"))
    assert len(asides) == 1
    assert re.fullmatch(re.escape(target.name) + r"\.corrupt-\d{8}T\d{6}Z", asides[0].name)
    assert asides[0].name in messages[0]
    assert asides[0].read_bytes() == damaged  # kept for a post-mortem, byte for byte
    data = cachefile.read(str(target))
    assert data is not None and data["access_token"] == token.access_token
    assert store.path(neighbour_key).read_bytes() == neighbour  # other entries untouched
    assert store.keys() == sorted([session.cache_key, neighbour_key])

    # healed: later calls, in this process or a new session, neither warn nor fetch again
    assert session.token() == token
    assert session_for(config).token() == token
    assert len(warnings_of(caplog, "tokenflow.store.file")) == 1
    assert tokenflow_server.counts["password"] == 1


def test_damaged_entry_is_reported_once_when_many_threads_find_it(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="tokenflow.store.file")
    config = write_config(profile_yaml(tokenflow_server))
    sessions = [session_for(config) for _ in range(4)]
    target = token_path(sessions[0])
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.write_bytes(_damage("truncated"))
    target.chmod(0o600)
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda s=s: tokens.append(s.token().access_token))
               for s in sessions for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert len(warnings_of(caplog, "tokenflow.store.file")) == 1
    assert len(list(target.parent.glob("*.corrupt-*"))) == 1
    assert tokenflow_server.counts["password"] == 1


@posix_only
@pytest.mark.slow
def test_damaged_entry_found_by_8_processes_x_16_threads(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    config = write_config(profile_yaml(tokenflow_server))
    session = session_for(config)
    target = token_path(session)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    damaged = _damage("bad-checksum")
    target.write_bytes(damaged)
    target.chmod(0o600)
    with workers(tmp_path, 8, "flight", str(config), "prod", "16") as procs:
        for proc in procs:
            assert proc.line() == "ready", worker_stderr(tmp_path)
        for proc in procs:
            proc.send("go")
        results = [json.loads(proc.line()) for proc in procs]
    tokens = [t for r in results for t in r["tokens"]]
    assert [e for r in results for e in r["errors"]] == []
    assert len(tokens) == 128 and len(set(tokens)) == 1
    assert tokenflow_server.counts["token"] == 1, tokenflow_server.counts
    reports = [line for line in worker_stderr(tmp_path).splitlines() if "damaged" in line]
    assert len(reports) == 1, reports
    asides = list(target.parent.glob("*.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == damaged
    data = cachefile.read(str(target))
    assert data is not None and data["access_token"] == tokens[0]


@posix_only
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o620, 0o602], ids=oct)
def test_cache_file_writable_by_others_is_refused(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, mode: int
) -> None:
    config = write_config(profile_yaml(tokenflow_server))
    session = session_for(config)
    token = session.token()
    path = token_path(session)
    path.chmod(mode)
    with pytest.raises(StorageError) as raised:
        session_for(config).token()
    message = str(raised.value)
    assert str(path) in message
    assert "writable by group or others" in message
    assert "chmod 600" in message  # the fix
    assert token.access_token not in message
    assert tokenflow_server.counts["token"] == 1  # refused, not silently replaced
    path.chmod(0o600)  # after the fix the token is used again
    assert session_for(config).token() == token


@posix_only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give the file to another user")
def test_cache_file_owned_by_another_user_is_refused(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server))
    session = session_for(config)
    session.token()
    path = token_path(session)
    os.chown(path, 65534, 65534)
    with pytest.raises(StorageError) as raised:
        session_for(config).token()
    assert str(path) in str(raised.value)
    assert "owned by uid 65534" in str(raised.value)
    assert tokenflow_server.counts["token"] == 1


@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_cache_files_are_0600_in_0700_directories(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, umask: int,
) -> None:
    cache = tmp_path / "new" / "cache"  # nothing of it exists yet
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", str(cache))
    config = write_config(profile_yaml(tokenflow_server))
    old = os.umask(umask)
    try:
        session = session_for(config)
        session.token()
        session.force_refresh()
    finally:
        os.umask(old)
    path = token_path(session)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Path(f"{path}.lock").stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for created in (tmp_path / "new", cache):  # the directories tokenflow had to create
        assert created.stat().st_mode & 0o077 == 0, f"{created} is {created.stat().st_mode:o}"


# -- 4. retries that understand OAuth ------------------------------------------------------------
def test_503_burst_is_retried_with_events(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_server={"retries": 2}))
    recorder = Recorder()
    tokenflow_server.fail_next(2, 503)
    token = session_for(config, recorder).token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert tokenflow_server.counts["token"] == 3
    retried = [e for e in recorder.events if e.kind is EventKind.RETRIED]
    assert [e.detail for e in retried] == ["HTTP 503", "HTTP 503"]
    assert recorder.kinds()[-2:] == [EventKind.FETCHED, EventKind.STORED]


def test_429_retry_after_is_honoured(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_server={"retries": 1}))
    recorder = Recorder()
    tokenflow_server.fail_next(1, 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    token = session_for(config, recorder).token()
    assert time.monotonic() - started >= 0.9  # waited as told, not the 0s first backoff
    assert tokenflow_server.is_valid_access_token(token.access_token)
    assert tokenflow_server.counts["token"] == 2
    assert [e.detail for e in recorder.events if e.kind is EventKind.RETRIED] == ["HTTP 429"]


def test_5xx_beyond_the_retries_fails_as_transient(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_server={"retries": 2}))
    tokenflow_server.fail_next(5, 502)
    with pytest.raises(TransportError) as raised:
        session_for(config).token()
    assert raised.value.transient
    assert "HTTP 502" in str(raised.value) and "after 3 tries" in str(raised.value)
    assert tokenflow_server.counts["token"] == 3


@pytest.mark.parametrize(("status", "error"), [
    (400, "invalid_grant"), (401, "invalid_client"), (400, "invalid_request"),
    (400, "unauthorized_client"), (400, "invalid_scope"), (403, "access_denied"),
])
def test_oauth_errors_are_never_retried(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, status: int, error: str
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_server={"retries": 3}))
    recorder = Recorder()
    tokenflow_server.script(error_response(status, error, "no"))
    with pytest.raises(TokenRequestError) as raised:
        session_for(config, recorder).token()
    assert raised.value.error == error and raised.value.status == status
    assert tokenflow_server.counts["token"] == 1
    assert EventKind.RETRIED not in recorder.kinds()
    assert recorder.kinds() == [EventKind.FAILED]


def test_refused_refresh_is_not_retried(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_server={"retries": 3}))
    session = session_for(config)
    session.token()
    tokenflow_server.reset_counts()
    tokenflow_server.script(error_response(400, "invalid_grant", "Invalid refresh token: x"))
    session.force_refresh()
    assert tokenflow_server.counts["refresh_token"] == 1  # once, then the grant
    assert tokenflow_server.counts["password"] == 1


def test_transient_refresh_failure_serves_the_current_token(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server, extra_profile={"refresh_margin": 60}))
    first = session_for(config).token()
    expiring = make_expiring(session_for(config))
    tokenflow_server.reset_counts()
    tokenflow_server.fail_next(2, 503)
    recorder = Recorder()
    clock = FakeClock(time.time())
    session = session_for(config, recorder, clock=clock)

    assert session.token() == expiring  # the current token, still valid for 30 s
    assert recorder.count(EventKind.STALE_SERVED) == 1
    stale = next(e for e in recorder.events if e.kind is EventKind.STALE_SERVED)
    assert stale.fingerprint == first.fingerprint and "503" in stale.detail
    for _ in range(20):  # callers within the retry interval do not hammer the server
        assert session.token().access_token == first.access_token
    assert tokenflow_server.counts["token"] == 1

    clock.advance(STALE_RETRY_INTERVAL + 1)  # a little later: tried again, still failing
    assert session.token().access_token == first.access_token
    assert tokenflow_server.counts["token"] == 2
    assert recorder.count(EventKind.STALE_SERVED) == 2

    clock.advance(STALE_RETRY_INTERVAL + 1)  # the server is back
    fresh = session.token()
    assert fresh.access_token != first.access_token
    assert tokenflow_server.counts["refresh_token"] == 3
    assert recorder.kinds()[-2:] == [EventKind.REFRESHED, EventKind.STORED]


def test_transient_failure_with_an_expired_token_is_an_error(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    config = write_config(profile_yaml(tokenflow_server))
    session_for(config).token()
    make_expiring(session_for(config), left=-5)  # expired: nothing valid to hand out
    tokenflow_server.fail_next(1, 503)
    recorder = Recorder()
    with pytest.raises(TransportError):
        session_for(config, recorder).token()
    assert EventKind.STALE_SERVED not in recorder.kinds()
    assert recorder.kinds() == [EventKind.FAILED]


# -- 5. expiry you can trust ---------------------------------------------------------------------
def _token_with(server: EmbeddedServer, write_config: WriteConfig, *, default_lifetime: float = 1234,
                **fields: Any) -> tuple[Token, float]:
    config = write_config(profile_yaml(server, store="memory",
                                       extra_profile={"default_lifetime": default_lifetime}))
    server.script(success_response(**fields))
    sent = time.time()
    return session_for(config).token(), sent


def test_expiry_from_expires_in(tokenflow_server: EmbeddedServer, write_config: WriteConfig) -> None:
    jwt = fake_jwt({"exp": int(time.time()) + 50_000})
    token, sent = _token_with(tokenflow_server, write_config, access_token=jwt, expires_in="600")
    assert sent + 595 <= token.expires_at <= time.time() + 600  # expires_in beats the JWT exp


def test_expiry_from_the_jwt_exp_claim(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    exp = int(time.time()) + 900
    token, _ = _token_with(tokenflow_server, write_config, access_token=fake_jwt({"exp": exp}),
                           expires_in=OMIT)
    assert token.expires_at == pytest.approx(exp, abs=6)


def test_expiry_from_default_lifetime(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    token, sent = _token_with(tokenflow_server, write_config, access_token="opaque-token-value",
                              expires_in=None)
    assert sent + 1234 - 1 <= token.expires_at <= time.time() + 1234


def test_server_clock_skew_is_corrected_from_the_date_header(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    server = tokenflow_server_factory(date_offset=3600)  # the server's clock is an hour ahead
    exp = int(time.time()) + 3600 + 600  # ten minutes, by the server's clock
    token, sent = _token_with(server, write_config, access_token=fake_jwt({"exp": exp}),
                              expires_in=OMIT)
    assert token.expires_at == pytest.approx(sent + 600, abs=6)


@pytest.mark.parametrize("expires_in", [0, -30, MAX_SANE_LIFETIME + 1, 10 * 365 * 86400, "NaN"])
def test_absurd_expires_in_is_reported_and_replaced(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture, expires_in: object,
) -> None:
    caplog.set_level("WARNING", logger="tokenflow.tokens")
    token, sent = _token_with(tokenflow_server, write_config, expires_in=expires_in)
    assert sent + 1233 <= token.expires_at <= time.time() + 1234
    if expires_in != "NaN":  # NaN is "no usable expires_in", not an absurd one
        assert any("implausible" in m for m in warnings_of(caplog, "tokenflow.tokens"))


@pytest.mark.parametrize("exp_from_now", [-600, 2 * 365 * 86400])
def test_absurd_jwt_exp_is_reported_and_replaced(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture, exp_from_now: int,
) -> None:
    caplog.set_level("WARNING", logger="tokenflow.tokens")
    jwt = fake_jwt({"exp": int(time.time()) + exp_from_now})
    token, sent = _token_with(tokenflow_server, write_config, access_token=jwt, expires_in=OMIT)
    assert sent + 1233 <= token.expires_at <= time.time() + 1234
    assert any("implausible" in m for m in warnings_of(caplog, "tokenflow.tokens"))
