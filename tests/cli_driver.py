"""Drive a real ``tokenflow`` CLI process that waits for a person: read its stderr as it comes,
find the URL or user code it shows, answer, interrupt it.

Every read has a deadline (a stuck CLI fails the test, it never hangs it).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

URL_RE = re.compile(r"https?://\S+")
DEADLINE = 60.0


class CliProcess:
    """``python -m tokenflow ARGS`` with piped stdout and stderr (or stderr on a pty)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None,
                 *, stderr_tty: bool = False, cwd: Path | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._pty_master: int | None = None
        stderr: int = subprocess.PIPE
        if stderr_tty:
            import pty

            master, slave = pty.openpty()
            self._pty_master, stderr = master, slave
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tokenflow", *args], env=full_env, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
        )
        if stderr_tty:
            os.close(stderr)
        pipe = self.proc.stderr
        self._err_fd = self._pty_master if self._pty_master is not None else pipe.fileno()  # type: ignore[union-attr]
        self.stderr = ""

    def _read_some(self, timeout: float) -> bool:
        selector = selectors.DefaultSelector()
        selector.register(self._err_fd, selectors.EVENT_READ)
        try:
            if not selector.select(timeout):
                return False
        finally:
            selector.close()
        try:
            chunk = os.read(self._err_fd, 65536)
        except OSError:  # a pty whose other end closed
            chunk = b""
        if not chunk:
            return False
        self.stderr += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def wait_for(self, pattern: str, deadline: float = DEADLINE) -> re.Match[str]:
        """Read stderr until *pattern* matches; fail (with what was read) after *deadline* s."""
        end = time.monotonic() + deadline
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.stderr)
            if match:
                return match
            left = end - time.monotonic()
            if left <= 0 or (not self._read_some(min(left, 0.5)) and self.proc.poll() is not None
                             and not self._read_some(0.1)):
                raise AssertionError(f"no {pattern!r} on stderr; got: {self.stderr!r}")

    def url(self, deadline: float = DEADLINE) -> str:
        """The first URL the process printed on a line of its own."""
        return self.wait_for(r"(?m)^\s*(https?://\S+)\s*$", deadline).group(1)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = DEADLINE) -> tuple[int, str, str]:
        """Exit code, stdout and all of stderr."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read_some(0.2)  # keep draining stderr so the process never blocks on it
        code = self.proc.wait(timeout=max(0.1, end - time.monotonic()))
        out = self.proc.stdout.read() if self.proc.stdout else b""
        while self._read_some(0.1):
            pass
        if self._pty_master is not None:
            os.close(self._pty_master)
            self._pty_master = None
        elif self.proc.stderr:
            self.proc.stderr.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        return code, out.decode("utf-8", "replace"), self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
