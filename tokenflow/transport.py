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
* A body over 1 MiB is refused without reading the rest.
* Errors never contain the request URL's query string: urllib3's exception texts do, so they are
  replaced (not chained) by :class:`~tokenflow.errors.TransportError` with a scrubbed message.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from tokenflow.config.model import ServerSpec
from tokenflow.errors import TokenRequestError, TransportError
from tokenflow.plugins.contracts import HttpRequest, HttpResponse
from tokenflow.redact import get_logger, install_log_filters, scrub

__all__ = ["MAX_BODY", "HttpResponse", "Transport"]

log = get_logger("tokenflow.transport")

MAX_BODY = 1024 * 1024
MAX_RETRY_AFTER = 30.0  # seconds; beyond this we fail and let the caller decide
MAX_RETRY_POLICIES = 64  # a shared transport serves many sessions, each with its own observer
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "tokenflow"


class _QuietHTTPConnection(HTTPConnection):
    """``http.client`` debugging prints request lines (with Team Server's password) to stdout.

    ``HTTPConnection.debuglevel`` is a class attribute users flip globally while debugging; this
    subclass pins it to 0 for tokenflow's own connections.
    """

    @property
    def debuglevel(self) -> int:
        return 0

    @debuglevel.setter
    def debuglevel(self, value: int) -> None:
        pass


class _QuietHTTPSConnection(HTTPSConnection):
    __doc__ = _QuietHTTPConnection.__doc__
    debuglevel = _QuietHTTPConnection.debuglevel


class _QuietHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _QuietHTTPConnection


class _QuietHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _QuietHTTPSConnection


_POOL_CLASSES = {"http": _QuietHTTPConnectionPool, "https": _QuietHTTPSConnectionPool}


class _OAuthRetry(Retry):
    """urllib3's Retry with a retry observer and a cap on ``Retry-After``."""

    observer: Callable[[str], None] | None = None

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.observer = self.observer
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
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
            if response is not None:
                self.observer(f"HTTP {response.status}")
            else:
                self.observer(type(error).__name__ if error is not None else "retry")
        return retry


def _proxy_for(url: str) -> str | None:
    """The proxy the standard environment variables choose for *url*, or ``None``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    bypass: Callable[[str], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if bypass(host):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


class _ProxyChoice:
    """:func:`_proxy_for` per scheme and host, decided once per transport (per session).

    urllib reads and lower-cases the whole environment on every call (about 0.1 ms, a fifth of
    a keep-alive token request), and even reading the ten proxy variables costs a tenth of
    that. The variables are read when a session first talks to a host; every request of that
    session, refreshes included, then goes the same way. A process that changes its proxy
    variables later gets them in its next session (``Config.close()`` drops the old ones).
    """

    def __init__(self) -> None:
        self._cache: dict[str, str | None] = {}

    def __call__(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        try:
            return self._cache[key]
        except KeyError:
            proxy = self._cache[key] = _proxy_for(url)
            return proxy


def _proxy_auth(proxy: str) -> dict[str, str] | None:
    """``Proxy-Authorization`` for ``http://user:pass@proxy:port`` (urllib3 ignores the userinfo)."""
    userinfo = urlsplit(proxy).netloc.rpartition("@")[0]
    if not userinfo:
        return None
    user, _, password = userinfo.partition(":")
    return urllib3.make_headers(proxy_basic_auth=f"{unquote(user)}:{unquote(password)}")


class Transport:
    """Sends :class:`~tokenflow.interfaces.HttpRequest` objects for one server."""

    def __init__(self, server: ServerSpec) -> None:
        self.server = server
        self._proxy_for = _ProxyChoice()
        self._retries: dict[Callable[[str], None] | None, _OAuthRetry] = {}
        install_log_filters()
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._timeout = urllib3.Timeout(connect=server.timeout, read=server.timeout)
        if server.verify is False:
            import re
            import warnings

            # urllib3 would warn on every request; say it once, for this server's host only
            # (the embedding application's own unverified requests keep their warnings)
            host = re.escape(urlsplit(server.token_url or server.issuer or "").hostname or "")
            warnings.filterwarnings("ignore", f".*host '{host}'", urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS verification is off for server %r: anyone on the network path "
                        "can read the credentials", server.name)

    def _manager(self, url: str) -> urllib3.PoolManager:
        proxy = self._proxy_for(url)
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
                headers = {"User-Agent": USER_AGENT}
                if proxy:
                    manager = urllib3.ProxyManager(proxy, num_pools=4, headers=headers,
                                                   proxy_headers=_proxy_auth(proxy), **tls)
                else:
                    manager = urllib3.PoolManager(num_pools=4, headers=headers, **tls)
                manager.pool_classes_by_scheme = _POOL_CLASSES
                self._managers[proxy] = manager
            return manager

    def _retry(self, on_retry: Callable[[str], None] | None) -> _OAuthRetry:
        """The retry policy for requests reporting to *on_retry*: built once, since a Retry is
        immutable (``increment`` returns a new one) and building it costs ~5 µs per request."""
        retry = self._retries.get(on_retry)
        if retry is None:
            if len(self._retries) >= MAX_RETRY_POLICIES:
                self._retries.clear()  # bounded: a shared transport outlives many sessions
            retry = self._retries[on_retry] = self._new_retry(on_retry)
        return retry

    def _new_retry(self, on_retry: Callable[[str], None] | None) -> _OAuthRetry:
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

    def send(self, request: HttpRequest, on_retry: Callable[[str], None] | None = None) -> HttpResponse:
        """Send *request*; raise TransportError for anything but a complete HTTP answer."""
        failure: TransportError | None = None
        try:
            response = self._manager(request.url).request(
                request.method,
                request.url,
                body=request.body,
                headers={**self.server.headers, **request.headers},
                timeout=self._timeout,
                retries=self._retry(on_retry),
                redirect=False,
                preload_content=False,
            )
        except MaxRetryError as exc:
            failure = _describe_failure(exc.reason, _host(request.url), self.server.retries)
        except HTTPError as exc:
            failure = _describe_failure(exc, _host(request.url), 0)
        if failure is not None:  # raised outside the except block: no chained urllib3 text
            raise failure
        try:
            body = _read_capped(response)
        finally:
            response.release_conn()
        headers = response.headers  # case-insensitive already
        status = response.status
        if 300 <= status < 400:
            target = urlsplit(headers.get("location", "")).netloc or "elsewhere"
            raise TransportError(
                f"{_host(request.url)} redirected the token request (HTTP {status}) to {target}; "
                "tokenflow does not follow redirects with credentials: update the server's URL",
                transient=False, status=status,
            )
        if status in RETRY_STATUSES:
            excerpt = scrub(" ".join(body[:300].decode("utf-8", "replace").split()))[:120]
            tries = f" after {self.server.retries + 1} tries" if self.server.retries else ""
            after = _long_retry_after(response.headers)
            if after is not None:
                tries = (f" asking to retry in {after:.0f} s (tokenflow waits at most "
                         f"{MAX_RETRY_AFTER:.0f} s)")
            raise TransportError(
                f"{_host(request.url)} answered HTTP {status}{tries}: {excerpt!r}",
                transient=True, status=status,
            )
        return HttpResponse(status, headers, body)

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


def _host(url: str) -> str:
    """``host:port`` of *url*: what error messages name (never the path or query)."""
    return urlsplit(url).netloc


def _read_capped(response: Any) -> bytes:
    """The body, refusing one over :data:`MAX_BODY` without reading the rest of it."""
    length = response.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > MAX_BODY:
        raise TokenRequestError(
            f"token endpoint sent a {declared}-byte body; refusing anything over {MAX_BODY} bytes",
            status=response.status,
        )
    failure: TransportError | None = None
    try:
        # a declared length within the cap is read whole (urllib3's bounded read is ~25 us
        # slower); a chunked body is read up to one byte past the cap
        body: bytes = response.read() if declared is not None else response.read(MAX_BODY + 1)
    except ReadTimeoutError:
        failure = TransportError("timed out reading the token endpoint's answer")
    except HTTPError as exc:
        failure = TransportError(f"connection broke while reading the answer ({type(exc).__name__})")
    if failure is not None:
        raise failure
    if len(body) > MAX_BODY:
        raise TokenRequestError(
            f"token endpoint sent a body over {MAX_BODY} bytes; refusing it", status=response.status
        )
    return body


def _describe_failure(reason: BaseException | None, host: str, retries: int) -> TransportError:
    """A one-line, secret-free description of why a request never got an answer."""
    tries = f" (after {retries + 1} tries)" if retries else ""
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
