"""The ``redis`` store: one token record per identity in Redis (or Valkey), shared by a fleet.

An optional extra (``pip install 'tokenflow[redis]'``): nothing here imports ``redis`` or
``cryptography`` until a store is built, so the plugin costs nothing to register.

What it promises (docs/fleet.md has the user's view; docs/reliability.md the tests):

* **Cross-host single flight.** ``lock(key)`` is a lease: ``SET lock <random> NX PX lease``
  with a fresh random value per acquisition, renewed by a background thread while held
  (compare-and-``PEXPIRE``) and released by compare-and-``DEL``. The engine re-reads the record
  under the lock, so hosts that waited take the winner's token and send nothing.
* **Fenced writes.** ``save`` under the lock is a compare-and-set script that writes only while
  the lock still holds *this* acquisition's value and the record's version is the one seen at
  acquisition. A holder that lost its lease (SIGSTOP, GC pause, partition) gets a
  :class:`StorageError` and can never overwrite the newer token another host saved.
* **The refresh token is never lost to Redis.** A record lives as long as its refresh token
  (``refresh_expires_in`` when the server sends it), else ``ttl_cap``; never just as long as
  the access token. Users must run Redis with ``noeviction`` or a ``volatile-*`` policy.
* **Encryption at rest** (``encrypt_key``): AES-GCM, the key id in the envelope, the record's
  name as associated data (a record copied under another identity does not decrypt),
  ``previous_keys`` for rotation. A record that fails to decrypt is a miss with one warning.
* **Unreachable Redis** is a :class:`StorageError` naming the URL without credentials, or,
  with ``fallback: file``, the local file store with a warning (never silently).

Why not redis-py's ``Lock``: by default it has no expiry (``timeout=None``: a killed holder
blocks the fleet for ever) and keeps its token in a ``threading.local`` (``thread_local=True``),
so a token cannot be checked by another thread (our renewal thread) and the token is not
available to the fenced write script. We need the lock value inside our own ``save`` script,
so we own the three small scripts below instead of configuring ``Lock`` around its defaults.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import random
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from tokenflow.errors import StorageError
from tokenflow.keyedlocks import KeyedLocks
from tokenflow.plugins.contracts import PluginContext, StoreRegistrar, TokenStore
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import Secret, get_logger, scrub
from tokenflow.tokens import Token

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TTL_CAP",
    "OPTIONS_SCHEMA",
    "RedisStore",
    "redis_store",
    "safe_url",
]

log = get_logger("tokenflow.store.redis")

INSTALL_HINT: Final = "pip install 'tokenflow[redis]'"
# The lease must outlast one whole HTTP exchange of the refresh: the transport's deadline is
# the server's ``timeout`` x tries (10 s x 3 with the defaults, plus backoff). Renewal keeps a
# live holder's lease anyway; the rule matters when renewal cannot reach Redis: the holder's
# request must be over before another host may start its own. The store does not see the
# server's settings, so it warns when built with a lease under one default try, and when a
# refresh actually holds the lock longer than the lease.
DEFAULT_LEASE: Final = 60.0
MIN_SAFE_LEASE: Final = 10.0  # below this, warn when built: shorter than one default try
DEFAULT_LOCK_TIMEOUT: Final = 120.0  # seconds a caller waits for another host's refresh
DEFAULT_TTL_CAP: Final = 30 * 86400.0  # record TTL when the refresh token's expiry is unknown
DEFAULT_SOCKET_TIMEOUT: Final = 5.0
MAX_RECORD_BYTES: Final = 64 * 1024  # a token record is a few KB; bigger is not ours
MAX_KEY_FILE_BYTES: Final = 4096
_POLL_FIRST: Final = 0.005  # first wait between lock attempts, doubled up to _POLL_MAX
_POLL_MAX: Final = 0.1
_PLAIN: Final = b"tf0:"
_SEALED: Final = b"tf1:"
_HKDF_INFO: Final = b"tokenflow redis store v1"

_KEY_SPEC: Mapping[str, Any] = {
    "description": "A secret: a string (use ${VAR}), {env: NAME} or {file: PATH}.",
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "additionalProperties": False, "required": ["env"],
         "properties": {"env": {"type": "string", "minLength": 1,
                                "description": "The environment variable holding it."}}},
        {"type": "object", "additionalProperties": False, "required": ["file"],
         "properties": {"file": {"type": "string", "minLength": 1,
                                 "description": "A file holding it (relative to the config)."}}},
    ],
}

OPTIONS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^(redis|rediss|unix)://",
            "description": "redis://[user:pass@]host:port/db, rediss:// (TLS) or unix:///path. "
            "Put credentials in ${VAR}; they are never printed.",
        },
        "password": {**_KEY_SPEC, "description": "The Redis password (instead of in the URL)."},
        "ca_file": {
            "type": "string",
            "description": "CA bundle for rediss:// (relative to the config file).",
        },
        "prefix": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
            "description": "Namespace of the keys (default 'tokenflow'); one per team.",
        },
        "lease": {
            "type": "number",
            "minimum": 1,
            "description": "Seconds a refresh lock lives without renewal (default 60); must "
            "exceed the server's timeout x tries.",
        },
        "lock_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds to wait for another host's refresh (default 120).",
        },
        "encrypt_key": {**_KEY_SPEC, "description": "Encrypt records with this key (AES-GCM)."},
        "previous_keys": {
            "type": "array",
            "items": _KEY_SPEC,
            "description": "Older keys that still decrypt records (for rotation).",
        },
        "ttl_cap": {
            "type": "number",
            "minimum": 60,
            "description": "Record TTL in seconds when the refresh token's expiry is unknown "
            "(default 30 days).",
        },
        "socket_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds to wait for Redis on each command (default 5).",
        },
        "fallback": {
            "enum": ["file"],
            "description": "When Redis is unreachable, use the local file store (with a warning).",
        },
    },
}

# -- scripts: KEYS[1] is the lock, KEYS[2] the record; both carry the identity's hash tag -----
# acquire: SET NX PX, and the record's version in the same round trip; a retried call whose
# first attempt took the lock (reply lost) finds its own value and succeeds too
_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
   or redis.call('GET', KEYS[1]) == ARGV[1] then
  return {1, redis.call('HGET', KEYS[2], 'v') or '0'}
end
return {0, ''}
"""
# renew: extend only our own acquisition
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# release: delete only our own acquisition
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# fenced write: ARGV = lock value, expected version, data ('' = delete), ttl ms.
# Returns the new version, -1 when the lock is not ours, -2 when the version moved on. A retried
# call whose first attempt was applied (reply lost) finds its own data and succeeds again.
_WRITE: Final = """
local v = redis.call('HGET', KEYS[2], 'v') or '0'
if ARGV[3] ~= '' and v == tostring(tonumber(ARGV[2]) + 1)
   and redis.call('HGET', KEYS[2], 'd') == ARGV[3] then
  return tonumber(v)
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if v ~= ARGV[2] then return -2 end
local nv = tonumber(v) + 1
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], 'd')
  redis.call('HSET', KEYS[2], 'v', nv)
else
  redis.call('HSET', KEYS[2], 'v', nv, 'd', ARGV[3])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return nv
"""


def safe_url(url: str) -> str:
    """*url* without user-info, password or query: what errors and logs may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable Redis URL>"
    # built by hand: urlunsplit drops the "//" of unix:///path when the host is empty
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _read_secret(spec: Any, what: str, base_dir: Path) -> str:
    """A key or password from its spec: a string, ``{env: NAME}`` or ``{file: PATH}``.

    The store factory cannot reach the secret sources of other plugins (PluginContext carries
    no resolver), so it reads the two that need nothing but the OS; commands and keyrings can
    feed ``${VAR}`` instead.
    """
    if isinstance(spec, str):
        value = spec
    elif isinstance(spec, Mapping) and "env" in spec:
        found = os.environ.get(str(spec["env"]))
        if not found:
            raise StorageError(f"redis store: {what}: environment variable {spec['env']} is not set")
        value = found
    elif isinstance(spec, Mapping) and "file" in spec:
        path = Path(str(spec["file"])).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise StorageError(f"redis store: {what}: cannot read {path}: {exc.strerror}") from None
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise StorageError(f"redis store: {what}: {path} is over {MAX_KEY_FILE_BYTES} bytes")
        value = raw.decode("utf-8", "replace").strip()
    else:
        raise StorageError(f"redis store: {what} must be a string, {{env: NAME}} or {{file: PATH}}")
    if not value:
        raise StorageError(f"redis store: {what} is empty")
    Secret(value)  # remembered: scrub() hides it wherever it might appear
    return value


# -- encryption --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Key:
    kid: bytes  # 8 hex characters: names the key in the envelope without revealing it
    aead: Any = field(repr=False)  # cryptography's AESGCM


def _derive(secret: str) -> _Key:
    """AES-256 key from the configured secret with HKDF (the secret should be random, e.g.
    ``openssl rand -base64 32``; HKDF spreads its entropy, it does not stretch a weak one)."""
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise StorageError(
            f"redis store: encrypt_key needs the cryptography package: {INSTALL_HINT}"
        ) from None
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    kid = hashlib.sha256(b"tokenflow key id\0" + material).hexdigest()[:8].encode()
    return _Key(kid, AESGCM(material))


class _Codec:
    """Turns tokens into record bytes and back: sealed with AES-GCM, or plain JSON."""

    def __init__(self, current: _Key | None, previous: list[_Key]) -> None:
        self.current = current
        self.keys = {k.kid: k for k in ([current] if current else []) + previous}

    def encode(self, token: Token, record: str) -> bytes:
        plain = json.dumps(token.to_dict(), separators=(",", ":")).encode()
        if self.current is None:
            return _PLAIN + plain
        nonce = secrets.token_bytes(12)
        sealed = self.current.aead.encrypt(nonce, plain, record.encode())
        return _SEALED + self.current.kid + b":" + base64.urlsafe_b64encode(nonce + sealed)

    def decode(self, data: bytes, record: str) -> Token:
        """The token in *data*; ``ValueError`` with a precise reason (never a secret) if not."""
        if data.startswith(_PLAIN):
            if self.current is not None:
                raise ValueError("it is not encrypted but encrypt_key is set (refusing to trust it)")
            plain = data[len(_PLAIN):]
        elif data.startswith(_SEALED):
            kid, _, body = data[len(_SEALED):].partition(b":")
            key = self.keys.get(kid)
            if key is None:
                known = ", ".join(k.decode() for k in self.keys) or "none: encrypt_key is not set"
                raise ValueError(
                    f"it is encrypted with key id {kid.decode('ascii', 'replace')[:8]!r}, which is "
                    f"neither encrypt_key nor one of previous_keys (known ids: {known})"
                )
            try:
                raw = base64.urlsafe_b64decode(body)
            except (binascii.Error, ValueError):
                raise ValueError("its envelope is not valid base64") from None
            from cryptography.exceptions import InvalidTag

            try:
                plain = key.aead.decrypt(raw[:12], raw[12:], record.encode())
            except (InvalidTag, ValueError):
                raise ValueError(
                    f"it fails authentication with key id {kid.decode()} (tampered with, "
                    "truncated, or copied from another record)"
                ) from None
        else:
            raise ValueError("it is not a tokenflow record")
        try:
            data_dict = json.loads(plain)
        except ValueError:
            raise ValueError("its content is not JSON") from None
        if not isinstance(data_dict, dict):
            raise ValueError("its content is not a JSON object")
        return Token.from_dict(data_dict)


# -- the lease ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Lease:
    """One acquisition of one key's lock: its own random value, never shared between holders."""

    lock_key: str
    value: str  # secrets.token_hex: fresh per acquisition
    version: bytes  # the record's version when acquired (bumped by our own writes)
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    renewer: threading.Thread | None = None
    taken_at: float = field(default_factory=time.monotonic)


class _Unreachable(StorageError):
    """Redis could not be reached during a write; ``cause`` is redis-py's exception."""

    def __init__(self, message: str, cause: Exception) -> None:
        super().__init__(message)
        self.cause = cause


_FALLBACK: Final = "fallback"  # _held value: this hold uses the file store, Redis was down


class RedisStore:
    """Token records in Redis; see the module docstring for the guarantees."""

    def __init__(
        self,
        client: Any,
        url: str,
        *,
        prefix: str = "tokenflow",
        lease: float = DEFAULT_LEASE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        ttl_cap: float = DEFAULT_TTL_CAP,
        codec: _Codec | None = None,
        fallback: TokenStore | None = None,
    ) -> None:
        import redis  # the caller checked it is installed

        self._redis = redis
        self._client = client
        self.url = safe_url(url)
        self.prefix = prefix
        self.lease = lease
        self.lock_timeout = lock_timeout
        self.ttl_cap = ttl_cap
        self._codec = codec or _Codec(None, [])
        self._fallback = fallback
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._write = client.register_script(_WRITE)
        # In-process lock per key, held around the lease: this process has at most one lease
        # per key, so _held[key] names it without any thread-local state.
        self._local = KeyedLocks()
        self._held: dict[str, _Lease | str] = {}
        self._warned: set[tuple[str, bytes, str]] = set()
        self._degraded = False  # the fallback is in use (warned once per outage)
        self._policy_checked = False
        self._slow_warned = False

    def __repr__(self) -> str:
        return f"RedisStore(url={self.url!r}, prefix={self.prefix!r}, lease={self.lease:g})"

    # -- names ---------------------------------------------------------------------------------
    def record_key(self, key: str) -> str:
        """The record's Redis key; ``{key}`` is the Cluster hash tag shared with the lock."""
        self._check(key)
        return f"{self.prefix}:{{{key}}}:token"

    def lock_key(self, key: str) -> str:
        self._check(key)
        return f"{self.prefix}:{{{key}}}:lock"

    @staticmethod
    def _check(key: str) -> None:
        if not key or any(c in key for c in "{}\0\r\n "):
            raise StorageError(f"invalid cache key {key!r}")

    # -- errors --------------------------------------------------------------------------------
    def _failure(self, exc: Exception, doing: str) -> StorageError:
        errors = self._redis.exceptions
        reason = scrub(" ".join(str(exc).split()))[:300]
        if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
            return StorageError(f"Redis at {self.url} refused the credentials while {doing} ({reason})")
        # the reason in parentheses: "a token: Error 2" would read as a secret to scrub()
        if isinstance(exc, errors.ConnectionError | errors.TimeoutError | OSError):
            return StorageError(f"cannot reach Redis at {self.url} while {doing} ({reason})")
        return StorageError(f"Redis at {self.url} failed while {doing} ({reason})")

    def _unreachable(self, exc: Exception) -> bool:
        errors = self._redis.exceptions
        return isinstance(exc, errors.ConnectionError | errors.TimeoutError | OSError) and not (
            isinstance(exc, errors.AuthenticationError | errors.AuthorizationError)
        )

    def _degrade(self, exc: Exception, doing: str) -> TokenStore:
        """The fallback store, or raise: Redis failed while *doing*."""
        failure = self._failure(exc, doing)
        if self._fallback is None or not self._unreachable(exc):
            raise failure from None
        if not self._degraded:
            self._degraded = True
            log.warning(
                "%s; using the local file store until it is back (fallback: file). Hosts do not "
                "share tokens or refreshes meanwhile: with a server that rotates refresh tokens "
                "a host may have to sign in again", failure,
            )
        return self._fallback

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.warning("Redis at %s is reachable again; the shared store is back in use", self.url)

    def _warn_once(self, key: str, version: bytes, reason: str) -> None:
        marker = (key, version, reason)
        if marker not in self._warned:
            self._warned.add(marker)
            log.warning(
                "the token record %s (version %s) in Redis at %s is unusable: %s; treating it "
                "as absent (a new token will be fetched and saved over it)",
                self.record_key(key), version.decode("ascii", "replace"), self.url, reason,
            )

    # -- TokenStore ----------------------------------------------------------------------------
    def load(self, key: str) -> Token | None:
        held = self._held.get(key)
        if held == _FALLBACK:
            assert self._fallback is not None
            return self._fallback.load(key)
        record = self.record_key(key)
        try:
            version, data = self._client.hmget(record, ["v", "d"])
        except self._redis.exceptions.RedisError as exc:
            return self._degrade(exc, "reading a token").load(key)
        self._recovered()
        token = self._decode(key, version or b"0", data)
        if self._fallback is not None:
            token = self._newer(token, self._fallback_load(key))
        return token

    def _fallback_load(self, key: str) -> Token | None:
        assert self._fallback is not None
        try:
            return self._fallback.load(key)
        except StorageError:
            return None

    @staticmethod
    def _newer(shared: Token | None, local: Token | None) -> Token | None:
        """After an outage, a token this host saved to the fallback may be newer (its refresh
        token the only valid one, if the server rotates): offer it; the engine then refreshes
        with it under the Redis lock and saves the result to Redis."""
        if local is None:
            return shared
        if shared is None or local.obtained_at > shared.obtained_at:
            return local
        return shared

    def _decode(self, key: str, version: bytes, data: bytes | None) -> Token | None:
        if data is None:
            return None
        if len(data) > MAX_RECORD_BYTES:
            self._warn_once(key, version, f"it is {len(data)} bytes, over {MAX_RECORD_BYTES}")
            return None
        try:
            return self._codec.decode(data, self.record_key(key))
        except ValueError as exc:
            self._warn_once(key, version, str(exc))
            return None

    def save(self, key: str, token: Token) -> None:
        held = self._held.get(key)
        if held is None:  # not under lock(key): take it, so the write is still fenced
            with self.lock(key):
                self.save(key, token)
            return
        if held == _FALLBACK:
            assert self._fallback is not None
            self._fallback.save(key, token)
            return
        assert isinstance(held, _Lease)
        data = self._codec.encode(token, self.record_key(key))
        try:
            self._fenced_write(key, held, data, self._ttl_ms(token), "saving a token")
        except _Unreachable as exc:
            # Redis went away after the lock was taken: the token (with a refresh token the
            # server may just have rotated) must not be lost; keep it locally if allowed
            self._degrade(exc.cause, "saving a token").save(key, token)

    def delete(self, key: str) -> None:
        held = self._held.get(key)
        if held is None:
            with self.lock(key):
                self.delete(key)
            return
        if self._fallback is not None:
            self._fallback.delete(key)  # logging out forgets the local copy too
        if isinstance(held, _Lease):
            self._fenced_write(key, held, b"", int(self.ttl_cap * 1000), "deleting a token")

    def _fenced_write(self, key: str, lease: _Lease, data: bytes, ttl_ms: int, doing: str) -> None:
        try:
            result = int(self._write(
                keys=[lease.lock_key, self.record_key(key)],
                args=[lease.value, lease.version, data, ttl_ms],
            ))
        except self._redis.exceptions.RedisError as exc:
            if self._unreachable(exc):
                raise _Unreachable(str(self._failure(exc, doing)), exc) from None
            raise self._failure(exc, doing) from None
        if result == -1:
            raise StorageError(
                f"not {doing} in Redis at {self.url}: this process lost the refresh lock of "
                f"{self.record_key(key)} (it was paused or cut off from Redis for over the "
                f"{self.lease:g}s lease) and another host may have saved a newer token"
            )
        if result == -2:
            raise StorageError(
                f"not {doing} in Redis at {self.url}: the record {self.record_key(key)} changed "
                "while this process held the lock (written by a host not using the lock?)"
            )
        lease.version = str(result).encode()

    def _ttl_ms(self, token: Token) -> int:
        """How long the record lives: the refresh token's life, never the access token's."""
        now = time.time()
        if not token.refresh_token:
            ttl = max(token.expires_at - now, 0.0) + 60  # nothing to keep once it expires
        else:
            ttl = self.ttl_cap
            rt_life = token.extra.get("refresh_expires_in")
            # 0 means "does not expire" (Keycloak's offline tokens): keep the cap
            if isinstance(rt_life, int | float) and not isinstance(rt_life, bool) and rt_life > 0:
                ttl = token.obtained_at + float(rt_life) - now
            ttl = max(ttl, token.expires_at - now + 60, 60.0)
        return int(ttl * 1000)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        deadline = time.monotonic() + self.lock_timeout
        local = self._local(key)
        if not local.acquire(timeout=self.lock_timeout):
            raise StorageError(
                f"another thread of this process held the refresh lock of {key} for over "
                f"{self.lock_timeout:g}s"
            )
        try:
            lease: _Lease | None = None
            fallback: TokenStore | None = None
            try:
                lease = self._take(key, deadline)
            except self._redis.exceptions.RedisError as exc:
                fallback = self._degrade(exc, "taking the refresh lock")
            if fallback is not None:
                with fallback.lock(key):
                    self._held[key] = _FALLBACK
                    try:
                        yield
                    finally:
                        del self._held[key]
                return
            assert lease is not None
            self._recovered()
            self._held[key] = lease
            try:
                yield
            finally:
                del self._held[key]
                self._let_go(lease)
        finally:
            local.release()

    def _take(self, key: str, deadline: float) -> _Lease:
        """Acquire the lease, waiting (bounded) for another host's.

        Waiting polls with a short exponential backoff (5 ms doubling to 100 ms, jittered)
        rather than pub/sub on release: a missed message (reconnect, Cluster failover) would
        stall a pub/sub waiter until its deadline, so polling would be needed as the backstop
        anyway; the engine lets one thread per process wait per key, so a fleet polls a few
        times a second per host, and a waiter wakes within 100 ms of the release.
        """
        lock_key, record = self.lock_key(key), self.record_key(key)
        lease_ms = int(self.lease * 1000)
        value = secrets.token_hex(16)  # fresh per acquisition
        pause = _POLL_FIRST
        while True:
            got, version = self._acquire(keys=[lock_key, record], args=[value, lease_ms])
            if int(got) == 1:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"another host has held the refresh lock {lock_key} in Redis at {self.url} "
                    f"for over {self.lock_timeout:g}s (its lease is renewed while it lives; it "
                    f"expires {self.lease:g}s after the holder dies)"
                )
            time.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _POLL_MAX)
        lease = _Lease(lock_key, value, bytes(version))
        lease.renewer = threading.Thread(
            target=self._keep, args=(lease,), name=f"tokenflow-redis-lease-{key[:8]}", daemon=True
        )
        lease.renewer.start()
        self._check_policy()
        return lease

    def _keep(self, lease: _Lease) -> None:
        """Renew *lease* every third of its length until released; note it if lost."""
        interval = self.lease / 3
        lease_ms = int(self.lease * 1000)
        expires = time.monotonic() + self.lease
        while not lease.stop.wait(interval):
            try:
                renewed = int(self._renew(keys=[lease.lock_key], args=[lease.value, lease_ms]))
            except self._redis.exceptions.RedisError as exc:
                if time.monotonic() < expires:
                    log.debug("cannot renew the lease %s yet: %s", lease.lock_key, self._failure(
                        exc, "renewing the refresh lock"))
                    continue
                renewed = 0
            if not renewed:
                lease.lost.set()
                log.warning(
                    "lost the refresh lock %s in Redis at %s (not renewed within the %gs lease); "
                    "another host may refresh now, and this process's result will not be saved",
                    lease.lock_key, self.url, self.lease,
                )
                return
            expires = time.monotonic() + self.lease

    def _let_go(self, lease: _Lease) -> None:
        held = time.monotonic() - lease.taken_at
        if held > self.lease and not self._slow_warned:
            # the rule's runtime check (the store does not see the server's timeout and retries)
            self._slow_warned = True
            log.warning(
                "a refresh held the lock %s for %.1fs, longer than the %gs lease: had this host "
                "lost Redis meanwhile, another host could have refreshed too; make lease exceed "
                "the server's timeout x (retries + 1)", lease.lock_key, held, self.lease,
            )
        lease.stop.set()
        if lease.renewer is not None and lease.renewer is not threading.current_thread():
            lease.renewer.join(timeout=5)
        if lease.lost.is_set():
            return
        try:
            self._release(keys=[lease.lock_key], args=[lease.value])
        except self._redis.exceptions.RedisError as exc:
            # not fatal: the lease expires by itself; but the fleet waits for it meanwhile
            log.warning("%s; it expires within %gs", self._failure(exc, "releasing the refresh lock"),
                        self.lease)

    def _check_policy(self) -> None:
        """Warn once if Redis may evict records that hold refresh tokens (best effort)."""
        if self._policy_checked:
            return
        self._policy_checked = True
        try:
            policy = self._client.info("memory").get("maxmemory_policy", "")
        except self._redis.exceptions.RedisError:
            return  # INFO may be disabled on managed services
        if isinstance(policy, bytes):
            policy = policy.decode("ascii", "replace")
        if isinstance(policy, str) and policy.startswith("allkeys-"):
            log.warning(
                "Redis at %s evicts with maxmemory-policy %s: under memory pressure it may drop "
                "a record and its refresh token; use noeviction or a volatile-* policy",
                self.url, policy,
            )


def _connect(options: Mapping[str, Any], context: PluginContext) -> Any:
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:
        raise StorageError(f"the redis store needs the redis package: {INSTALL_HINT}") from None
    url = str(options["url"])
    kwargs: dict[str, Any] = {
        "socket_timeout": float(options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT)),
        "socket_connect_timeout": float(options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT)),
        # two quick retries cover a dropped idle connection; an outage fails in well under a second
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        "decode_responses": False,
    }
    if "password" in options:
        kwargs["password"] = _read_secret(options["password"], "password", context.base_dir)
    parts = urlsplit(url)
    with contextlib.suppress(ValueError):
        if parts.password:  # remembered as written and decoded: scrub() hides both
            Secret(parts.password)
            Secret(unquote(parts.password))
    if "ca_file" in options:
        if parts.scheme != "rediss":
            raise StorageError(f"redis store: ca_file needs a rediss:// URL, not {safe_url(url)}")
        ca = Path(str(options["ca_file"])).expanduser()
        kwargs["ssl_ca_certs"] = str(ca if ca.is_absolute() else context.base_dir / ca)
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        raise StorageError(f"redis store: bad url {safe_url(url)}: {scrub(str(exc))}") from None


def redis_store(options: Mapping[str, Any], context: PluginContext) -> TokenStore:
    """Build the store from the profile's (``${VAR}``-expanded) options; connects lazily."""
    client = _connect(options, context)
    lease = float(options.get("lease", DEFAULT_LEASE))
    if lease < MIN_SAFE_LEASE:
        # the store cannot see the server's timeout; a lease under one default try is surely
        # too short, longer ones are checked when a refresh outlasts its lease (_let_go)
        log.warning(
            "profile %r: redis store lease %gs is shorter than one default HTTP try (10s); make "
            "lease exceed the server's timeout x (retries + 1)", context.profile, lease,
        )
    codec = _Codec(None, [])
    if "encrypt_key" in options:
        current = _derive(_read_secret(options["encrypt_key"], "encrypt_key", context.base_dir))
        previous = [
            _derive(_read_secret(spec, f"previous_keys[{i}]", context.base_dir))
            for i, spec in enumerate(options.get("previous_keys", []))
        ]
        codec = _Codec(current, previous)
    elif options.get("previous_keys"):
        raise StorageError("redis store: previous_keys needs encrypt_key (the key to write with)")
    fallback: TokenStore | None = None
    if options.get("fallback") == "file":
        # The one place a built-in builds another: the context gives no access to the plugin
        # host, and the fallback must be the same file store the CLI reads.
        from tokenflow.builtins.file_store import file_store

        fallback = file_store({}, context)
    return RedisStore(
        client,
        str(options["url"]),
        prefix=str(options.get("prefix", "tokenflow")),
        lease=lease,
        lock_timeout=float(options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)),
        ttl_cap=float(options.get("ttl_cap", DEFAULT_TTL_CAP)),
        codec=codec,
        fallback=fallback,
    )


@hookimpl
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    register("redis", redis_store, OPTIONS_SCHEMA)
