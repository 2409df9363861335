"""Send token requests over urllib3: TLS, timeouts, proxies, retries, size cap, no leaks.

* One ``PoolManager`` (or ``ProxyManager``) per server, reused: refreshes ride keep-alive.
* TLS is verified by default; ``verify: PATH`` trusts a CA bundle; ``verify: false`` is allowed
  but warned about once.
* Proxies come from the standard environment variables (``https_proxy``, ``no_proxy``...), which
  urllib3 itself ignores, and apply to every request, refreshes included.
* Retries use urllib3's ``Retry``: exponential backoff with jitter on connect errors, read
  timeouts, 429 and 5xx, honouring ``Retry-After`` (capped, so a server cannot park the CLI for an
  hour). 4xx answers such as ``invalid_grant`` are never retried.
* Redirects are not followed: a redirected Team Server GET would carry the password in its
  query string to wherever the redirect points.
* A body over 1 MiB is refused without reading the rest, and so is one that *decodes* to more:
  tokenflow asks for ``Accept-Encoding: identity`` and reads the raw bytes itself; a server that
  compresses anyway (``gzip``/``deflate``, in layers) is decoded here in bounded steps, never by
  urllib3's unbounded decoder (a 7 KB ``gzip, gzip`` reply once inflated to 4 GiB in there).
* ``timeout`` bounds each request attempt as a whole (connect, TLS, headers, body), not each
  socket read: a watchdog shuts down the socket of an attempt that outlives it, so a server
  dripping a byte a second cannot hold a request. Each retry gets its own deadline.
* Loopback targets (``localhost``, 127.0.0.0/8, ``::1``) never go through a proxy, whatever
  ``NO_PROXY`` says: plain http is allowed to them only because it stays on this machine.
* URLs and headers are checked with :mod:`tokenflow.wire` before anything is sent: the host
  checked is the host urllib3 connects to, and no control character reaches the wire.
* Errors never contain the request URL's query string: urllib3's exception texts do, so they are
  replaced (not chained) by :class:`~tokenflow.errors.TransportError` with a scrubbed message.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from tokenflow.errors import TokenRequestError, TransportError
from tokenflow.redact import excerpt, get_logger, install_log_filters, scrub
from tokenflow.wire import HttpRequest, HttpResponse, ServerUrl, header_problem, parse_server_url

__all__ = ["MAX_BODY", "HttpResponse", "ServerSettings", "Transport"]

log = get_logger("tokenflow.transport")

RetryObserver = Callable[[str, float], None]
"""``observer(why, wait)``: a try failed for *why* ("HTTP 503", "ReadTimeoutError"); the next one
comes in *wait* seconds."""

MAX_BODY = 1024 * 1024  # bytes, before and after decoding
MAX_CODINGS = 3  # Content-Encoding layers decoded at most ("gzip, gzip" is already odd)
MAX_RETRY_AFTER = 30.0  # seconds; beyond this we fail and let the caller decide
MAX_RETRY_POLICIES = 64  # a shared transport serves many sessions, each with its own observer
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "tokenflow"


# -- the per-attempt deadline ----------------------------------------------------------------------
class _Attempt:
    """One try of one request: when it must be over, on which connection, and whether it was cut."""

    __slots__ = ("conn", "deadline", "done", "expired", "sock")

    def __init__(self, conn: Any, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.done = False
        self.expired = False
        # the socket itself: a reply that closes the connection (close-delimited bodies) takes
        # it away from the connection object while the body is still being read from it
        self.sock: Any = getattr(conn, "sock", None)

    def __lt__(self, other: _Attempt) -> bool:  # for the heap: ties are broken by a counter
        return False

    def cut(self) -> None:
        """Shut the attempt's socket down: a read blocked on it returns at once (EOF/error)."""
        self.expired = True
        _shutdown(self.sock)
        _shutdown(getattr(self.conn, "sock", None))


def _shutdown(sock: Any) -> None:
    # for a TLS socket, the plain socket's shutdown: SSLSocket.shutdown would first drop its
    # SSL object under the feet of the thread reading it
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that cuts every attempt still running at its deadline.

    Arming costs a heap push under a lock (a timer thread per request would cost ~100 us).
    A forked child gets a new thread and new locks on first use: threads do not survive fork.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._counter = itertools.count()

    def arm(self, attempt: _Attempt) -> None:
        if self._pid != os.getpid():
            self._restart()
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._counter), attempt))
            if self._heap[0][2] is attempt:
                self._cond.notify()

    def disarm(self, attempt: _Attempt) -> None:
        """Mark *attempt* finished; under the lock, so the watchdog cannot be cutting it right
        now (its connection may serve another request next)."""
        if self._pid != os.getpid():
            attempt.done = True
            return
        with self._cond:
            attempt.done = True

    def _restart(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._heap = []
        thread = threading.Thread(target=self._run, args=(self._cond, self._heap),
                                  name="tokenflow-deadlines", daemon=True)
        thread.start()

    @staticmethod
    def _run(cond: threading.Condition, heap: list[tuple[float, int, _Attempt]]) -> None:
        with cond:
            while True:
                now = time.monotonic()
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    attempt = heapq.heappop(heap)[2]
                    if not attempt.done:
                        attempt.cut()
                cond.wait(heap[0][0] - now if heap else None)


_watchdog = _Watchdog()
_local = threading.local()  # .budget: seconds per attempt of the current send(); .attempt


def _begin_attempt(conn: Any) -> None:
    """Called by the pool for every try (retries included): a new deadline for this thread."""
    _end_attempt()
    budget: float | None = getattr(_local, "budget", None)
    if budget is None:
        return
    attempt = _local.attempt = _Attempt(conn, time.monotonic() + budget)
    _watchdog.arm(attempt)


def _end_attempt() -> bool:
    """Disarm this thread's attempt; whether its deadline had cut it."""
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is None:
        return False
    _watchdog.disarm(attempt)
    _local.attempt = None
    return attempt.expired


def _attempt_expired() -> bool:
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    return attempt is not None and attempt.expired


class _QuietHTTPConnection(HTTPConnection):
    """``http.client`` debugging prints request lines (with Team Server's password) to stdout.

    ``HTTPConnection.debuglevel`` is a class attribute users flip globally while debugging; this
    subclass pins it to 0 for tokenflow's own connections. It also honours the attempt's
    deadline for a socket created (or a reply awaited) after the deadline already passed.
    """

    @property
    def debuglevel(self) -> int:
        return 0

    @debuglevel.setter
    def debuglevel(self, value: int) -> None:
        pass

    def _new_conn(self) -> socket.socket:
        return _checked_socket(super()._new_conn())

    def getresponse(self) -> Any:
        _check_deadline(self)
        return super().getresponse()


class _QuietHTTPSConnection(HTTPSConnection):
    __doc__ = _QuietHTTPConnection.__doc__
    debuglevel = _QuietHTTPConnection.debuglevel

    def _new_conn(self) -> socket.socket:
        return _checked_socket(super()._new_conn())

    def getresponse(self) -> Any:
        _check_deadline(self)
        return super().getresponse()


def _checked_socket(sock: socket.socket) -> socket.socket:
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is not None:
        attempt.sock = sock  # the TCP socket: cutting it also stops a TLS handshake
        if attempt.expired:  # the deadline passed while connecting
            _shutdown(sock)
    return sock


def _check_deadline(conn: Any) -> None:
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is not None:
        attempt.sock = conn.sock
        if attempt.expired:  # the deadline passed between connecting and reading
            _shutdown(conn.sock)


class _QuietHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _QuietHTTPConnection

    def _make_request(self, conn: Any, *args: Any, **kw: Any) -> Any:
        _begin_attempt(conn)  # every try, retries included, gets its own deadline
        return super()._make_request(conn, *args, **kw)


class _QuietHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _QuietHTTPSConnection

    def _make_request(self, conn: Any, *args: Any, **kw: Any) -> Any:
        _begin_attempt(conn)
        return super()._make_request(conn, *args, **kw)


_POOL_CLASSES = {"http": _QuietHTTPConnectionPool, "https": _QuietHTTPSConnectionPool}


class _OAuthRetry(Retry):
    """urllib3's Retry with a retry observer and a cap on ``Retry-After``."""

    observer: RetryObserver | None = None

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.observer = self.observer
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        try:
            after = super().get_retry_after(response)
        except (InvalidHeader, ValueError, OverflowError):
            return None  # unreadable: back off as if the server had said nothing
        return None if after is None else min(after, MAX_RETRY_AFTER)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None and _pool is not None and _long_retry_after(response.headers):
            # never wait that long: urlopen hands back this answer and send() reports it
            raise MaxRetryError(_pool, url or "", ResponseError("Retry-After over the cap"))
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.observer is not None:
            # what urllib3's Retry.sleep() will wait: the server's Retry-After, else the backoff
            wait = retry.get_retry_after(response) if response is not None else None
            if wait is None:
                wait = retry.get_backoff_time()
            if response is not None:
                self.observer(f"HTTP {response.status}", wait)
            else:
                self.observer(type(error).__name__ if error is not None else "retry", wait)
        return retry


def _proxy_for(target: ServerUrl) -> str | None:
    """The proxy the standard environment variables choose for *target*, or ``None``.

    Never one for a loopback target: plain http is allowed there only because it stays on this
    machine, and a proxy would carry the credentials off it in clear (whatever ``NO_PROXY`` says).
    """
    if target.is_loopback:
        return None
    import urllib.request  # 2-3 ms of imports that a loopback target never needs

    host = target.host.strip("[]")
    bypass: Callable[[str], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if bypass(host):
        return None
    return urllib.request.getproxies_environment().get(target.scheme)


class _ProxyChoice:
    """:func:`_proxy_for` per scheme and host, decided once per transport (per session).

    urllib reads and lower-cases the whole environment on every call (about 0.1 ms, a fifth of
    a keep-alive token request), and even reading the ten proxy variables costs a tenth of
    that. The variables are read when a session first talks to a host; every request of that
    session, refreshes included, then goes the same way. A process that changes its proxy
    variables later gets them in its next session (``Config.close()`` drops the old ones).
    """

    def __init__(self) -> None:
        self._cache: dict[ServerUrl, str | None] = {}

    def __call__(self, target: ServerUrl) -> str | None:
        try:
            return self._cache[target]
        except KeyError:
            proxy = self._cache[target] = _proxy_for(target)
            return proxy


def _proxy_auth(proxy: str) -> dict[str, str] | None:
    """``Proxy-Authorization`` for ``http://user:pass@proxy:port`` (urllib3 ignores the userinfo)."""
    userinfo = urlsplit(proxy).netloc.rpartition("@")[0]
    if not userinfo:
        return None
    user, _, password = userinfo.partition(":")
    return urllib3.make_headers(proxy_basic_auth=f"{unquote(user)}:{unquote(password)}")


class ServerSettings(Protocol):
    """What the transport reads of a server: :class:`tokenflow.config.model.ServerSpec` is one.

    A protocol rather than the model class, so that sending a request does not load the config
    model (the CLI's renewal path builds these few settings from the fast path's index).
    """

    @property
    def name(self) -> str: ...
    @property
    def token_url(self) -> str | None: ...
    @property
    def issuer(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def verify(self) -> bool | str: ...
    @property
    def allow_insecure_http(self) -> bool: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class Transport:
    """Sends :class:`~tokenflow.wire.HttpRequest` objects for one server."""

    def __init__(self, server: ServerSettings) -> None:
        self.server = server
        self._proxy_for = _ProxyChoice()
        self._retries: dict[RetryObserver | None, _OAuthRetry] = {}
        install_log_filters()
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._timeout = urllib3.Timeout(connect=server.timeout, read=server.timeout)
        self._targets: dict[str, ServerUrl] = {}
        if server.verify is False:
            import warnings

            # urllib3 would warn on every request; say it once, for this server's host only
            # (the embedding application's own unverified requests keep their warnings)
            parsed = parse_server_url(server.token_url or server.issuer or "")
            host = re.escape("" if isinstance(parsed, str) else parsed.host)
            warnings.filterwarnings("ignore", f".*host '{host}'", urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS verification is off for server %r: anyone on the network path "
                        "can read the credentials", server.name)

    def _manager(self, target: ServerUrl) -> urllib3.PoolManager:
        proxy = self._proxy_for(target)
        with self._lock:
            manager = self._managers.get(proxy)
            if manager is None:
                tls: dict[str, Any] = {}
                if self.server.verify is False:
                    tls["cert_reqs"] = "CERT_NONE"
                else:
                    tls["cert_reqs"] = "CERT_REQUIRED"
                    if isinstance(self.server.verify, str):
                        tls["ca_certs"] = self.server.verify
                # identity: the body is read raw and bounded (see _read_body)
                headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
                if proxy:
                    manager = urllib3.ProxyManager(proxy, num_pools=4, headers=headers,
                                                   proxy_headers=_proxy_auth(proxy), **tls)
                else:
                    manager = urllib3.PoolManager(num_pools=4, headers=headers, **tls)
                manager.pool_classes_by_scheme = _POOL_CLASSES
                self._managers[proxy] = manager
            return manager

    def _retry(self, on_retry: RetryObserver | None) -> _OAuthRetry:
        """The retry policy for requests reporting to *on_retry*: built once, since a Retry is
        immutable (``increment`` returns a new one) and building it costs ~5 µs per request."""
        retry = self._retries.get(on_retry)
        if retry is None:
            if len(self._retries) >= MAX_RETRY_POLICIES:
                self._retries.clear()  # bounded: a shared transport outlives many sessions
            retry = self._retries[on_retry] = self._new_retry(on_retry)
        return retry

    def _new_retry(self, on_retry: RetryObserver | None) -> _OAuthRetry:
        retries = self.server.retries
        retry = _OAuthRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            redirect=False,
            allowed_methods=None,  # token requests are safe to repeat: the server decides
            status_forcelist=RETRY_STATUSES,
            backoff_factor=0.25,
            backoff_max=8.0,
            backoff_jitter=0.25,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.observer = on_retry
        return retry

    def _target(self, request: HttpRequest) -> ServerUrl:
        """Where *request* goes, as urllib3 will read it; refuse what must not be sent.

        The part before the query is parsed once per URL and remembered (a token URL is the
        same for every request); the query only needs the character check.
        """
        base, _, query = request.url.partition("?")
        target = self._targets.get(base)
        if target is None:
            parsed = parse_server_url(base)
            if isinstance(parsed, str):
                raise TransportError(f"refusing to send a request for server {self.server.name!r}: "
                                     f"{parsed}", transient=False)
            if (parsed.scheme == "http" and not parsed.is_loopback
                    and not self.server.allow_insecure_http):
                raise TransportError(
                    f"refusing plain http to {parsed.netloc}, which is not loopback: use https:// "
                    f"or set allow_insecure_http: true for server {self.server.name!r}",
                    transient=False)
            target = parsed
            if len(self._targets) < 64:
                self._targets[base] = target
        if query and not _QUERY_CHARS.fullmatch(query):
            raise TransportError(f"refusing to send a request to {target.netloc}: its query string "
                                 "holds whitespace, control or non-ASCII characters or a backslash",
                                 transient=False)
        for headers in (self.server.headers, request.headers):
            for name, value in headers.items():
                problem = header_problem(name, value)
                if problem:
                    raise TransportError(f"refusing to send a request to {target.netloc}: {problem}",
                                         transient=False)
        return target

    def send(self, request: HttpRequest, on_retry: RetryObserver | None = None) -> HttpResponse:
        """Send *request*; raise TransportError for anything but a complete HTTP answer."""
        target = self._target(request)
        host = target.netloc
        failure: TransportError | None = None
        cut = False
        _local.budget = self.server.timeout
        try:
            try:
                response = self._manager(target).request(
                    request.method,
                    request.url,
                    body=request.body,
                    headers={**self.server.headers, **request.headers},
                    timeout=self._timeout,
                    retries=self._retry(on_retry),
                    redirect=False,
                    preload_content=False,
                    decode_content=False,  # never urllib3's unbounded decoder, even when draining
                )
            except MaxRetryError as exc:
                failure = _describe_failure(exc.reason, host, self.server.retries,
                                            self._cut_after())
            except HTTPError as exc:
                failure = _describe_failure(exc, host, 0, self._cut_after())
            if failure is not None:  # raised outside the except block: no chained urllib3 text
                raise failure
            try:
                body = _read_body(response)
            except TransportError:
                if not _attempt_expired():
                    raise
                body = b""  # reported below, as the deadline
            finally:
                cut = _end_attempt()  # before the connection can go to another request
                response.release_conn()
        finally:
            _local.budget = None
            cut = _end_attempt() or cut
        if cut:  # checked even after a "complete" read: a cut close-delimited body just ends
            raise _describe_failure(None, host, 0, self.server.timeout)
        headers = response.headers  # case-insensitive already
        status = response.status
        if 300 <= status < 400:
            location = parse_server_url(headers.get("location", ""))
            target_name = "elsewhere" if isinstance(location, str) else location.netloc
            raise TransportError(
                f"{host} redirected the token request (HTTP {status}) to {target_name}; "
                "tokenflow does not follow redirects with credentials: update the server's URL",
                transient=False, status=status,
            )
        if status in RETRY_STATUSES:
            text = excerpt(body, 120)
            tries = f" after {self.server.retries + 1} tries" if self.server.retries else ""
            after = _long_retry_after(response.headers)
            if after is not None:
                tries = (f" asking to retry in {after:.0f} s (tokenflow waits at most "
                         f"{MAX_RETRY_AFTER:.0f} s)")
            raise TransportError(
                f"{host} answered HTTP {status}{tries}: {text!r}",
                transient=True, status=status,
            )
        return HttpResponse(status, headers, body)

    def _cut_after(self) -> float | None:
        """The timeout, if the deadline cut the attempt that just failed (else ``None``)."""
        return self.server.timeout if _attempt_expired() else None

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()


def _long_retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` of an answer when it is over :data:`MAX_RETRY_AFTER`, else ``None``."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        after = Retry().parse_retry_after(value)
    except Exception:  # urllib3 raises InvalidHeader; an unreadable value is not waited for anyway
        return None
    return after if after > MAX_RETRY_AFTER else None


_QUERY_CHARS = re.compile(r"[\x21-\x5b\x5d-\x7e]*")  # printable ASCII, no space or backslash
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_big(status: int, what: str = "a body") -> TokenRequestError:
    return TokenRequestError(
        f"token endpoint sent {what} over {MAX_BODY} bytes; refusing it", status=status)


def _codings(response: Any) -> list[str]:
    """The ``Content-Encoding`` layers to undo, outermost last; refuse what we cannot bound."""
    value = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    unknown = [c for c in codings if c not in _CODINGS]
    if unknown:
        raise TokenRequestError(
            f"token endpoint answered with Content-Encoding {ascii(unknown[0])[:40]}, which "
            "tokenflow cannot decode (it asks for identity, and accepts gzip or deflate)",
            status=response.status)
    if len(codings) > MAX_CODINGS:
        raise TokenRequestError(
            f"token endpoint compressed its answer {len(codings)} times; refusing more than "
            f"{MAX_CODINGS} layers", status=response.status)
    return codings


def _inflate(data: bytes, coding: str, status: int) -> bytes:
    """Undo one layer of *coding*, producing at most :data:`MAX_BODY` bytes.

    ``zlib``'s ``max_length`` stops the inflation at the cap: a bomb costs at most one MiB of
    memory and the time to produce it. gzip may hold several members; deflate is zlib-wrapped
    or, from some servers, raw.
    """
    out = bytearray()
    wbits = _CODINGS[coding]
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, MAX_BODY + 1 - len(out))
        except zlib.error:
            if coding == "deflate" and wbits > 0 and not out:
                wbits = -zlib.MAX_WBITS  # raw deflate, as urllib3 also accepts
                continue
            raise TokenRequestError(
                f"token endpoint sent a body marked Content-Encoding {coding} that does not "
                "decompress", status=status) from None
        if len(out) > MAX_BODY or inflater.unconsumed_tail:
            raise _too_big(status, "a compressed body that inflates")
        if not inflater.eof:
            raise TokenRequestError(
                f"token endpoint sent a truncated {coding} body", status=status)
        data = inflater.unused_data
        if coding == "deflate" or not data.strip(b"\0"):
            return bytes(out)


def _read_body(response: Any) -> bytes:
    """The decoded body, refusing one over :data:`MAX_BODY` (raw or decoded) without reading
    the rest of it. Chunked and close-delimited bodies are read up to one byte past the cap."""
    status = response.status
    codings = _codings(response)
    length = response.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > MAX_BODY:
        raise TokenRequestError(
            f"token endpoint sent a {declared}-byte body; refusing anything over {MAX_BODY} bytes",
            status=status,
        )
    failure: TransportError | None = None
    try:
        # a declared length within the cap is read whole (urllib3's bounded read is ~25 us
        # slower); never decoded by urllib3
        body: bytes = (response.read(decode_content=False) if declared is not None
                       else response.read(MAX_BODY + 1, decode_content=False))
    except ReadTimeoutError:
        failure = TransportError("timed out reading the token endpoint's answer")
    except HTTPError as exc:
        failure = TransportError(f"connection broke while reading the answer ({type(exc).__name__})")
    if failure is not None:
        raise failure
    if len(body) > MAX_BODY:
        raise _too_big(status)
    for coding in reversed(codings):
        body = _inflate(body, coding, status)
    return body


def _describe_failure(
    reason: BaseException | None, host: str, retries: int, cut_after: float | None = None
) -> TransportError:
    """A one-line, secret-free description of why a request never got an answer.

    *cut_after* is the timeout when the attempt's deadline cut it: whatever error the cut
    socket produced, the cause is the deadline.
    """
    tries = f" (after {retries + 1} tries)" if retries else ""
    if cut_after is not None:
        return TransportError(
            f"timed out: {host} did not finish answering within {cut_after:g} s "
            f"(the server's timeout){tries}", transient=True)
    if isinstance(reason, ProtocolError):
        inner = reason.args[1] if len(reason.args) > 1 else None
        if isinstance(inner, http.client.LineTooLong) or (
                isinstance(inner, http.client.HTTPException) and "header" in str(inner)):
            return TransportError(f"{host} sent an answer whose status line or headers are too "
                                  f"long or too many{tries}", transient=False)
    if isinstance(reason, SSLError):
        text = str(reason.args[0] if reason.args else reason)
        hint = ""
        if "mismatch" in text.lower():
            hint = f"; the certificate is not valid for {host.rsplit(':', 1)[0]}: check token_url"
        elif "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            hint = "; if the server uses a private CA, set verify: PATH to its CA bundle"
        detail = scrub(text.split("(_ssl.c")[0].strip("() ")) or "TLS handshake failed"
        return TransportError(f"TLS error talking to {host}: {detail[:200]}{hint}", transient=False)
    if isinstance(reason, NewConnectionError):  # before ConnectTimeoutError: it subclasses it
        cause = str(reason).rsplit(":", 1)[-1].strip() or "connection failed"
        return TransportError(f"cannot connect to {host}: {scrub(cause)[:120]}{tries}")
    if isinstance(reason, ConnectTimeoutError):
        return TransportError(f"timed out connecting to {host}{tries}")
    if isinstance(reason, ReadTimeoutError):
        return TransportError(f"timed out waiting for {host} to answer{tries}")
    if isinstance(reason, ProxyError):
        return TransportError(f"the proxy for {host} failed{tries}")
    name = type(reason).__name__ if reason is not None else "unknown error"
    return TransportError(f"request to {host} failed: {name}{tries}")
