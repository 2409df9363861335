"""The ``file`` store (the default): one JSON file per cache key in the user cache directory.

Plain JSON like the caches of aws-cli, gcloud and kubelogin (the ``keyring`` store is for those
who want the OS to encrypt), protected the way ssh protects keys:

* files are mode 0600 in 0700 directories, and a file writable by others or owned by another
  user is refused rather than trusted;
* writes are atomic (temporary file, fsync, rename, fsync of the directory), so a reader or a
  crash sees the old token or the new one, never half of each; the temporary file a killed
  writer leaves is removed by ``delete`` (logout) and, once a minute old, by the next ``save``;
* a damaged entry is moved aside as ``<key>.json.corrupt-<UTC timestamp>``, reported once, and
  treated as absent; other entries are untouched;
* ``lock(key)`` is a :mod:`filelock` lock file beside the entry, serialising refreshes across
  processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenflow.base import cachefile
from tokenflow.base.files import ensure_private_dir, write_atomic
from tokenflow.errors import StorageError
from tokenflow.plugins.contracts import PluginContext, StoreRegistrar, TokenStore
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import get_logger
from tokenflow.tokens import Token

log = get_logger("tokenflow.store.file")

LOCK_TIMEOUT = 120.0  # seconds; a refresh holding the lock longer than this is stuck
STALE_TEMP_AGE = 60.0  # seconds; a write takes milliseconds: an older temp file is a dead writer's

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


def sweep_temp_files(path: Path, min_age: float) -> None:
    """Remove the temporary files of :func:`write_atomic` for *path* older than *min_age* seconds.

    A writer killed between creating its temporary file and renaming it leaves the file behind,
    with a token in it: left alone they pile up, and logging out would not forget them.
    """
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)  # listed first: unlinking while reading may skip entries
    except OSError:
        return  # only housekeeping
    now = time.time()
    for name in names:
        # mkstemp's names: prefix + 8 random characters + suffix
        if name.startswith(prefix) and name.endswith(".tmp") and len(name) == len(prefix) + 12:
            leftover = path.parent / name
            with contextlib.suppress(OSError):
                if now - leftover.lstat().st_mtime >= min_age:
                    leftover.unlink()


class FileStore:
    """Token files under one directory; see the module docstring for the guarantees."""

    def __init__(self, directory: Path, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout
        self._held: set[str] = set()  # keys whose lock this process holds

    def path(self, key: str) -> Path:
        if not key or "/" in key or "\0" in key or key.startswith("."):
            raise StorageError(f"invalid cache key {key!r}")
        return self.directory / f"{key}.json"

    def fast_path_file(self, key: str) -> str | None:
        """The file holding *key*'s token (the CLI's fast path reads it directly)."""
        return str(self.path(key))

    def load(self, key: str) -> Token | None:
        path = self.path(key)
        try:
            data = cachefile.read(str(path))
            return None if data is None else Token.from_dict(data)
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
        try:
            ensure_private_dir(self.directory)
            write_atomic(path, cachefile.encode(token.to_dict()))
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        sweep_temp_files(path, STALE_TEMP_AGE)

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from None
        sweep_temp_files(path, 0)  # a killed writer's copy of the token goes too

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        import filelock  # only refreshes need it; keeps the read path light

        path = self.path(key)
        try:
            ensure_private_dir(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror or exc}") from None
        lock = filelock.FileLock(f"{path}.lock", timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StorageError(
                f"another process has held the lock on {path.name} for over "
                f"{self.lock_timeout:g}s; if none is running, delete {path}.lock"
            ) from None
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
