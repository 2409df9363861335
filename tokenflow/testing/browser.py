"""A stand-in for the user's browser in tests of interactive sign-in.

A client's authorization code grant opens the authorization URL with :mod:`webbrowser` and
waits for the redirect on its loopback listener.  In a test, :class:`HeadlessBrowser` takes
the browser's place: its :meth:`~HeadlessBrowser.open` has ``webbrowser.open``'s signature
(``monkeypatch.setattr(webbrowser, "open", browser.open)``) and visits the URL from a
background thread, following redirects, so the client can go on to serve its callback; the
embedded server approves (or a test hook decides) and redirects to the client's listener.

It only ever talks to loopback hosts (a redirect elsewhere is refused and recorded, never
followed), never through a proxy, reads at most 64 KiB of a page, and every request has a
timeout.
"""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, Any, Final
from urllib.parse import urlsplit

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_PAGE: Final = 64 * 1024


@dataclass(frozen=True)
class Visit:
    """What opening one URL came to: the last page's status, URL and (capped) body.

    ``error`` says why a visit ended without a page (a refused redirect, a connection error).
    """

    url: str
    status: int | None
    final_url: str | None
    body: bytes
    error: str | None = None


class _LoopbackRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not _is_loopback(newurl):
            raise urllib.error.URLError(f"refused to follow a redirect off loopback: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _is_loopback(url: str) -> bool:
    split = urlsplit(url)
    return split.scheme in ("http", "https") and split.hostname in _LOOPBACK and "@" not in split.netloc


class HeadlessBrowser:
    """Opens URLs like a browser would, in the background, on loopback only."""

    def __init__(self, *, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            _LoopbackRedirects(),
        ]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._visits: list[Visit] = []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        """Visit ``url`` in the background; ``False`` (as webbrowser does) if it is not loopback."""
        if not _is_loopback(url):
            with self._lock:
                self._visits.append(Visit(url, None, None, b"", "not a loopback URL"))
            return False
        thread = threading.Thread(target=self._visit, args=(url,), name="tokenflow-browser", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return True

    def wait(self, timeout: float | None = None) -> list[Visit]:
        """Wait for every visit to end (at most ``timeout`` seconds in all); the visits so far."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return self.visits

    @property
    def visits(self) -> list[Visit]:
        with self._lock:
            return list(self._visits)

    def _visit(self, url: str) -> None:
        try:
            with self._opener.open(url, timeout=self.timeout) as response:
                visit = Visit(url, response.status, response.url, response.read(_MAX_PAGE))
        except urllib.error.HTTPError as exc:
            visit = Visit(url, exc.code, exc.url, exc.read(_MAX_PAGE))
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            visit = Visit(url, None, None, b"", str(reason))
        with self._lock:
            self._visits.append(visit)
