"""One updating stderr line while the CLI waits on a slow server, on a terminal only.

Without it an unreachable server meant 30 seconds of silence. When a command has waited more
than :data:`THRESHOLD` seconds for the server, stderr shows (and keeps rewriting in place)::

    tokenflow: waiting for the token endpoint at login.example.com (profile prod), 4 s; retry 1 of 2

and the line is erased when the wait ends, before anything else is printed. When stderr is
not a terminal (a script, CI, ``2>file``) nothing is shown and nothing is set up.

It is driven by the engine's events: the CLI registers an observer (:func:`_observer`) as an extra plugin of
the config's plugin host, and the ``retried`` events it receives fill in "retry n of m". Time
spent inside a secret source (a ``prompt``, a ``command`` asking for a passphrase) is not
waiting for the server: the line is paused and erased meanwhile, so it never writes over a
prompt (a prompt interrupted with Ctrl-C ends its own line before the CLI says so).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tokenflow.config.model import Profile
    from tokenflow.events import TokenEvent
    from tokenflow.plugins.host import PluginHost

__all__ = ["PLUGIN_NAME", "THRESHOLD", "LineClearingHandler", "enabled", "plugin_host", "watch",
           "watch_request"]

PLUGIN_NAME = "tokenflow.cli.progress"
THRESHOLD = 1.0  # seconds of waiting before the line appears
_TICK = 0.25  # seconds between redraws
_ERASE = "\r\033[K"

_write_lock = threading.RLock()  # the line and log records share stderr
_current: _Line | None = None


def enabled() -> bool:
    """Whether a progress line can be shown: stderr is a terminal that understands ``\\r``."""
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _observer() -> object:
    """The ``tokenflow_event`` observer that feeds the line (registered by :func:`plugin_host`).

    Defined on first use: ``hookimpl`` comes from pluggy, which the CLI's renewal path (it
    shares this module's log handler) must not import, nor the events module.
    """
    from tokenflow.events import EventKind
    from tokenflow.plugins.hookspecs import hookimpl

    class _Observer:
        __name__ = PLUGIN_NAME

        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            line = _current
            if line is not None and event.kind is EventKind.RETRIED:
                line.retried(event.detail, event.retry_in)

        # only retries move the line: no other event needs to be built for it (the hook's spec)
        tokenflow_event.wants = lambda kind: kind is EventKind.RETRIED  # type: ignore[attr-defined]

    return _Observer()


def plugin_host() -> PluginHost | None:
    """A plugin host with the progress observer, or ``None`` (the default host) when there is
    no terminal to show a line on."""
    if not enabled():
        return None
    from tokenflow.plugins.host import build_plugin_host

    return build_plugin_host(extra_plugins=[_observer()])


class _Line:
    """The state of one wait and the thread that draws it."""

    def __init__(self, what: str, url: str | None, server: str, profile: str,
                 retries: int) -> None:
        host = urlsplit(url or "").hostname or server
        self.label = f"waiting for the {what} at {host} (profile {profile})"
        self.retries = retries
        self.attempt = 0
        self.detail = ""
        self.next_try: float | None = None
        self.since = time.monotonic()
        self.pauses = 0
        self.drawn = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenflow-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * _TICK)
        with _write_lock:
            self.erase()

    def retried(self, detail: str, retry_in: float | None = None) -> None:
        self.attempt += 1
        self.detail = detail
        self.next_try = None if retry_in is None else time.monotonic() + retry_in

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No line while a secret source runs (it may be asking the person something)."""
        with _write_lock:
            self.pauses += 1
            self.erase()
        try:
            yield
        finally:
            with _write_lock:
                self.pauses -= 1
                self.since = time.monotonic()

    def text(self, now: float) -> str:
        text = f"tokenflow: {self.label}, {now - self.since:.0f} s"
        if self.attempt:
            shown = min(self.attempt, self.retries) if self.retries else self.attempt
            of = f" of {self.retries}" if self.retries else ""
            text += f"; retry {shown}{of} ({self.detail})" if self.detail else f"; retry {shown}{of}"
            if self.next_try is not None and self.next_try > now:
                text += f", next try in {self.next_try - now:.0f} s"
        return text

    def erase(self) -> None:
        """Erase the line if it is shown (call with :data:`_write_lock` held)."""
        if self.drawn:
            _write(_ERASE)
            self.drawn = False

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            now = time.monotonic()
            with _write_lock:
                if self.pauses or now - self.since < THRESHOLD or self._stop.is_set():
                    continue
                try:
                    width = os.get_terminal_size(sys.stderr.fileno()).columns or 80
                except (OSError, ValueError):
                    width = 80
                _write(_ERASE + self.text(now)[: max(width - 1, 20)])
                self.drawn = True


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed terminal: the line is only a courtesy


def _pausing(resolver: Callable[..., Any], line: _Line) -> Callable[..., Any]:
    def resolve(options: Any, context: Any) -> Any:
        with line.paused():  # the prompt source itself ends its line on Ctrl-C
            return resolver(options, context)

    return resolve


@contextmanager
def watch(host: PluginHost, profile: Profile, what: str) -> Iterator[None]:
    """Show the line while the block waits on *profile*'s server (*what*: "token endpoint")."""
    if not enabled():
        yield
        return
    server = profile.server
    line = _Line(what, server.token_url or server.issuer, server.name, profile.name,
                 server.retries)
    sources: dict[str, Any] = getattr(host, "sources", {})
    originals = dict(sources)
    for name, entry in originals.items():
        sources[name] = dataclasses.replace(entry, resolver=_pausing(entry.resolver, line))
    try:
        with _shown(line):
            yield
    finally:
        sources.update(originals)


@contextmanager
def watch_request(what: str, url: str, server: str, profile: str,
                  retries: int) -> Iterator[Callable[[str, float], None]]:
    """The same line for a request sent without a plugin host (the CLI's renewal path, which
    resolves no secret that could prompt): yields the ``on_retry`` observer to hand to
    :meth:`tokenflow.transport.Transport.send`, which fills in "retry n of m"."""
    if not enabled():
        yield _no_line
        return
    line = _Line(what, url, server, profile, retries)
    with _shown(line):
        yield line.retried


def _no_line(why: str, wait: float) -> None:
    """The ``on_retry`` of a request watched where no line can be shown."""


@contextmanager
def _shown(line: _Line) -> Iterator[None]:
    global _current
    _current = line
    line.start()
    try:
        yield
    finally:
        _current = None
        line.stop()


class LineClearingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's stderr log handler: erases the progress line before writing a record (the
    line is drawn again at the next tick)."""

    def emit(self, record: logging.LogRecord) -> None:
        with _write_lock:
            line = _current
            if line is not None:
                line.erase()
            super().emit(record)
