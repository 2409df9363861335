"""The ``sqlite`` token store: every token in one SQLite database file.

Profile usage::

    store: sqlite                                  # default file in tokenflow's cache directory
    store: {sqlite: {path: tokens.sqlite3}}        # relative to the config file
    store: {sqlite: {path: /srv/tokens.sqlite3, lock_timeout: 30}}

How it keeps the promises of :class:`tokenflow.interfaces.TokenStore`:

* **thread-safe**: every call opens its own short-lived connection, so no connection is shared
  between threads;
* **atomic saves**: one ``INSERT OR REPLACE`` statement, so a reader sees the old or the new
  token, never half of each;
* **damaged rows are absent**: a row that is not a valid token is logged (without its content)
  and ``load`` returns ``None``; tokenflow then fetches a new token and overwrites it. Only an
  unusable database (not SQLite, no permission) raises :class:`~tokenflow.errors.StorageError`;
* **cross-process locking**: ``lock(key)`` takes a :mod:`filelock` lock file per key in a
  ``<database>.locks`` directory beside the database. SQLite's own write lock would not do:
  tokenflow calls ``save`` while it holds ``lock(key)``, and a writer would then wait for itself;
* **private**: the database is created mode 0600 in a 0700 directory (tokens are secrets).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import filelock

from tokenflow.errors import StorageError
from tokenflow.plugins.contracts import PluginContext, TokenStore
from tokenflow.tokens import Token

__all__ = ["DEFAULT_FILENAME", "OPTIONS_SCHEMA", "SQLiteStore", "sqlite_store"]

log = logging.getLogger("tokenflow_example.sqlite")

DEFAULT_FILENAME = "example-tokens.sqlite3"
DEFAULT_LOCK_TIMEOUT = 120.0  # seconds; a refresh holding the lock longer than this is stuck

# The JSON Schema tokenflow validates ``store: {sqlite: OPTIONS}`` against (errors are reported at
# FILE:LINE:COL) and adds to ``tokenflow schema`` for editors. Give every property a description.
OPTIONS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "The SQLite database file (default: example-tokens.sqlite3 in "
            "tokenflow's cache directory). Relative paths are relative to the config file.",
        },
        "lock_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds to wait for another process's refresh (default 120).",
        },
    },
}

_CREATE = (
    "CREATE TABLE IF NOT EXISTS tokens "
    "(key TEXT PRIMARY KEY, data TEXT NOT NULL, saved_at REAL NOT NULL)"
)


class SQLiteStore:
    """Tokens as JSON rows of one SQLite table; see the module docstring for the guarantees."""

    def __init__(self, path: Path, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_timeout = lock_timeout

    # -- connections ---------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection; any SQLite failure becomes a StorageError."""
        try:
            if not self.path.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open token database {self.path}: {exc}") from None
        with closing(conn):
            try:
                conn.execute(_CREATE)
                yield conn
            except sqlite3.Error as exc:  # never shows a token: SQLite messages hold no values
                raise StorageError(f"token database {self.path} failed: {exc}") from None

    # -- the TokenStore protocol ---------------------------------------------------------------
    def load(self, key: str) -> Token | None:
        with self._connection() as conn:
            row = conn.execute("SELECT data FROM tokens WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return Token.from_dict(json.loads(row[0]))
        except (ValueError, TypeError, AttributeError) as exc:
            # Damaged data is absent data: report it (never its content) and let tokenflow fetch.
            log.warning("token row %s… in %s is damaged (%s); ignoring it",
                        key[:8], self.path, type(exc).__name__)
            return None

    def save(self, key: str, token: Token) -> None:
        data = json.dumps(token.to_dict(), sort_keys=True)
        with self._connection() as conn:
            conn.execute("INSERT OR REPLACE INTO tokens (key, data, saved_at) VALUES (?, ?, ?)",
                         (key, data, time.time()))

    def delete(self, key: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM tokens WHERE key = ?", (key,))

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the lock file of *key*: one refresh at a time across every process."""
        directory = self.path.parent / f"{self.path.name}.locks"
        name = hashlib.sha256(key.encode()).hexdigest()[:32]  # any key makes a safe file name
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {directory}: {exc.strerror or exc}") from None
        lock = filelock.FileLock(directory / f"{name}.lock", timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StorageError(
                f"another process has held the lock of a token in {self.path.name} for over "
                f"{self.lock_timeout:g}s; if none is running, delete {directory}"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- extras (not part of the protocol) -----------------------------------------------------
    def keys(self) -> list[str]:
        """The keys present, sorted (handy in tests)."""
        with self._connection() as conn:
            return [row[0] for row in conn.execute("SELECT key FROM tokens ORDER BY key")]


def sqlite_store(options: Mapping[str, Any], context: PluginContext) -> TokenStore:
    """The store factory: ``options`` are the validated ``store: {sqlite: OPTIONS}``."""
    raw = options.get("path")
    if raw is None:
        path = context.cache_dir / DEFAULT_FILENAME
    else:
        path = Path(str(raw)).expanduser()
        if not path.is_absolute():
            path = context.base_dir / path  # relative to the file that names it
    return SQLiteStore(path, float(options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)))
