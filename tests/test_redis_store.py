"""The redis store (issue 12): a fleet of hosts sharing one token through a real redis-server.

Everything is real: redis-server processes started here (tests/redis_fixtures.py), the embedded
OAuth server on loopback, "hosts" that are worker processes (tests/redis_worker.py) with their
own HOME and cache directory, killed with SIGKILL or stopped with SIGSTOP. docs/reliability.md
("Fleet") lists which test proves which promise.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis_fixtures
from conftest import profile_yaml
from independent_server import IndependentServer
from redis_fixtures import RedisServer
from test_independent_server import config_yaml as independent_yaml

from tokenflow import load_config
from tokenflow.builtins.redis_store import DEFAULT_LEASE, RedisStore, redis_store, safe_url
from tokenflow.config.model import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from tokenflow.engine.session import TokenSession
from tokenflow.errors import ConfigError, StorageError
from tokenflow.plugins.contracts import PluginContext
from tokenflow.plugins.host import REQUIRED_PLUGINS, build_plugin_host
from tokenflow.testing import EmbeddedServer
from tokenflow.testing.pytest_plugin import ServerFactory
from tokenflow.tokens import Token

redis_server = redis_fixtures.redis_server  # the fixtures, used by name below
redis_tcp_server = redis_fixtures.redis_tcp_server
redis_tls_server = redis_fixtures.redis_tls_server
WORKER = Path(__file__).with_name("redis_worker.py")
WriteConfig = Callable[..., Path]
posix_only = pytest.mark.skipif(os.name != "posix", reason="SIGKILL, SIGSTOP and FIFOs are POSIX")
KEY_A = "correct horse battery staple 1"
KEY_B = "correct horse battery staple 2"


# -- helpers -------------------------------------------------------------------------------------
def store_yaml(**options: Any) -> str:
    """``{redis: {...}}`` as a YAML flow mapping (JSON is YAML)."""
    return "{redis: " + json.dumps(options) + "}"


def fleet_config(server: EmbeddedServer, write: WriteConfig, name: str = "tokenflow.yaml",
                 **options: Any) -> Path:
    text = profile_yaml(server, store=store_yaml(**options), extra_profile={"refresh_margin": 60})
    return write(text, name)


def session_for(config: Path) -> TokenSession:
    return load_config(config, plugins=build_plugin_host()).session("prod")


def redis_of(session: TokenSession) -> RedisStore:
    assert isinstance(session.store, RedisStore)
    return session.store


def make_expiring(session: TokenSession, left: float = 30) -> Token:
    """Rewrite the shared record so every host sees the token EXPIRING (margin 60 s)."""
    store = redis_of(session)
    token = store.load(session.cache_key)
    assert token is not None
    now = time.time()
    expiring = replace(token, expires_at=now + left, obtained_at=now - 3600)
    store.save(session.cache_key, expiring)  # takes the lock itself: a fenced write
    return expiring


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Host:
    """A worker process with its own HOME and cache directory (one "host" of the fleet)."""

    def __init__(self, root: Path, name: str, *args: str) -> None:
        home = root / name
        env = dict(os.environ, HOME=str(home / "home"), TOKENFLOW_CACHE_DIR=str(home / "cache"),
                   XDG_CONFIG_HOME=str(home / "config"))
        self.stderr = (root / f"{name}.stderr").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, bufsize=1, env=env,
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
            raise AssertionError(f"host {self.proc.pid} said nothing for {timeout}s") from None
        assert line is not None, f"host {self.proc.pid} exited (status {self.proc.poll()})"
        return line

    def result(self, timeout: float = 60) -> dict[str, list[str]]:
        data: dict[str, list[str]] = json.loads(self.line(timeout))
        return data

    def send(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        with suppress(OSError):
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
        if self.proc.stdin is not None:
            with suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # this process only, by its own handle
            self.proc.wait(timeout=10)
        self.stderr.close()


@contextmanager
def hosts(root: Path, count: int, *args: str) -> Iterator[list[Host]]:
    started: list[Host] = []
    try:
        for index in range(count):
            started.append(Host(root, f"host{len(started)}-{index}", *args))
        yield started
    finally:
        for host in started:
            host.stop()


def stderr_of(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(root.glob("*.stderr")))


def raw_dump(server: RedisServer) -> str:
    """Every key and value, as ``redis-cli --scan`` and ``HGETALL`` show them."""
    cli = ["redis-cli", "-s", str(server.socket)]
    keys = subprocess.run([*cli, "--scan"], capture_output=True, text=True, timeout=10,
                          check=True).stdout.split()
    out = [" ".join(keys)]
    for key in keys:
        out.append(subprocess.run([*cli, "HGETALL", key], capture_output=True, text=True,
                                  timeout=10, check=True).stdout)
    return "\n".join(out)


def command_calls(server: RedisServer) -> dict[str, int]:
    """Commands Redis has served, by name; INFO and the connection set-up of this probe's own
    connections (redis-py sends CLIENT SETINFO on connect) left out."""
    stats = server.client().info("commandstats")
    return {k: int(v["calls"]) for k, v in stats.items()
            if k != "cmdstat_info" and not k.startswith(("cmdstat_client|", "cmdstat_hello"))}


# -- 1. the fleet: single flight across hosts ---------------------------------------------------
@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["embedded", "independent"])
def test_4_hosts_x_16_threads_at_expiry_send_one_request(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, tmp_path: Path,
    redis_server: RedisServer, kind: str,
) -> None:
    """Both servers rotate refresh tokens: the embedded one and the oauthlib-based one."""
    options = {"url": redis_server.url, "prefix": "team-a"}
    independent: IndependentServer | None = None
    if kind == "embedded":
        server = tokenflow_server_factory(rotate_refresh_tokens=True, latency=0.2)
        config = fleet_config(server, write_config, **options)
    else:
        independent = IndependentServer(rotate_refresh_tokens=True, latency=0.2).start()
        text = independent_yaml(independent, store={"redis": options},  # type: ignore[arg-type]
                                extra_profile={"refresh_margin": 60})
        config = write_config(text)
    try:
        setup = session_for(config)
        first = setup.token()
        make_expiring(setup)
        counts = (lambda: server.counts) if independent is None else (lambda: independent.counts)
        before = counts().copy()

        with hosts(tmp_path, 4, "flight", str(config), "prod", "16") as fleet:
            for host in fleet:
                assert host.line() == "ready", stderr_of(tmp_path)
            for host in fleet:
                host.send()
            results = [host.result() for host in fleet]
        sent = counts() - before
        is_valid = (server.is_valid_refresh_token if independent is None
                    else independent.is_valid_refresh_token)
    finally:
        if independent is not None:
            independent.stop()

    tokens = [t for r in results for t in r["tokens"]]
    assert [e for r in results for e in r["errors"]] == []
    assert len(tokens) == 64
    assert sent["refresh_token"] == 1, sent
    assert sent["password"] == 0
    assert set(tokens) == {tokens[0]} and tokens[0] != first.access_token
    stored = session_for(config).store.load(setup.cache_key)
    assert stored is not None and stored.access_token == tokens[0]
    assert stored.refresh_token is not None and is_valid(stored.refresh_token)
    # each host kept nothing locally: the fleet shares one record
    assert not list(tmp_path.glob("host*/cache/tokens/*.json"))


# -- 2. a holder killed in the middle of a slow refresh ---------------------------------------
@posix_only
def test_holder_killed_mid_refresh_another_host_takes_over_without_reusing_the_refresh_token(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    lease = 2.0
    shared = fleet_config(server, write_config, url=redis_server.url, lease=lease,
                          lock_timeout=lease + 20)
    # Host A reads its client secret from a FIFO: its refresh holds the lock, blocked before
    # sending anything, until the test kills it. (Host B's config has the secret inline.)
    fifo = tmp_path / "client-secret.fifo"
    os.mkfifo(fifo)
    secret = server.default_client.secret
    text = shared.read_text().replace(
        f"client_secret: {json.dumps(secret)}",
        "client_secret: {command: {argv: [cat, " + json.dumps(str(fifo)) + "], timeout: 30}}",
    )
    assert text != shared.read_text()
    slow = write_config(text, "slow.yaml")
    setup = session_for(shared)
    old = setup.token()
    expiring = make_expiring(setup)
    server.reset_counts()
    lock_key = redis_of(setup).lock_key(setup.cache_key)
    client = redis_server.client()
    try:
        with hosts(tmp_path, 1, "once", str(slow), "prod") as (holder,):
            assert holder.line() == "ready", stderr_of(tmp_path)
            holder.send()
            wait_for(lambda: client.get(lock_key) is not None, "host A to take the lock")
            assert 0 < client.pttl(lock_key) <= lease * 1000
            os.kill(holder.proc.pid, signal.SIGKILL)
            holder.proc.wait(timeout=10)
        assert server.counts["token"] == 0  # A died before sending its refresh
        with hosts(tmp_path, 1, "once", str(shared), "prod") as (taker,):
            assert taker.line() == "ready", stderr_of(tmp_path)
            taker.send()
            result = taker.result()
    finally:
        with suppress(OSError):  # let the orphaned `cat` finish
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, (secret + "\n").encode())
            os.close(fd)
    assert result["errors"] == [], stderr_of(tmp_path)
    assert server.counts["token"] == 1 and server.counts["refresh_token"] == 1
    assert [r.status for r in server.requests] == [200]  # the one refresh token use succeeded
    assert server.counts["password"] == 0
    stored = setup.store.load(setup.cache_key)
    assert stored is not None and stored.access_token == result["tokens"][0]
    assert stored.access_token != old.access_token
    assert stored.refresh_token != expiring.refresh_token
    assert stored.refresh_token is not None and server.is_valid_refresh_token(stored.refresh_token)


# -- 3. a holder stopped past its lease cannot overwrite the newer token -----------------------
@posix_only
def test_holder_stopped_past_its_lease_does_not_overwrite_the_newer_token(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    # no rotation: the stopped holder's late refresh succeeds, so its save is what is tested;
    # its request sleeps 3 s at the server, time enough to stop it before the answer comes
    server = tokenflow_server_factory(latency=3.0)
    lease = 1.5
    config = fleet_config(server, write_config, url=redis_server.url, lease=lease)
    setup = session_for(config)
    setup.token()
    make_expiring(setup)
    server.reset_counts()
    store = redis_of(setup)
    lock_key, record = store.lock_key(setup.cache_key), store.record_key(setup.cache_key)
    client = redis_server.client()
    with hosts(tmp_path, 1, "once", str(config), "prod") as (stopped,):
        assert stopped.line() == "ready", stderr_of(tmp_path)
        stopped.send()
        wait_for(lambda: server.counts["token"] == 1, "host A's refresh to reach the server")
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        server.config = replace(server.config, latency=0.0)  # the next requests answer at once
        wait_for(lambda: client.get(lock_key) is None, "host A's lease to run out")
        with hosts(tmp_path, 1, "once", str(config), "prod") as (winner,):
            assert winner.line() == "ready", stderr_of(tmp_path)
            winner.send()
            won = winner.result()
        assert won["errors"] == [], stderr_of(tmp_path)
        version = client.hget(record, "v")
        os.kill(stopped.proc.pid, signal.SIGCONT)
        late = stopped.result()
    assert server.counts["refresh_token"] == 2  # A's late refresh did reach the server...
    assert late["tokens"] == []
    assert len(late["errors"]) == 1 and "lost the refresh lock" in late["errors"][0], late
    assert "StorageError" in late["errors"][0]
    stored = setup.store.load(setup.cache_key)  # ...but the record is still the winner's
    assert stored is not None and stored.access_token == won["tokens"][0]
    assert client.hget(record, "v") == version


def test_a_lost_lease_fails_the_write_in_process(redis_server: RedisServer, tmp_path: Path) -> None:
    """The fence without signals: the lease is taken away (as its expiry would) and another
    holder writes; the first holder's save raises and changes nothing."""
    first = make_store(redis_server.url, tmp_path, lease=30)
    second = make_store(redis_server.url, tmp_path, lease=30)
    client = redis_server.client()
    with first.lock("k1"):
        client.delete(first.lock_key("k1"))  # what an expired lease looks like
        with second.lock("k1"):
            second.save("k1", token("tok-from-second-9f3a1c"))
        with pytest.raises(StorageError, match="lost the refresh lock"):
            first.save("k1", token("tok-from-first-9f3a1c"))
    loaded = first.load("k1")
    assert loaded is not None and loaded.access_token == "tok-from-second-9f3a1c"


def test_lease_is_renewed_while_held_and_released_with_compare_and_delete(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = make_store(redis_server.url, tmp_path, lease=3.0)
    client = redis_server.client()
    lock_key = store.lock_key("k2")
    with store.lock("k2"):
        mine = client.get(lock_key)
        renewals, last = 0, client.pttl(lock_key)
        deadline = time.monotonic() + 60
        while renewals < 4:  # renewed every lease/3: four renewals outlast the lease itself
            assert time.monotonic() < deadline, f"{renewals} renewals in 60 s"
            now = client.pttl(lock_key)
            assert now > 0, "the lease ran out while held"
            renewals += now > last
            last = now
            time.sleep(0.05)
        assert client.get(lock_key) == mine
        store.save("k2", token("tok-kept-9f3a1c"))
    assert client.get(lock_key) is None
    with store.lock("k2"):
        assert client.get(lock_key) not in (None, mine)  # a fresh value per acquisition
        client.set(lock_key, b"someone-else")  # not ours any more: release must not delete it
    assert client.get(lock_key) == b"someone-else"


def test_waiter_gives_up_at_its_deadline(redis_server: RedisServer, tmp_path: Path) -> None:
    store = make_store(redis_server.url, tmp_path, lock_timeout=0.3)
    redis_server.client().set(store.lock_key("k3"), b"another-host", px=60_000)
    with pytest.raises(StorageError, match="another host has held the refresh lock"), \
            store.lock("k3"):
        pass


# -- 4. Redis restarted mid-run ------------------------------------------------------------------
def test_redis_restart_mid_run_gives_clear_errors_and_nothing_corrupt(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig,
    redis_tcp_server: RedisServer,
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    config = fleet_config(server, write_config, url=redis_tcp_server.url)
    session = session_for(config)
    session.token()
    stop = threading.Event()
    outcomes: list[str] = []

    def churn() -> None:
        while not stop.is_set():
            try:
                session.force_refresh()
                outcomes.append("ok")
            except StorageError as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=churn) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: outcomes.count("ok") >= 3, "refreshes before the restart")
        redis_tcp_server.stop()
        wait_for(lambda: len(outcomes) > 0 and outcomes[-1] != "ok", "an error while Redis is down")
        redis_tcp_server.start()
        mark = len(outcomes)
        wait_for(lambda: outcomes[mark:].count("ok") >= 3, "refreshes after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    errors = [o for o in outcomes if o != "ok"]
    assert errors
    where = safe_url(redis_tcp_server.url)
    assert where == f"redis://127.0.0.1:{redis_tcp_server.port}/0"
    for error in errors:
        # unreachable, or (a lock taken before the restart, its data wiped) a refused save
        assert (f"cannot reach Redis at {where}" in error
                or f"in Redis at {where}: this process lost the refresh lock" in error), error
        assert redis_tcp_server.password not in error  # type: ignore[operator]
    stored = session_for(config).store.load(session.cache_key)
    assert stored is not None and stored.refresh_token is not None
    assert server.is_valid_refresh_token(stored.refresh_token)
    assert server.is_valid_access_token(stored.access_token)


def test_fallback_file_serves_with_one_warning_and_hands_back_to_redis(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig,
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    config = fleet_config(server, write_config, url=redis_server.url, fallback="file")
    session = session_for(config)
    session.token()
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"):
        during = [session.force_refresh() for _ in range(3)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "tokenflow.store.redis"]
    assert len(warnings) == 1, warnings
    assert f"cannot reach Redis at {redis_server.url}" in warnings[0]
    assert "local file store" in warnings[0] and "do not share" in warnings[0]
    redis_server.start()  # empty: no persistence
    server.reset_counts()
    back = session_for(config)
    assert back.token().access_token == during[-1].access_token  # the fallback's newer token
    assert server.counts["token"] == 0
    again = back.force_refresh()  # its rotated refresh token works, and goes to Redis
    assert server.counts["refresh_token"] == 1 and server.counts["password"] == 0
    raw = redis_of(back).load(back.cache_key)
    assert raw is not None and raw.access_token == again.access_token


def test_unreachable_without_fallback_names_the_url_without_credentials(
    redis_tcp_server: RedisServer, tmp_path: Path
) -> None:
    store = make_store(redis_tcp_server.url, tmp_path)
    redis_tcp_server.stop()
    with pytest.raises(StorageError) as caught:
        store.load("k4")
    message = str(caught.value)
    assert f"cannot reach Redis at redis://127.0.0.1:{redis_tcp_server.port}/0" in message
    assert "Connection refused" in message and "***" not in message  # the reason, readable
    assert redis_tcp_server.password not in message  # type: ignore[operator]
    assert redis_tcp_server.password not in repr(store)  # type: ignore[operator]


def test_redis_going_away_under_the_lock_keeps_the_token_in_the_fallback(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    strict = make_store(redis_server.url, tmp_path)
    with strict.lock("k9"):
        redis_server.stop()
        with pytest.raises(StorageError, match="cannot reach Redis at unix://"):
            strict.save("k9", token("tok-lost-9f3a1c"))
    redis_server.start()
    lenient = make_store(redis_server.url, tmp_path, fallback="file")
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"), lenient.lock("k9"):
        redis_server.stop()
        lenient.save("k9", token("tok-kept-locally-9f3a1c"))  # the rotated token is not lost
    assert any("local file store" in r.getMessage() for r in caplog.records)
    kept = lenient.load("k9")  # Redis still down: from the file store
    assert kept is not None and kept.access_token == "tok-kept-locally-9f3a1c"
    assert (tmp_path / "cache" / "tokens" / "k9.json").is_file()


def test_rediss_with_a_ca_file(redis_tls_server: RedisServer, tmp_path: Path) -> None:
    store = make_store(redis_tls_server.url, tmp_path, ca_file=str(redis_tls_server.ca_file))
    store.save("k10", token("tok-over-tls-9f3a1c"))
    loaded = store.load("k10")
    assert loaded is not None and loaded.access_token == "tok-over-tls-9f3a1c"
    untrusted = make_store(redis_tls_server.url, tmp_path)  # the system CAs do not know it
    with pytest.raises(StorageError, match=f"cannot reach Redis at {redis_tls_server.url}"):
        untrusted.load("k10")


def test_wrong_redis_password_is_a_clear_error_even_with_a_fallback(
    redis_tcp_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://:wrong-password-1234@127.0.0.1:{redis_tcp_server.port}/0"
    store = make_store(url, tmp_path, fallback="file")
    with pytest.raises(StorageError, match="refused the credentials") as caught:
        store.load("k11")  # a configuration error: no fallback
    assert "wrong-password-1234" not in str(caught.value)
    monkeypatch.setenv("TF_TEST_REDIS_PW", str(redis_tcp_server.password))
    ok = make_store(f"redis://127.0.0.1:{redis_tcp_server.port}/0", tmp_path,
                    password={"env": "TF_TEST_REDIS_PW"})
    assert ok.load("k11") is None


# -- 5. encryption at rest ------------------------------------------------------------------------
def test_encrypted_records_hold_no_token_in_clear(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, redis_server: RedisServer,
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    os.environ["TF_TEST_KEY"] = KEY_A
    try:
        config = fleet_config(server, write_config, url=redis_server.url,
                              encrypt_key="${TF_TEST_KEY}")
        session = session_for(config)
        tok = session.token()
        session.force_refresh()
        now = session_for(config).token()
    finally:
        del os.environ["TF_TEST_KEY"]
    dump = raw_dump(redis_server)
    assert f"{{{session.cache_key}}}:token" in dump  # the record is there, under its hash tag
    for secret in (tok.access_token, tok.refresh_token, now.access_token, now.refresh_token, KEY_A):
        assert secret and secret not in dump
    assert "tf1:" in dump


def test_rotation_with_previous_keys(redis_server: RedisServer, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    old = make_store(redis_server.url, tmp_path, encrypt_key=KEY_A)
    old.save("k5", token("tok-rotating-9f3a1c"))
    rotated = make_store(redis_server.url, tmp_path, encrypt_key=KEY_B, previous_keys=[KEY_A])
    loaded = rotated.load("k5")
    assert loaded is not None and loaded.access_token == "tok-rotating-9f3a1c"
    kid_a = redis_server.client().hget(old.record_key("k5"), "d")[4:12]
    rotated.save("k5", loaded)  # re-encrypted with the new key
    assert redis_server.client().hget(old.record_key("k5"), "d")[4:12] != kid_a
    new_only = make_store(redis_server.url, tmp_path, encrypt_key=KEY_B)
    assert new_only.load("k5") is not None
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"):
        assert old.load("k5") is None  # the old key alone no longer reads it
        assert old.load("k5") is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "tokenflow.store.redis"]
    assert len(warnings) == 1, warnings
    assert "neither encrypt_key nor one of previous_keys" in warnings[0]


@pytest.mark.parametrize("damage", ["tamper", "plain-record", "garbage"])
def test_undecryptable_record_is_a_miss_with_one_warning(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture, damage: str,
) -> None:
    server = tokenflow_server_factory()
    config = fleet_config(server, write_config, url=redis_server.url, encrypt_key=KEY_A)
    session = session_for(config)
    first = session.token()
    store = redis_of(session)
    client = redis_server.client()
    record = store.record_key(session.cache_key)
    data: bytes = client.hget(record, "d")
    if damage == "tamper":
        data = data[:-6] + (b"AAAAAA" if data[-6:] != b"AAAAAA" else b"BBBBBB")
    elif damage == "plain-record":  # a clear-text record where encryption is required
        data = b"tf0:" + json.dumps(first.to_dict()).encode()
    else:
        data = b"\x00\xffnot a record"
    client.hset(record, "d", data)
    server.expire_access_tokens()
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"):
        fresh = session_for(config)
        assert fresh.store.load(session.cache_key) is None
        assert fresh.store.load(session.cache_key) is None
        new = fresh.token()  # a miss: a new token is fetched and saved over the bad record
    warnings = [r.getMessage() for r in caplog.records if r.name == "tokenflow.store.redis"]
    assert len(warnings) == 1, warnings
    assert record in warnings[0] and "treating it as absent" in warnings[0]
    assert new.access_token != first.access_token
    reloaded = session_for(config).store.load(session.cache_key)
    assert reloaded is not None and reloaded.access_token == new.access_token


# -- 6. the in-memory layer stays in front --------------------------------------------------------
def test_a_fresh_token_costs_no_redis_round_trip(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, redis_server: RedisServer,
) -> None:
    server = tokenflow_server_factory()
    config = fleet_config(server, write_config, url=redis_server.url)
    session = session_for(config)
    session.token()
    before = command_calls(redis_server)
    for _ in range(200):
        session.token()
        session.headers()
    assert command_calls(redis_server) == before
    session_for(config).token()  # a new session does read the store: the counter works
    assert command_calls(redis_server)["cmdstat_hmget"] == before["cmdstat_hmget"] + 1


# -- 7. record TTL: the refresh token's life, never the access token's -------------------------
def test_record_ttl_follows_the_refresh_token_not_the_access_token(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = make_store(redis_server.url, tmp_path, ttl_cap=7 * 86400)
    client = redis_server.client()
    store.save("k6", token("tok-short-9f3a1c", lifetime=300))
    assert client.pttl(store.record_key("k6")) > 6 * 86400 * 1000  # the cap, not 300 s
    store.save("k7", token("tok-keycloak-9f3a1c", lifetime=300, extra={"refresh_expires_in": 1800}))
    assert 1700 * 1000 < client.pttl(store.record_key("k7")) <= 1800 * 1000
    store.save("k8", token("tok-no-refresh-9f3a1c", lifetime=300, refresh=None))
    assert client.pttl(store.record_key("k8")) <= 400 * 1000  # nothing to keep past expiry


def test_default_lease_exceeds_the_default_http_deadline() -> None:
    assert DEFAULT_LEASE > DEFAULT_TIMEOUT * (DEFAULT_RETRIES + 1)


def test_short_lease_is_warned_about(redis_server: RedisServer, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"):
        make_store(redis_server.url, tmp_path, lease=5)
    assert any("shorter than one default HTTP try" in r.getMessage() for r in caplog.records)
    store = make_store(redis_server.url, tmp_path, lease=1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tokenflow.store.redis"):
        with store.lock("k12"):
            pass
        assert not caplog.records
        with store.lock("k12"):
            time.sleep(1.2)  # a refresh outlasting its (renewed) lease breaks the rule
    slow = [r.getMessage() for r in caplog.records]
    assert len(slow) == 1 and "longer than the 1s lease" in slow[0]


# -- 8. secrets never leak ---------------------------------------------------------------------
def test_no_secret_in_debug_logs_or_errors(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig,
    redis_tcp_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    server = tokenflow_server_factory(rotate_refresh_tokens=True)
    os.environ["TF_TEST_REDIS_URL"] = redis_tcp_server.url
    try:
        config = fleet_config(server, write_config, url="${TF_TEST_REDIS_URL}", encrypt_key=KEY_A)
        with caplog.at_level(logging.DEBUG):
            session = session_for(config)
            tokens = [session.token(), session.force_refresh()]
            redis_tcp_server.stop()
            with pytest.raises(StorageError) as caught:
                session.force_refresh()
    finally:
        del os.environ["TF_TEST_REDIS_URL"]
    text = caplog.text + "\n" + str(caught.value) + repr(session.store)
    assert caplog.records  # DEBUG really was captured
    secrets = [redis_tcp_server.password, KEY_A, server.default_client.secret,
               server.default_account.password]
    secrets += [t.access_token for t in tokens] + [t.refresh_token for t in tokens]
    for secret in secrets:
        assert secret and secret not in text


# -- 9. options and packaging ------------------------------------------------------------------
def test_registered_as_an_optional_builtin_and_importing_it_does_not_import_redis() -> None:
    host = build_plugin_host()
    assert host.store("redis").plugin == "tokenflow.redis_store"
    assert "tokenflow.redis_store" not in REQUIRED_PLUGINS
    probe = ("import sys, tokenflow.builtins.redis_store; "
             "print('redis' in sys.modules, 'cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["False", "False"]


def test_missing_redis_package_is_a_clear_storage_error(tmp_path: Path) -> None:
    probe = (
        "import sys; sys.modules['redis'] = None\n"
        "from pathlib import Path\n"
        "from tokenflow.builtins.redis_store import redis_store\n"
        "from tokenflow.plugins.contracts import PluginContext\n"
        "from tokenflow.errors import StorageError\n"
        "try:\n"
        "    redis_store({'url': 'redis://127.0.0.1:1/0'}, PluginContext('p', Path('.'), Path('.')))\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'tokenflow[redis]'" in out


@pytest.mark.parametrize("options", [
    {"url": "ftp://example.com"},
    {"url": "redis://127.0.0.1:6379/0", "fallback": "keyring"},
    {"url": "redis://127.0.0.1:6379/0", "lease": 0},
    {"url": "redis://127.0.0.1:6379/0", "nope": 1},
])
def test_bad_options_are_config_errors(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig, options: dict[str, Any]
) -> None:
    config = write_config(profile_yaml(tokenflow_server, store=store_yaml(**options)))
    with pytest.raises(ConfigError):
        load_config(config, plugins=build_plugin_host()).session("prod")


def test_safe_url_drops_credentials() -> None:
    assert safe_url("redis://user:pw@host:6380/2") == "redis://host:6380/2"
    assert safe_url("rediss://:pw@h/0?ssl_cert_reqs=none") == "rediss://h/0"
    assert safe_url("unix:///run/redis.sock?password=pw&db=1") == "unix:///run/redis.sock"


# -- helpers for the store-level tests ---------------------------------------------------------
def make_store(url: str, tmp_path: Path, **options: Any) -> RedisStore:
    store = redis_store({"url": url, **options}, PluginContext("p", tmp_path, tmp_path / "cache"))
    assert isinstance(store, RedisStore)
    return store


def token(access: str, *, lifetime: float = 3600, refresh: str | None = "rt-value-123456",
          extra: dict[str, Any] | None = None) -> Token:
    now = time.time()
    return Token(access_token=access, token_type="Bearer", expires_at=now + lifetime,
                 obtained_at=now, refresh_token=refresh, extra=extra or {})


def test_fleet_benchmark_smoke(redis_server: RedisServer, tmp_path: Path) -> None:
    """``bench/fleet.py --smoke`` runs end to end and sees one request (redis_server only makes
    the test skip, or fail in CI, without redis-server; the benchmark starts its own)."""
    out = tmp_path / "fleet.json"
    bench = Path(__file__).resolve().parent.parent / "bench" / "fleet.py"
    done = subprocess.run([sys.executable, str(bench), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert json.loads(out.read_text())["fleet"]["requests"] == [1]
