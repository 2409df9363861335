"""The token life cycle: an explicit state machine with single flight.

::

    ABSENT ──grant──▶ FRESH ──time──▶ EXPIRING ──time──▶ EXPIRED
                        ▲                 │                  │
                        └──── refresh ────┴──────────────────┘
                                  │ refused (invalid_grant / invalid_token)
                                  ▼
                       re-read the store (a sibling may have rotated), then grant again,
                       or ReauthenticationRequired when the profile has no credentials

A renewal (the refresh, or the grant for a token without a refresh token, as with
client_credentials) that fails for a transient cause (network, 429, 5xx) while the token is
still valid (EXPIRING) hands out the current token and emits ``stale_served``; it is retried a
little later.

Single flight: the hot path (a fresh token already in memory) takes no lock. Anything else takes
the per-key lock of this process (threads of the same session that find a renewal in progress
wait for it together on the session's condition instead, for at most ``FLIGHT_WAIT``), reads the
store, and, if the token is not fresh, waits for another process's renewal when the store can
say (``wait_for_writer``) and reads again; only then it takes the store's ``lock(key)`` (across
processes) and re-reads the store under it, because another process may have refreshed
meanwhile. So any number of threads and processes asking at the moment of expiry cause one
token request.

The clock is injectable (``clock=``) and is the wall clock by default: a monotonic clock stops
while a laptop sleeps, and tokens keep expiring meanwhile.

When a resource server refuses a token the cache still calls fresh (another process refreshed
and the server dropped the old token), :meth:`TokenSession.invalidate` forgets it, but only if
it is still the token the caller used: a burst of 401s from many threads or processes then
causes one refresh, not one per request. The async API (``atoken``, ``aheaders``,
``ainvalidate``) answers from memory inline and runs anything slower (store I/O, locks, HTTP)
in a worker thread, so an event loop is never blocked; the single flight is the same one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenflow.config.model import Profile, SecretSpec
from tokenflow.engine.aio import AsyncFlight
from tokenflow.engine.discovery import Discovery
from tokenflow.engine.identity import cache_key, user_identity
from tokenflow.engine.placement import QUERY, place
from tokenflow.errors import (
    REFUSED_REFRESH_ERRORS,
    ConfigError,
    CredentialError,
    ReauthenticationRequired,
    StorageError,
    TokenflowError,
    TokenRequestError,
    TransportError,
)
from tokenflow.events import EventKind, TokenEvent
from tokenflow.keyedlocks import KeyedLocks
from tokenflow.plugins.contracts import (
    HttpRequest,
    HttpResponse,
    PluginContext,
    TokenStore,
    WriterAwareStore,
)
from tokenflow.plugins.host import PluginHost
from tokenflow.redact import Secret, get_logger, install_log_filters, printable
from tokenflow.tokens import Token, explain_request_error, token_from_reply

if TYPE_CHECKING:
    from tokenflow.engine.pools import TransportPool

__all__ = [
    "REFUSED_REFRESH_ERRORS",
    "LoginPrompt",
    "State",
    "StatusReport",
    "TokenSession",
    "classify",
    "note_failed_refresh",
]

STALE_RETRY_INTERVAL = 5.0  # seconds between refresh attempts while serving a stale token
# seconds a caller waits for another thread's renewal before queueing on the key's lock itself
# (a sign-in can take minutes; a refresh takes milliseconds)
FLIGHT_WAIT = 5.0

Clock = Callable[[], float]
EventCallback = Callable[[TokenEvent], None]

log = get_logger("tokenflow.session")


class State(enum.Enum):
    """Where a cached token stands in its life."""

    ABSENT = "absent"
    FRESH = "fresh"
    EXPIRING = "expiring"  # inside the refresh margin: still valid, refresh now
    EXPIRED = "expired"


def classify(token: Token | None, now: float, margin: float) -> State:
    """The state of *token* at *now* with a refresh *margin* (capped at half the lifetime)."""
    if token is None:
        return State.ABSENT
    if now >= token.expires_at:
        return State.EXPIRED
    if now >= token.refresh_at(margin):
        return State.EXPIRING
    return State.FRESH


# refresh requests this process already sent and saw fail (see note_failed_refresh)
_failed_refreshes: dict[str, TokenRequestError | TransportError] = {}
_MAX_FAILED = 64


def note_failed_refresh(refresh_token: str, error: TokenRequestError | TransportError) -> None:
    """Tell this process's sessions that a refresh with *refresh_token* was just sent and failed
    with *error*: refused (``invalid_grant`` or ``invalid_token``), or no usable answer at all
    (a network failure, a 5xx after the transport's retries). Other errors are ignored: their
    message is the session's to word.

    The next session about to send that refresh token takes *error* as the server's answer
    instead of asking again, and goes on exactly as if it had asked: a refusal is followed by
    re-reading the store and granting again, a transient failure with a still-valid token
    serves that token. The CLI's renewal path calls this before it hands such a failure over to
    the full path, so the server is asked once, not twice.
    """
    if isinstance(error, TransportError) or error.refused_refresh:
        if len(_failed_refreshes) >= _MAX_FAILED:
            _failed_refreshes.clear()
        _failed_refreshes[refresh_token] = error


# shared by every session of this process, so two sessions of one identity refresh once
_key_lock = KeyedLocks()
_sessions: weakref.WeakSet[TokenSession] = weakref.WeakSet()


def _reset_sessions_after_fork() -> None:
    """In a forked child, no session keeps the parent's connection pools.

    The child would otherwise write to the parent's keep-alive sockets (two processes reading
    one reply), or wait for ever on a pool lock a parent thread held at the moment of the fork.
    The per-key locks are reset by :mod:`tokenflow.keyedlocks`, which sessions never keep.
    """
    for session in list(_sessions):
        session._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_sessions_after_fork)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What ``tokenflow status`` shows; no secrets, no network."""

    profile: str
    cache_key: str
    store: str
    state: State
    expires_at: float | None
    expires_in: float | None
    fingerprint: str | None
    has_refresh_token: bool
    scope: str | None


class TokenSession:
    """Hands out fresh tokens for one profile; thread-safe; see the module docstring."""

    def __init__(
        self,
        profile: Profile,
        *,
        plugins: PluginHost,
        cache_dir: Path,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        store: TokenStore | None = None,
        interactive: bool | None = None,
        login: Callable[[LoginPrompt], None] | None = None,
        on_event: EventCallback | None = None,
        transports: TransportPool | None = None,
    ) -> None:
        """*on_event* receives every :class:`~tokenflow.events.TokenEvent` the plugin observers
        get (one that raises is logged and ignored). *transports* shares connection pools with
        the other sessions of its owner; without it the session opens its own."""
        self.profile = profile
        self._on_event = on_event
        self._transports = transports
        self._async_flight: AsyncFlight[Token] = AsyncFlight()
        self._async_invalidations: AsyncFlight[bool] = AsyncFlight()
        self._url_logs_scrubbed = False
        self._plugins = plugins
        self._clock = clock
        self._sleep = sleep
        if interactive is None:
            interactive = bool(sys.stdin and sys.stdin.isatty())
        self._cache_dir = cache_dir
        self._interactive = interactive
        self._login = login
        self._secrets: dict[str, str] = {}
        self._dialect = plugins.dialect(profile.server.dialect)
        self._grant_entry = plugins.grant(profile.grant)
        identity = user_identity(profile, self._grant_entry.grant.identity_options,
                                 plugins.sources, self._secret)
        self.cache_key = cache_key(profile, identity)
        if store is None:
            entry = plugins.store(profile.store.name)
            store = entry.factory(profile.store.options, self._context(profile.store.base_dir))
        self.store = store
        self._writer_aware: WriterAwareStore | None = (
            store if isinstance(store, WriterAwareStore) else None)
        self._transport: Any = None
        self._discovery_instance: Discovery | None = None
        # The hot path reads these two without a lock. Writers set the token first and the
        # deadline second, so a reader that sees a deadline in the future sees a token at
        # least as new as the one it belongs to; forgetting only moves the deadline.
        self._fresh_token: Token | None = None
        self._fresh_until = -math.inf
        # while a thread renews this session's token, the others wait on this condition together
        # (see _obtain) rather than queueing on the lock, which wakes them one at a time
        self._flight_done = threading.Condition()
        self._renewing = False
        self._renewals = 0  # renewals finished: what a waiter watches change
        _sessions.add(self)

    @property
    def _lock(self) -> threading.Lock:
        """This key's in-process lock, looked up on each use (never kept: after ``fork()`` the
        child's locks are new ones, and a kept lock could be one a parent thread held)."""
        return _key_lock(self.cache_key)

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """The store's cross-process lock of this key.

        An ``OSError`` while taking it (a read-only or full cache directory, a lock path that
        is a directory) is an ordinary condition of the machine, so it becomes a
        :class:`StorageError` naming the store, whatever store plugin raised it.
        """
        lock = self.store.lock(self.cache_key)
        try:
            lock.__enter__()
        except OSError as exc:
            raise StorageError(
                f"profile {self.profile.name!r}: cannot lock the {self.profile.store.name!r} "
                f"token store: {exc.strerror or type(exc).__name__}"
                f"{f' ({exc.filename})' if exc.filename else ''}"
            ) from None
        try:
            yield
        except BaseException:
            if not lock.__exit__(*sys.exc_info()):
                raise
        else:
            lock.__exit__(None, None, None)

    def _after_fork_in_child(self) -> None:
        """Forget the connection pools (the parent's sockets are not the child's to use) and any
        renewal a parent thread had in flight (no thread of the child will finish it)."""
        self._transport = None
        self._flight_done = threading.Condition()
        self._renewing = False

    # -- the hot path --------------------------------------------------------------------------
    def token(self) -> Token:
        """A token that is fresh now: from memory, from the store, refreshed or fetched."""
        if self._clock() < self._fresh_until:
            return self._fresh_token  # type: ignore[return-value]  # set before the deadline
        return self._obtain(force=False)

    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for the current token.

        This is the header placement whatever the profile says; :meth:`apply` honours the
        profile's ``token_placement``.
        """
        return {"Authorization": f"Bearer {self.token().access_token}"}

    @property
    def token_placement(self) -> str:
        """``"header"`` or ``"query"``: where requests to the resource server carry the token."""
        return self.profile.token_placement

    def apply(
        self, url: str, headers: Mapping[str, str] | None = None, token: Token | None = None
    ) -> tuple[str, dict[str, str]]:
        """``(url, headers)`` carrying *token* (default: the current one) where the profile's
        ``token_placement`` says: the ``Authorization`` header or the ``access_token`` query
        parameter. Keep the token you used, to hand it to :meth:`invalidate` after a 401."""
        token = self.token() if token is None else token
        placement = self.profile.token_placement
        if placement == QUERY and not self._url_logs_scrubbed:
            # the token is now part of a URL, which HTTP libraries log at DEBUG
            install_log_filters("httpx", "httpcore")
            self._url_logs_scrubbed = True
        return place(url, headers, token.access_token, placement)

    def invalidate(self, token: Token | str) -> bool:
        """Forget *token* (a Token or its access token) because a resource server refused it.

        Only if it is still the cached token, in memory and in the store (compared and replaced
        under this process's lock and the store's lock): when many callers report the same
        refused token, the first forgets it and the next :meth:`token` refreshes once; the
        others find the new token already there. The stored copy is kept with its refresh
        token but marked expired, so the refresh grant (not a new sign-in) replaces it.
        Returns whether anything was forgotten.
        """
        access = token if isinstance(token, str) else token.access_token
        if self._holds_newer_than(access):
            return False
        started = time.perf_counter()
        forgotten: Token | None = None
        with self._lock:
            fresh = self._fresh_token
            if fresh is not None and fresh.access_token == access and self._fresh_until > -math.inf:
                self._fresh_until = -math.inf
                forgotten = fresh
            with self._store_lock():
                stored = self.store.load(self.cache_key)
                now = self._clock()
                if stored is not None and stored.access_token == access and stored.expires_at > now:
                    self.store.save(self.cache_key, dataclasses.replace(stored, expires_at=now))
                    forgotten = stored
        if forgotten is not None:
            self._emit(EventKind.INVALIDATED, forgotten, started)
        return forgotten is not None

    def _holds_newer_than(self, access: str) -> bool:
        """Whether memory holds a fresh token other than *access*: then the store does too
        (memory only takes tokens read from or saved to the store), and a 401 for *access*
        is late news that needs no lock."""
        fresh = self._fresh_token
        return (fresh is not None and self._clock() < self._fresh_until
                and fresh.access_token != access)

    # -- the async API -------------------------------------------------------------------------
    async def atoken(self) -> Token:
        """:meth:`token` for async code: from memory inline, else in a worker thread.

        Any number of tasks (and threads) asking at expiry cause one request, as with
        :meth:`token`; the tasks of one event loop share one worker thread. Works under
        asyncio, and under trio with anyio installed.
        """
        if self._clock() < self._fresh_until:
            return self._fresh_token  # type: ignore[return-value]  # set before the deadline
        return await self._async_flight.run(lambda: self._obtain(force=False))

    async def aheaders(self) -> dict[str, str]:
        """:meth:`headers` for async code."""
        return {"Authorization": f"Bearer {(await self.atoken()).access_token}"}

    async def ainvalidate(self, token: Token | str) -> bool:
        """:meth:`invalidate` for async code: late news is answered inline; otherwise locks and
        the store are used in a worker thread, one for all the tasks of a loop reporting the
        same token."""
        access = token if isinstance(token, str) else token.access_token
        if self._holds_newer_than(access):
            return False
        return await self._async_invalidations.run(lambda: self.invalidate(access), key=access)

    def force_refresh(self) -> Token:
        """Get a new token now (refresh if possible, else grant), whatever the cached one's state."""
        return self._obtain(force=True)

    # -- the state machine ---------------------------------------------------------------------
    def _remember(self, token: Token, until: float | None = None) -> Token:
        refresh_at = token.refresh_at(self.profile.refresh_margin)
        self._fresh_token = token
        self._fresh_until = refresh_at if until is None else min(until, token.expires_at)
        return token

    def _obtain(self, *, force: bool) -> Token:
        started = time.perf_counter()
        if not force and self._renewing:  # another thread is renewing: wait for it with the others
            self._wait_for_renewal()
            if self._clock() < self._fresh_until:
                return self._fresh_token  # type: ignore[return-value]  # set before the deadline
        try:
            with self._lock:
                if not force:
                    fresh = self._fresh_token
                    if fresh is not None and self._clock() < self._fresh_until:
                        return fresh  # another thread did the work while we waited
                self._renewing = True
                try:
                    return self._obtain_in_flight(force, started)
                finally:
                    with self._flight_done:
                        self._renewing = False
                        self._renewals += 1
                        self._flight_done.notify_all()
        except TokenflowError as exc:
            self._emit(EventKind.FAILED, None, started, error=_error_code(exc))
            raise

    def _wait_for_renewal(self) -> None:
        """Wait (at most :data:`FLIGHT_WAIT`) until the renewal in progress finishes."""
        with self._flight_done:
            if self._renewing:
                seen = self._renewals
                self._flight_done.wait_for(lambda: self._renewals != seen, FLIGHT_WAIT)

    def _obtain_in_flight(self, force: bool, started: float) -> Token:
        """The work of :meth:`_obtain` once this thread holds the key's lock and others wait."""
        if not force:
            cached = self._fresh_in_store(started)
            # another process may be renewing it right now: wait with the other processes and
            # read what it saved, instead of taking its lock one process after another
            if cached is None and self._other_process_renewed():
                cached = self._fresh_in_store(started)
            if cached is not None:
                return cached
        self._get_transport()  # import urllib3/ssl before the lock: waiters must not wait for it
        with self._store_lock():
            return self._obtain_locked(force, started)

    def _other_process_renewed(self) -> bool:
        """Whether another process held the store's lock of this key (and we waited for it).

        Only a shortcut: a store without the capability, or one whose wait fails, says no, and
        the caller takes the lock as usual (which reports a broken store properly).
        """
        store = self._writer_aware
        if store is None:
            return False
        try:
            return store.wait_for_writer(self.cache_key, FLIGHT_WAIT)
        except Exception as exc:
            log.debug("waiting for another process's renewal failed (%s); taking the lock",
                      type(exc).__name__)
            return False

    def _fresh_in_store(self, started: float) -> Token | None:
        """The store's token if it is fresh (remembered, and reported as a cache hit)."""
        token = self.store.load(self.cache_key)
        if classify(token, self._clock(), self.profile.refresh_margin) is not State.FRESH:
            return None
        assert token is not None
        self._emit(EventKind.CACHE_HIT, token, started)
        return self._remember(token)

    def _obtain_locked(self, force: bool, started: float) -> Token:
        token = self.store.load(self.cache_key)  # another process may have refreshed
        state = classify(token, self._clock(), self.profile.refresh_margin)
        if state is State.FRESH and not force:
            assert token is not None
            self._emit(EventKind.CACHE_HIT, token, started)
            return self._remember(token)
        try:
            new, kind = self._renew(token, started)
        except TransportError as exc:
            # a transient failure while the current token is still valid: serve it, try later
            if exc.transient and state is State.EXPIRING and not force:
                assert token is not None
                self._emit(EventKind.STALE_SERVED, token, started, error=_error_code(exc),
                           detail=str(exc))
                return self._remember(token, until=self._clock() + STALE_RETRY_INTERVAL)
            raise
        if kind is not None:
            self._save(new, kind, started)
        return self._remember(new)

    def _renew(self, token: Token | None, started: float) -> tuple[Token, EventKind | None]:
        """A new token: the refresh grant when there is a refresh token, else the profile's grant.

        Returns the token and the event to record when saving it, or ``None`` for a token a
        sibling process had already saved (its rotation made our refresh token stale).
        """
        if token is None or not token.refresh_token:
            return self._grant(reason=None), EventKind.FETCHED
        try:
            failed = _failed_refreshes.pop(token.refresh_token, None)
            if failed is not None:
                raise failed  # asked already in this process (note_failed_refresh)
            return self._refresh(token), EventKind.REFRESHED
        except TokenRequestError as exc:
            if not exc.refused_refresh:
                raise
            self._emit(EventKind.REFRESH_REJECTED, token, started, error=exc.error)
            sibling = self.store.load(self.cache_key)
            if (
                sibling is not None
                and sibling.refresh_token != token.refresh_token
                and classify(sibling, self._clock(), self.profile.refresh_margin) is State.FRESH
            ):
                return sibling, None
            return self._grant(reason=exc), EventKind.REAUTHENTICATED

    def _save(self, token: Token, kind: EventKind, started: float) -> None:
        # saved before it is handed out: a rotated refresh token must never be lost
        self.store.save(self.cache_key, token)
        self._emit(kind, token, started)
        self._emit(EventKind.STORED, token, started)

    # -- requests ------------------------------------------------------------------------------
    def _grant(self, reason: TokenRequestError | None) -> Token:
        """Run the profile's grant plugin (the first token, or after a refused refresh)."""
        profile = self.profile
        grant = self._grant_entry.grant
        context = _SessionGrantContext(self)
        if grant.interactive and not context.interactive:
            why = (f"the refresh token was refused ({reason.error}) and " if reason is not None
                   else "no token is cached and ")
            raise ReauthenticationRequired(
                f"profile {profile.name!r}: {why}its {profile.grant} grant needs a person to sign "
                f"in: run `tokenflow login {profile.name}`",
                error=reason.error if reason else None,
                error_description=reason.error_description if reason else None,
                status=reason.status if reason else None,
            )
        try:
            return grant.obtain(context)
        except CredentialError as exc:
            if reason is not None:
                raise ReauthenticationRequired(
                    f"profile {profile.name!r}: the refresh token was refused ({reason.error}) and "
                    f"the credentials to sign in again are not available: {exc}",
                    error=reason.error, error_description=reason.error_description,
                    status=reason.status,
                ) from None
            raise

    def _grant_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """A grant's parameters with the profile's ``scope`` and extra ``params`` added."""
        full = dict(params)
        if self.profile.scope:
            full.setdefault("scope", self.profile.scope)
        for name, value in self.profile.params.items():
            full.setdefault(name, value)
        return full

    def _refresh(self, token: Token) -> Token:
        assert token.refresh_token is not None
        params = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        # RFC 6749 section 6: a refresh keeps the scope granted before unless the reply says
        return self._request(params, previous_refresh_token=token.refresh_token,
                             requested_scope=token.scope or self.profile.scope)

    def _client_secret(self) -> str | None:
        spec = self.profile.client.client_secret
        return None if spec is None else self._secret("client_secret", spec)

    def _request(self, params: dict[str, str], previous_refresh_token: str | None,
                 requested_scope: str | None = None) -> Token:
        try:
            return self._request_once(params, previous_refresh_token, requested_scope)
        except TokenRequestError as exc:
            # a token endpoint taken from the issuer's metadata that is gone: the server may
            # have moved it; read the metadata again (once per process) and retry if it changed
            discovery = self._discovery()
            if exc.status == 404 and discovery.discovered("token") \
                    and discovery.refresh_after_not_found():
                return self._request_once(params, previous_refresh_token, requested_scope)
            raise

    def _request_once(self, params: dict[str, str], previous_refresh_token: str | None,
                      requested_scope: str | None) -> Token:
        server = self.profile.server
        discovery = self._discovery()
        request = self._dialect.token_request(
            discovery.token_url(), params, self.profile.client.client_id, self._client_secret(),
            discovery.client_auth(server.client_auth),
        )
        sent_at = self._clock()
        response = self._get_transport().send(request, on_retry=self._on_retry)
        try:
            return token_from_reply(response, now=sent_at,
                                    default_lifetime=self.profile.default_lifetime,
                                    previous_refresh_token=previous_refresh_token,
                                    requested_scope=requested_scope)
        except TokenRequestError as exc:
            explain_request_error(exc, method=request.method, grant_type=params["grant_type"],
                                  profile=self.profile.name, client=self.profile.client.name,
                                  server=server.name)
            raise

    def _on_retry(self, why: str, wait: float | None = None) -> None:
        self._emit(EventKind.RETRIED, None, time.perf_counter(), detail=why, retry_in=wait)

    def _discovery(self) -> Discovery:
        """The server's endpoints: written in the config, else from its issuer's metadata."""
        discovery = self._discovery_instance
        if discovery is None:
            discovery = self._discovery_instance = Discovery(
                self.profile.server, self._cache_dir,
                lambda request: self._get_transport().send(request, on_retry=self._on_retry),
                clock=self._clock,
            )
        return discovery

    def _get_transport(self) -> Any:
        if self._transport is None:
            if self._transports is not None:
                self._transport = self._transports.get(self.profile.server)
                return self._transport
            from tokenflow.transport import Transport  # urllib3 is loaded only when a request is needed

            self._transport = Transport(self.profile.server)
        return self._transport

    # -- secrets -------------------------------------------------------------------------------
    def _context(self, base_dir: Path) -> PluginContext:
        return PluginContext(self.profile.name, base_dir, self._cache_dir, self._interactive)

    def login(self) -> Token:
        """Run the profile's grant now, whatever is cached, and store the result (``tokenflow
        login``): for an interactive grant, this is when the person signs in."""
        started = time.perf_counter()
        try:
            with self._lock, self._store_lock():
                token = self._grant(reason=None)
                self._save(token, EventKind.FETCHED, started)
                return self._remember(token)
        except TokenflowError as exc:
            self._emit(EventKind.FAILED, None, started, error=_error_code(exc))
            raise

    def _secret(self, name: str, spec: SecretSpec) -> str:
        """Resolve a secret once per session (a command or prompt runs once, not per refresh)."""
        value = self._secrets.get(name)
        if value is None:
            if spec.kind == "literal":
                secret: Secret = spec.options
                value = secret.reveal()
            else:
                resolver = self._plugins.source(spec.kind).resolver
                value = resolver(spec.options, self._context(spec.base_dir))
                if not isinstance(value, str):
                    raise CredentialError(f"secret source {spec.kind!r} returned no string")
                Secret(value)  # remembered, so scrubbing finds it anywhere
            self._secrets[name] = value
        return value

    # -- management ----------------------------------------------------------------------------
    def status(self) -> StatusReport:
        """The cached token's state, without contacting the server."""
        token = self.store.load(self.cache_key)
        now = self._clock()
        return StatusReport(
            profile=self.profile.name,
            cache_key=self.cache_key,
            store=self.profile.store.name,
            state=classify(token, now, self.profile.refresh_margin),
            expires_at=token.expires_at if token else None,
            expires_in=token.expires_in(now) if token else None,
            fingerprint=token.fingerprint if token else None,
            has_refresh_token=bool(token and token.refresh_token),
            scope=token.scope if token else None,
        )

    def logout(self, revoke: bool = False) -> bool:
        """Forget the cached token; with *revoke*, ask the server to revoke it first.

        Returns whether a token was cached. The local copy is removed even if revocation fails
        (the error is raised afterwards), so logging out always logs out.
        """
        started = time.perf_counter()
        with self._lock, self._store_lock():
            token = self.store.load(self.cache_key)
            failure: TokenflowError | None = None
            if revoke and token is not None:
                try:
                    self._revoke(token, started)
                except TokenflowError as exc:
                    failure = exc
            self.store.delete(self.cache_key)
            self._fresh_until = -math.inf
            if token is not None:
                self._emit(EventKind.DELETED, token, started)
            if failure is not None:
                raise failure
            return token is not None

    def _revoke(self, token: Token, started: float) -> None:
        server = self.profile.server
        discovery = self._discovery()
        revoke_url = discovery.endpoint("revocation")
        if not revoke_url:
            raise ConfigError(f"server {server.name!r} has no revoke_url; cannot revoke")
        request = self._dialect.revoke_request(
            revoke_url, token, self.profile.client.client_id, self._client_secret(),
            discovery.client_auth(server.client_auth),
        )
        response = self._get_transport().send(request)
        if not 200 <= response.status < 300:
            from tokenflow.tokens import parse_error_response, revocation_refused

            error = parse_error_response(response.status, response.body,
                                         response.headers.get("content-type", ""))
            error.args = (revocation_refused(self.profile.name, revoke_url, error),)
            raise error
        self._emit(EventKind.REVOKED, token, started)

    def close(self) -> None:
        """Close the connection pool (the session stays usable: the next request opens a new
        one, reading the proxy variables afresh). A pool shared through ``transports=`` is
        left to its owner, which closes it when it closes all its sessions."""
        transport, self._transport = self._transport, None
        if transport is not None and self._transports is None:
            transport.close()

    # -- events --------------------------------------------------------------------------------
    def _emit(
        self,
        kind: EventKind,
        token: Token | None,
        started: float,
        *,
        error: str | None = None,
        detail: str = "",
        retry_in: float | None = None,
    ) -> None:
        observers = self._plugins.observes(kind)
        if not observers and self._on_event is None:
            return
        event = TokenEvent(
            kind=kind,
            profile=self.profile.name,
            cache_key=self.cache_key,
            fingerprint=token.fingerprint if token is not None else None,
            duration=time.perf_counter() - started,
            error=error,
            detail=detail,
            retry_in=retry_in,
        )
        if observers:
            self._plugins.emit(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # a broken callback must not break token handling
                log.warning("on_event callback of profile %r raised %s: %s (ignored)",
                            self.profile.name, type(exc).__name__, exc)

    def __repr__(self) -> str:
        return f"TokenSession(profile={self.profile.name!r}, cache_key={self.cache_key!r})"


@dataclass(frozen=True, slots=True)
class LoginPrompt:
    """What a person must do to sign in, handed to a session's ``login`` callback.

    :param profile: the profile signing in.
    :param message: one line for the person ("Open this URL to sign in", ...).
    :param url: the URL to open (authorization or verification URI), if any.
    :param user_code: the code to enter at *url* (device grant), if any.
    """

    profile: str
    message: str
    url: str | None = field(default=None, repr=False)  # an authorization URL carries the state
    user_code: str | None = None


class _SessionGrantContext:
    """The :class:`~tokenflow.plugins.contracts.GrantContext` a session hands its grant."""

    def __init__(self, session: TokenSession) -> None:
        self._session = session
        profile = session.profile
        self.profile = profile.name
        self.options = profile.grant_options
        self.interactive = session._interactive or session._login is not None
        self.client_id = profile.client.client_id
        self.issuer: str | None = profile.server.issuer
        self.scope: str | None = profile.scope

    def secret(self, key: str) -> str | None:
        spec = self.options.get(key)
        if spec is None:
            return None
        if not isinstance(spec, SecretSpec):
            raise ConfigError(f"profile {self.profile!r}: {key} is not a secret option")
        return self._session._secret(key, spec)

    def endpoint(self, name: str) -> str | None:
        return self._session._discovery().endpoint(name)

    def request_token(self, params: Mapping[str, str]) -> Token:
        full = self._session._grant_params(params)
        return self._session._request(full, previous_refresh_token=None,
                                      requested_scope=full.get("scope"))

    def send(self, request: HttpRequest) -> HttpResponse:
        session = self._session
        response: HttpResponse = session._get_transport().send(request, on_retry=session._on_retry)
        if response.status == 404:
            # an endpoint taken from the issuer's metadata that is gone (a device authorization
            # endpoint, say): read the metadata again, once, and go where it points now
            moved = session._discovery().moved_after_not_found(request.url)
            if moved is not None:
                response = session._get_transport().send(
                    dataclasses.replace(request, url=moved), on_retry=session._on_retry)
        return response

    def clock(self) -> float:
        return self._session._clock()

    def sleep(self, seconds: float) -> None:
        self._session._sleep(seconds)

    def notify(self, message: str, *, url: str | None = None, user_code: str | None = None) -> None:
        session = self._session
        # a grant relays what the server sent (a device grant's user code and verification
        # URI): nothing of it may drive the terminal
        message = printable(message)
        url = printable(url) if url is not None else None
        user_code = printable(user_code) if user_code is not None else None
        # the event names the page without its query string: an authorization URL carries the
        # state, which must stay out of logs (the person sees the whole URL below)
        page = url.split("?", 1)[0] if url else None
        session._emit(EventKind.LOGIN_REQUIRED, None, time.perf_counter(),
                      detail=" ".join(part for part in (page, user_code) if part))
        prompt = LoginPrompt(self.profile, message, url, user_code)
        if session._login is not None:
            session._login(prompt)
            return
        # the URL alone on its line, so it can be copied (or clicked) whole
        lines = [f"tokenflow: {message}"]
        if url:
            lines.append(url)
        if user_code and user_code not in message:
            lines.append(f"tokenflow: code: {user_code}")
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()


def _error_code(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    return error if isinstance(error, str) else type(exc).__name__
