"""The ``file`` store (the default): one JSON file per cache key in the user cache directory.

Plain JSON like the caches of aws-cli, gcloud and kubelogin (the ``keyring`` store is for those
who want the OS to encrypt), protected the way ssh protects keys:

* files are mode 0600 in 0700 directories, and a file writable by others or owned by another
  user is refused rather than trusted;
* writes are atomic and durable (:func:`write_atomic`: temporary file, rename, one fsync), so a
  reader sees the old token or the new one, never half of each, and a token is on disk before
  it is handed out;
* a writer killed between creating its temporary file and the rename leaves that file (with a
  token in it) behind: ``delete`` (logout) removes this key's at once, and a save sweeps the
  directory of those older than a minute at most once an hour (:func:`sweep_if_due`), so a
  save costs the same with 3 token files as with 10,000;
* a damaged entry is moved aside as ``<key>.json.corrupt-<UTC timestamp>``, reported once, and
  treated as absent; other entries are untouched;
* ``lock(key)`` is an exclusive ``flock`` on ``<key>.json.lock``, serialising refreshes across
  processes (:func:`tokenflow.base.flock.acquire_lock_file`, shared with the CLI's renewal
  path).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenflow.base import cachefile
from tokenflow.base.files import ensure_private_dir, write_atomic
from tokenflow.base.flock import (
    LockFileRefused,
    acquire_lock_file,
    release_lock_file,
    timed_out_message,
    wait_for_lock_holder,
)
from tokenflow.errors import StorageError
from tokenflow.plugins.contracts import PluginContext, StoreRegistrar, TokenStore
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import get_logger
from tokenflow.tokens import Token

log = get_logger("tokenflow.store.file")

LOCK_TIMEOUT = 120.0  # seconds; a refresh holding the lock longer than this is stuck
STALE_TEMP_AGE = 60.0  # seconds; a write takes milliseconds: an older temp file is a dead writer's
SWEEP_INTERVAL = 3600.0  # seconds between two sweeps of a token directory by saves
SWEEP_CHECK_INTERVAL = 60.0  # seconds between two looks at the marker by one store object
MAX_REMEMBERED_KEYS = 1024  # per store object: paths and last-seen entries of the keys it served
SWEEP_MARKER = ".swept"  # its mtime says when the directory was last swept (keys never start with .)

OPTIONS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string",
            "description": "Directory for the token files (default: the user cache directory's "
            "tokenflow/tokens). Relative paths are relative to the config file.",
        },
        "lock_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds to wait for another process's refresh (default 120).",
        },
    },
}


def token_dir(cache_dir: Path) -> Path:
    """Where the file store keeps tokens by default (the CLI fast path looks here too)."""
    return cache_dir / "tokens"


def _is_temp_name(name: str, prefix: str) -> bool:
    # mkstemp's names: prefix + 8 random characters + ".tmp"
    return name.startswith(prefix) and name.endswith(".tmp") and len(name) == len(prefix) + 12


def _sweep(directory: Path, prefix: str, min_age: float) -> None:
    try:
        names = os.listdir(directory)  # listed first: unlinking while reading may skip entries
    except OSError:
        return  # only housekeeping
    now = time.time()
    for name in names:
        if prefix:
            if not _is_temp_name(name, prefix):
                continue
        elif not (name.startswith(".") and name[:-12].endswith(".json.")
                  and _is_temp_name(name, name[:-12])):
            continue
        leftover = directory / name
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime >= min_age:
                leftover.unlink()


def sweep_temp_files(path: Path, min_age: float) -> None:
    """Remove the temporary files of :func:`write_atomic` for *path* older than *min_age* seconds.

    A writer killed between creating its temporary file and renaming it leaves the file behind,
    with a token in it: left alone they pile up, and logging out would not forget them. This
    lists the whole directory, so only ``delete`` (logout, rare) calls it on every use.
    """
    _sweep(path.parent, f".{path.name}.", min_age)


def sweep_if_due(directory: Path, now: float | None = None) -> bool:
    """Sweep *directory* of every key's stale temporary files if the last sweep is an hour old.

    Listing the directory on every save cost 4.2 ms at 10,000 token files (issue 13): a save
    now costs one ``stat`` of :data:`SWEEP_MARKER`, whose mtime records the last sweep by any
    process, and the listing happens at most once per :data:`SWEEP_INTERVAL` per directory.
    Dead writers are rare and their files are as private as the token files themselves, so an
    hour's delay costs nothing but a little disk; logout still removes its key's at once.
    Returns whether it swept.
    """
    marker = directory / SWEEP_MARKER
    now = time.time() if now is None else now
    try:
        if now - os.lstat(marker).st_mtime < SWEEP_INTERVAL:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return False  # only housekeeping
    _sweep(directory, "", STALE_TEMP_AGE)
    with contextlib.suppress(OSError):
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     0o600)
        try:
            os.utime(fd)
        finally:
            os.close(fd)
    return True


class FileStore:
    """Token files under one directory; see the module docstring for the guarantees."""

    def __init__(self, directory: Path, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout
        self._held: set[str] = set()  # keys whose lock this process holds
        self._dir_ready = False  # the directory was made private once; a save need not stat it
        self._paths: dict[str, Path] = {}
        # per key, the bytes last read or written and the Token they decode to: a load that
        # reads the same bytes again skips the checksum, the JSON and the token's checks
        self._known: dict[str, tuple[bytes, Token]] = {}
        self._sweep_checked = -math.inf  # monotonic time of this process's last look at the marker

    def _ensure_directory(self) -> None:
        if not self._dir_ready:
            ensure_private_dir(self.directory)
            self._dir_ready = True

    def path(self, key: str) -> Path:
        path = self._paths.get(key)
        if path is None:
            if not key or "/" in key or "\0" in key or key.startswith("."):
                raise StorageError(f"invalid cache key {key!r}")
            path = self.directory / f"{key}.json"
            if len(self._paths) >= MAX_REMEMBERED_KEYS:
                self._paths.clear()
            self._paths[key] = path
        return path

    def _remember(self, key: str, raw: bytes, token: Token) -> None:
        if len(self._known) >= MAX_REMEMBERED_KEYS:
            self._known.clear()
        self._known[key] = (raw, token)

    def fast_path_file(self, key: str) -> str | None:
        """The file holding *key*'s token (the CLI's fast path reads it directly)."""
        return str(self.path(key))

    def fast_renewal_files(self, key: str) -> tuple[str, str, float] | None:
        """The token file, the lock file :meth:`lock` takes and its timeout: the CLI's renewal
        path saves a token exactly as :meth:`save` does, under that lock (not on Windows,
        where the lock is filelock's)."""
        if sys.platform == "win32":
            return None
        path = str(self.path(key))
        return path, f"{path}.lock", self.lock_timeout

    def load(self, key: str) -> Token | None:
        path = self.path(key)
        try:
            raw = cachefile.read_raw(str(path))
            if raw is None:
                return None
            known = self._known.get(key)
            if known is not None and known[0] == raw:
                return known[1]
            token = Token.from_dict(cachefile.decode(raw))
            self._remember(key, raw, token)
            return token
        except cachefile.UnsafeEntry as exc:
            raise StorageError(str(exc)) from None
        except (cachefile.CorruptEntry, ValueError) as exc:
            # Only the lock holder moves a damaged file aside: a reader without the lock could
            # otherwise move away a good token a sibling saved after it read the damaged one.
            # Without the lock the entry is just absent, and the caller takes the lock next.
            if key in self._held:
                self._quarantine(path, str(exc))
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _quarantine(self, path: Path, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return  # another process moved it aside first and has reported it
        except OSError as exc:
            log.warning("cached token %s is damaged (%s) and cannot be moved: %s", path, reason, exc)
            return
        log.warning(
            "cached token %s was damaged (%s); moved it to %s and will fetch a new token",
            path, reason, aside.name,
        )

    def save(self, key: str, token: Token) -> None:
        path = self.path(key)
        fields = token.to_dict()
        problem = cachefile.time_problem(fields)
        if problem is not None:  # every other reader would call the entry damaged
            raise StorageError(f"cannot store the token of {path.name}: its {problem}")
        data = cachefile.encode(fields)
        try:
            self._ensure_directory()
            try:
                write_atomic(path, data)
            except FileNotFoundError:  # the directory went away since we made it: again
                self._dir_ready = False
                self._ensure_directory()
                write_atomic(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._remember(key, data, token)
        now = time.monotonic()
        if now - self._sweep_checked >= SWEEP_CHECK_INTERVAL:  # not even a stat on most saves
            self._sweep_checked = now
            sweep_if_due(self.directory)

    def delete(self, key: str) -> None:
        path = self.path(key)
        self._known.pop(key, None)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from None
        sweep_temp_files(path, 0)  # a killed writer's copy of the token goes too

    def wait_for_writer(self, key: str, timeout: float) -> bool:
        """See :class:`~tokenflow.plugins.contracts.WriterAwareStore` (POSIX ``flock`` only)."""
        if sys.platform == "win32":
            return False
        return wait_for_lock_holder(f"{self.path(key)}.lock", min(timeout, self.lock_timeout))

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        path = self.path(key)
        try:
            self._ensure_directory()
        except OSError as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror or exc}") from None
        if sys.platform == "win32":  # no flock: filelock's lock file (it refuses links from 3.20.1)
            with self._filelock(path):
                yield
            return
        try:
            fd = acquire_lock_file(f"{path}.lock", self.lock_timeout)
        except LockFileRefused as exc:  # a planted link or someone else's file: said as it is
            raise StorageError(str(exc)) from None
        except OSError as exc:  # flock refused (ENOLCK on some network file systems)
            raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from None
        if fd is None:
            raise self._timed_out(path)
        self._held.add(key)
        try:
            yield
        finally:
            self._held.discard(key)
            release_lock_file(fd)

    def _timed_out(self, path: Path) -> StorageError:
        return StorageError(timed_out_message(str(path), self.lock_timeout))

    @contextmanager
    def _filelock(self, path: Path) -> Iterator[None]:
        import filelock

        lock = filelock.FileLock(f"{path}.lock", timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise self._timed_out(path) from None
        except OSError as exc:
            raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from None
        key = path.name[: -len(".json")]
        self._held.add(key)
        try:
            yield
        finally:
            self._held.discard(key)
            lock.release()

    def keys(self) -> list[str]:
        """Cache keys present (for diagnostics and tests)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(".json")] for p in self.directory.glob("*.json"))


def file_store(options: Mapping[str, Any], context: PluginContext) -> TokenStore:
    raw = options.get("path")
    directory = token_dir(context.cache_dir)
    if isinstance(raw, str):
        directory = Path(raw).expanduser()
        if not directory.is_absolute():
            directory = context.base_dir / directory
    return FileStore(directory, float(options.get("lock_timeout", LOCK_TIMEOUT)))


@hookimpl
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    register("file", file_store, OPTIONS_SCHEMA)
