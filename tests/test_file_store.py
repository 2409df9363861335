"""Unit tests of the ``file`` store (tokenflow/builtins/file_store.py) on a real directory."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import profile_yaml, run_cli

from tokenflow import load_config
from tokenflow.base import cachefile
from tokenflow.builtins.file_store import (
    STALE_TEMP_AGE,
    SWEEP_INTERVAL,
    SWEEP_MARKER,
    FileStore,
    sweep_temp_files,
)
from tokenflow.errors import StorageError
from tokenflow.testing import EmbeddedServer
from tokenflow.tokens import Token

WORKER = Path(__file__).with_name("reliability_worker.py")
KEY = "3f2a9c0d5e6b7a8190cdef0123456789"
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes and flock are POSIX")


def make_token(n: int = 0, **changes: object) -> Token:
    now = 1_800_000_000.0  # the store does not care whether a token is fresh
    fields: dict[str, object] = {
        "access_token": f"access-{n:04d}-value", "token_type": "Bearer",
        "expires_at": now + 3600, "obtained_at": now, "refresh_token": f"refresh-{n:04d}-value",
        "scope": "read write", "extra": {"jti": n, "nested": {"a": [1, 2]}},
    }
    fields.update(changes)
    return Token.from_dict(fields)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "cache" / "tokens")


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- save / load / delete ------------------------------------------------------------------------
def test_round_trip(store: FileStore) -> None:
    assert store.load(KEY) is None  # absent: not an error, directory not even created
    token = make_token(1)
    store.save(KEY, token)
    assert store.load(KEY) == token
    assert FileStore(store.directory).load(KEY) == token  # another instance, same files
    raw = cachefile.read(str(store.path(KEY)))
    assert raw is not None and raw["refresh_token"] == "refresh-0001-value"
    store.save(KEY, make_token(2))
    assert store.load(KEY) == make_token(2)
    store.delete(KEY)
    assert store.load(KEY) is None
    assert not store.path(KEY).exists()
    store.delete(KEY)  # deleting an absent key is fine


def test_entry_is_the_documented_format(store: FileStore) -> None:
    store.save(KEY, make_token(3))
    entry = json.loads(store.path(KEY).read_bytes())
    assert entry["format"] == cachefile.FORMAT
    assert entry["checksum"].startswith("sha256:") and len(entry["checksum"]) == 7 + 64
    assert entry["token"]["access_token"] == "access-0003-value"


@posix_only
def test_modes_are_private(store: FileStore) -> None:
    store.save(KEY, make_token())
    with store.lock(KEY):
        pass
    assert store.directory.stat().st_mode & 0o777 == 0o700
    assert store.path(KEY).stat().st_mode & 0o777 == 0o600
    assert Path(f"{store.path(KEY)}.lock").stat().st_mode & 0o777 == 0o600


@posix_only
def test_a_loose_existing_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir()
    directory.chmod(0o755)
    FileStore(directory).save(KEY, make_token())
    assert directory.stat().st_mode & 0o777 == 0o700


# -- atomic writes -------------------------------------------------------------------------------
def test_writes_leave_no_temporary_files(store: FileStore) -> None:
    for n in range(25):
        store.save(KEY, make_token(n))
    # the token, and the empty file whose mtime says when the directory was last swept
    assert sorted(p.name for p in store.directory.iterdir()) == [SWEEP_MARKER, f"{KEY}.json"]
    assert store.load(KEY) == make_token(24)


def test_readers_never_see_a_partial_write(store: FileStore) -> None:
    # big tokens make a torn write likely if the write were not atomic
    tokens = [make_token(n, extra={"pad": "x" * 100_000, "n": n}) for n in range(2)]
    store.save(KEY, tokens[0])
    stop = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                token = store.load(KEY)
                assert token is not None
                seen.append(token.extra["n"])
            except BaseException as exc:
                failures.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(40):
            store.save(KEY, tokens[n % 2])
    finally:
        stop.set()
        reader.join(timeout=30)
    assert failures == []
    assert seen and set(seen) <= {0, 1}
    assert list(store.directory.glob("*.corrupt-*")) == []


def test_a_failed_write_leaves_the_old_entry_and_no_temporary_file(store: FileStore) -> None:
    store.save(KEY, make_token(1))
    other = "a" * 32
    store.path(other).mkdir()  # os.replace onto a directory fails after the temp file is written
    with pytest.raises(StorageError, match="cannot write"):
        store.save(other, make_token(2))
    assert temp_files(store.directory) == []
    assert store.load(KEY) == make_token(1)


@posix_only
def test_a_load_trusts_only_the_bytes_it_saw_before(store: FileStore) -> None:
    """A load that reads the bytes this store last saw skips decoding; any other bytes (another
    process's save, a damaged or tampered file) are decoded and checked as always."""
    store.save(KEY, make_token(1))
    first = store.load(KEY)
    assert first == make_token(1) and store.load(KEY) is first  # same bytes: the same object
    other = FileStore(store.directory)  # another process saves a newer token
    other.save(KEY, make_token(2))
    assert store.load(KEY) == make_token(2)
    path = store.path(KEY)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"access-0002", b"access-0003"))  # same size, checksum broken
    with store.lock(KEY):  # the lock holder moves a damaged entry aside
        assert store.load(KEY) is None
    assert not path.exists() and list(store.directory.glob("*.corrupt-*"))
    path.write_bytes(raw)
    os.chmod(path, 0o666)  # the same bytes as before, now writable by others: refused
    with pytest.raises(StorageError, match="writable by group or others"):
        store.load(KEY)


def test_temporary_files_of_killed_writers_are_swept(store: FileStore) -> None:
    store.save(KEY, make_token(1))

    def leftover(age: float) -> Path:  # what write_atomic leaves when killed before the rename
        fd, name = tempfile.mkstemp(dir=store.directory, prefix=f".{KEY}.json.", suffix=".tmp")
        os.write(fd, b"half a token")
        os.close(fd)
        os.utime(name, (time.time() - age, time.time() - age))
        return Path(name)

    old, recent = leftover(STALE_TEMP_AGE + 60), leftover(0)
    other_key = Path(str(old).replace(KEY, "b" * 32))
    old.with_name(other_key.name).write_bytes(b"another key's half token")
    os.utime(other_key, (time.time() - 3600, time.time() - 3600))
    unrelated = store.directory / f".{KEY}.json.notours.tmp"  # not mkstemp's shape
    unrelated.write_bytes(b"")
    store.save(KEY, make_token(2))  # the first save swept a minute ago: no listing this time
    assert old.exists() and other_key.exists()
    marker = store.directory / SWEEP_MARKER
    assert marker.stat().st_mode & 0o777 == 0o600
    stamp = time.time() - SWEEP_INTERVAL - 1
    os.utime(marker, (stamp, stamp))  # an hour later
    store.save(KEY, make_token(2))  # this store object looked at the marker under a minute ago
    assert old.exists()
    later = FileStore(store.directory)  # another process, an hour later
    later.save(KEY, make_token(2))  # sweeps what dead writers left, not a live writer's file
    assert not old.exists() and not other_key.exists()
    assert recent.exists() and unrelated.exists()
    assert marker.stat().st_mtime > stamp + 1  # the next sweep is an hour away again
    store.delete(KEY)  # logout forgets every copy of the token
    assert not recent.exists()
    assert unrelated.exists()
    sweep_temp_files(store.directory / "missing" / "x.json", 0)  # a missing directory is fine


# -- lock ----------------------------------------------------------------------------------------
def _hold_lock(store: FileStore, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "hold-lock", str(store.directory), KEY, str(seconds)],
        stdout=subprocess.PIPE,
    )
    assert _read_line(proc, timeout=60) == "locked"
    return proc


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line from the raw pipe (no buffering: what is not yet written is not there)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return data.decode()
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


@posix_only
def test_lock_excludes_another_process(store: FileStore) -> None:
    proc = _hold_lock(store, 1.0)
    try:
        with store.lock(KEY):
            # the holder wrote "releasing" before letting go; it is in the pipe already, so it
            # kept us out until then (without the lock we would be here a second too early)
            assert _read_line(proc, timeout=0) == "releasing"
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0


@posix_only
def test_waiting_for_a_writer_returns_when_it_lets_go_and_never_takes_the_lock(
    tmp_path: Path, store: FileStore
) -> None:
    assert store.wait_for_writer(KEY, 5.0) is False  # no lock file yet: nobody renews
    with store.lock(KEY):
        pass
    assert store.wait_for_writer(KEY, 5.0) is False  # a lock file nobody holds
    proc = _hold_lock(store, 1.0)
    try:
        waiters = [FileStore(store.directory) for _ in range(4)]  # as four other processes
        answers: list[bool] = []
        threads = [threading.Thread(target=lambda w=w: answers.append(w.wait_for_writer(KEY, 30)))
                   for w in waiters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [True] * 4
        assert _read_line(proc, timeout=0) == "releasing"  # they returned only after it let go
        proc.wait(timeout=30)
        from tokenflow.base.flock import acquire_lock_file, release_lock_file

        fd = acquire_lock_file(f"{store.path(KEY)}.lock", 0)  # and none of them kept it
        assert fd is not None
        release_lock_file(fd)
    finally:
        proc.wait(timeout=30)
    short = FileStore(tmp_path / "short", lock_timeout=0.3)
    proc = _hold_lock(short, 5.0)
    try:
        started = time.monotonic()
        assert short.wait_for_writer(KEY, 30.0) is False  # bounded by the store's lock_timeout
        assert time.monotonic() - started < 4.5
    finally:
        proc.kill()  # the process this test started
        proc.wait(timeout=30)


@posix_only
def test_an_interrupted_wait_does_not_leave_the_lock_taken(store: FileStore) -> None:
    """Ctrl-C while waiting for the lock (in a REPL the process goes on): when the holder lets
    go, the abandoned wait must not keep the lock from every other process."""
    from types import FrameType

    from tokenflow.base.flock import acquire_lock_file, release_lock_file

    lock_path = f"{store.path(KEY)}.lock"
    proc = _hold_lock(store, 1.0)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            acquire_lock_file(lock_path, 30.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    proc.wait(timeout=30)  # the holder let go
    deadline = time.monotonic() + 20
    while True:
        fd = acquire_lock_file(lock_path, 0.2)
        if fd is not None:
            release_lock_file(fd)
            break
        assert time.monotonic() < deadline, "the interrupted wait kept the lock"


@posix_only
def test_waiting_for_a_writer_ignores_a_lock_path_that_is_not_a_file_of_ours(
        store: FileStore) -> None:
    """A directory (or anything but a regular file of this user) at the lock path: nobody to
    wait for, at once; the lock itself refuses it with the reason."""
    import fcntl

    lock_path = store.path(KEY).with_name(f"{KEY}.json.lock")
    store.directory.mkdir(parents=True, exist_ok=True)
    lock_path.mkdir()
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held, as if by another process
        started = time.monotonic()
        assert store.wait_for_writer(KEY, 30.0) is False
        assert time.monotonic() - started < 20  # not the 30 s wait
    finally:
        os.close(fd)
    with pytest.raises(StorageError, match=r"lock file .* Is a directory"), store.lock(KEY):
        pass


def test_a_token_no_reader_would_accept_is_not_saved(store: FileStore) -> None:
    far = make_token(1, expires_at=1e12)  # past 9999: every reader calls such an entry damaged
    with pytest.raises(StorageError, match="expires_at is not a time between 1970 and 9999"):
        store.save(KEY, far)
    assert not store.path(KEY).exists()


@posix_only
def test_lock_times_out_with_a_storage_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens", lock_timeout=0.3)
    proc = _hold_lock(store, 5.0)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as raised, store.lock(KEY):
            pass
        assert 0.25 <= time.monotonic() - started < 4.5
        message = str(raised.value)
        assert f"{KEY}.json" in message and "0.3s" in message
        assert f"delete {store.path(KEY)}.lock" in message  # the way out if the holder is gone
    finally:
        proc.kill()  # the process this test started
        proc.wait(timeout=30)
    with store.lock(KEY):  # a killed holder's lock is free at once
        pass


def test_lock_excludes_other_threads_and_is_per_key(store: FileStore) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with FileStore(store.directory).lock(KEY):  # separate instances, as separate sessions
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert most == 1
    with store.lock(KEY), store.lock("b" * 32):  # another key is not blocked by this one
        pass


@posix_only
def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(
    store: FileStore, tmp_path: Path
) -> None:
    store.save(KEY, make_token(1))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    lock_file = Path(f"{store.path(KEY)}.lock")
    lock_file.unlink(missing_ok=True)
    lock_file.symlink_to(victim)  # planted by someone who hopes the lock truncates it
    with pytest.raises(StorageError, match="symbolic link"), store.lock(KEY):
        pass
    assert victim.read_bytes() == b"precious"
    lock_file.unlink()
    dangling = tmp_path / "would-be-created"
    lock_file.symlink_to(dangling)  # a link to nothing: O_CREAT through it would create it
    with pytest.raises(StorageError, match="symbolic link"), store.lock(KEY):
        pass
    assert not dangling.exists()


@posix_only
def test_a_fifo_as_lock_file_is_refused_without_hanging(store: FileStore) -> None:
    store.save(KEY, make_token(1))
    lock_file = Path(f"{store.path(KEY)}.lock")
    lock_file.unlink(missing_ok=True)
    os.mkfifo(lock_file, 0o600)
    with pytest.raises(StorageError, match="not a regular file"), store.lock(KEY):
        pass


@posix_only
def test_a_symlinked_lock_file_is_a_storage_error_in_the_cli_not_exit_3(
    tokenflow_server: EmbeddedServer, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    config = write_config(profile_yaml(
        tokenflow_server, store="{file: {path: " + json.dumps(str(tokens)) + "}}"))
    session = load_config(config).session("prod")
    assert isinstance(session.store, FileStore)
    tokens.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    Path(f"{session.store.path(session.cache_key)}.lock").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        session.token()
    done = run_cli("token", "prod", "-c", str(config))
    assert done.returncode == 1, done  # a StorageError, not a bug (3)
    assert "symbolic link" in done.stderr and "bug" not in done.stderr
    assert victim.read_bytes() == b"precious"
    assert tokenflow_server.counts["token"] == 0  # refused before any request


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(store: FileStore) -> None:
    """The helper-thread wait: a second process waits in flock and gets the lock after us."""
    order: list[str] = []
    holder_in = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with FileStore(store.directory).lock(KEY):
            order.append("holder in")
            holder_in.set()
            release.wait(30)
            order.append("holder out")

    thread = threading.Thread(target=hold)
    thread.start()
    assert holder_in.wait(30)
    threading.Timer(0.2, release.set).start()
    with FileStore(store.directory, lock_timeout=60).lock(KEY):  # waits in flock, not a poll
        order.append("waiter in")
    thread.join(30)
    assert order == ["holder in", "holder out", "waiter in"]


# -- keys ----------------------------------------------------------------------------------------
def test_keys_lists_entries_only(store: FileStore) -> None:
    assert store.keys() == []  # no directory yet
    for key in ("b" * 32, "a" * 32, KEY):
        store.save(key, make_token())
    with store.lock(KEY):
        pass
    (store.directory / f"{KEY}.json.corrupt-20240101T000000Z").write_bytes(b"x")
    (store.directory / f".{KEY}.json.abcdefgh.tmp").write_bytes(b"x")
    assert store.keys() == sorted([KEY, "a" * 32, "b" * 32])
    store.delete("a" * 32)
    assert store.keys() == sorted([KEY, "b" * 32])


@pytest.mark.parametrize("key", ["", "a/b", "../escape", ".hidden", "..", "/abs", "nul\0byte"])
def test_invalid_keys_are_rejected(store: FileStore, key: str) -> None:
    for call in (store.load, store.delete, store.path):
        with pytest.raises(StorageError, match="invalid cache key"):
            call(key)
    with pytest.raises(StorageError, match="invalid cache key"):
        store.save(key, make_token())
    with pytest.raises(StorageError, match="invalid cache key"), store.lock(key):
        pass
    assert not (store.directory.parent / "escape.json").exists()


# -- what load refuses ---------------------------------------------------------------------------
@posix_only
def test_a_symlink_is_not_followed(store: FileStore, tmp_path: Path) -> None:
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_bytes(cachefile.encode(make_token(9).to_dict()))
    elsewhere.chmod(0o600)
    store.directory.mkdir(parents=True, mode=0o700)
    store.path(KEY).symlink_to(elsewhere)
    with pytest.raises(StorageError, match="cannot read"):
        store.load(KEY)


@posix_only
def test_a_group_writable_file_is_refused(store: FileStore) -> None:
    store.save(KEY, make_token())
    store.path(KEY).chmod(0o660)
    with pytest.raises(StorageError, match=r"writable by group or others \(mode 660\); run chmod 600"):
        store.load(KEY)
    assert store.path(KEY).exists()  # refused, not quarantined or deleted


def test_a_damaged_file_is_quarantined_and_absent(
    store: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="tokenflow.store.file")
    store.save(KEY, make_token())
    store.path(KEY).write_bytes(b'{"format": 1, "checksum": "sha256:00", "tok')
    assert store.load(KEY) is None  # without the lock: absent, but left where it is
    assert store.path(KEY).exists()
    with store.lock(KEY):  # the lock holder moves it aside (as the engine does)
        assert store.load(KEY) is None
        assert store.load(KEY) is None  # now simply absent: reported once
    assert len([r for r in caplog.records if r.name == "tokenflow.store.file"]) == 1
    assert len(list(store.directory.glob(f"{KEY}.json.corrupt-*"))) == 1
    assert store.keys() == []
