"""The ``prompt`` secret source on a real pseudo-terminal (a child process with its own pty).

What a person sees matters here: an empty answer is asked again, and Ctrl-C or Ctrl-D at the
prompt ends the prompt's line before anything else is printed.
"""

from __future__ import annotations

import os
import select
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="needs a POSIX pseudo-terminal")

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tokenflow.builtins.prompt_source import resolve_prompt
    from tokenflow.errors import CredentialError
    from tokenflow.plugins.contracts import PluginContext
    try:
        value = resolve_prompt("Password", PluginContext("prod", Path("."), Path("."), True))
        print("GOT[" + value + "]")
    except KeyboardInterrupt:
        print("INTERRUPTED")
    except CredentialError as exc:
        print("ERROR[" + str(exc) + "]")
    sys.stdout.flush()
""")


class Terminal:
    """A Python child running CHILD on a pty; read what it shows, type into it."""

    def __init__(self) -> None:
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # the child: its controlling terminal is the pty
            try:
                os.execv(sys.executable, [sys.executable, "-c", CHILD])
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = b""

    def read_until(self, needle: bytes, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {needle!r}; the terminal shows {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk
        assert needle in self.seen, f"never saw {needle!r}; the terminal shows {self.seen!r}"
        return self.seen

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def close(self) -> int:
        deadline = time.monotonic() + 30
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
            time.sleep(0.05)


def test_an_empty_answer_is_asked_again() -> None:
    term = Terminal()
    try:
        term.read_until(b"Password for prod: ")
        term.type(b"\r")  # Enter by mistake
        term.read_until(b"cannot be empty; type it and press Enter (Ctrl-C to stop)\r\nPassword for prod: ")
        term.type(b"s3cret\r")
        shown = term.read_until(b"GOT[")
        term.read_until(b"]")
        assert b"GOT[s3cret]" in term.seen
        assert b"s3cret" not in shown.split(b"GOT[")[0]  # never echoed
    finally:
        assert term.close() == 0


def test_three_empty_answers_are_a_credential_error() -> None:
    term = Terminal()
    try:
        for _ in range(3):
            term.read_until(b"Password for prod: ")
            term.seen = b""
            term.type(b"\r")
        term.read_until(b"ERROR[")
        term.read_until(b"]")
        assert b"'Password' was empty 3 times" in term.seen
    finally:
        assert term.close() == 0


@pytest.mark.parametrize(("key", "outcome"), [(b"\x03", b"INTERRUPTED"), (b"\x04", b"ERROR[")],
                         ids=["ctrl-c", "ctrl-d"])
def test_an_interrupted_prompt_ends_its_line(key: bytes, outcome: bytes) -> None:
    term = Terminal()
    try:
        term.read_until(b"Password for prod: ")
        term.type(key)
        term.read_until(outcome)
        # what follows the prompt starts on a new line, not after "Password for prod: "
        after_prompt = term.seen.split(b"Password for prod: ", 1)[1]
        assert after_prompt.startswith((b"\r\n", b"\n")), term.seen
    finally:
        assert term.close() == 0
