"""The ``command`` secret source: ``{command: [argv...]}`` runs a program, takes stdout's first line.

For password managers (``pass show``, ``op read``, ``security find-generic-password -w``). The
argv list runs without a shell, so nothing is re-interpreted. A non-zero exit is a
CredentialError that shows the last line of stderr, never stdout (stdout is the secret).

Bounded: stdout over 64 KiB, or a command still running at its timeout, has its whole process
group killed (the command runs in a session of its own), and a background child that keeps
stdout open does not hold up a command that has exited.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenflow.errors import CredentialError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import scrub

DEFAULT_TIMEOUT = 30.0
MAX_OUTPUT_BYTES = 64 * 1024  # stdout: a secret is one line; more is a wrong command (or `yes`)
STDERR_TAIL_BYTES = 4096  # only stderr's last line is shown

OPTIONS_SCHEMA = {
    "description": "argv list run without a shell, or {argv: [...], timeout: SECONDS}.",
    "oneOf": [
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["argv"],
            "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                         "description": "The program and its arguments, run without a shell."},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                            "description": "Seconds to wait for the program (default 30, "
                                           "at most an hour)."},
            },
        },
    ],
}


class _TooMuchOutput(Exception):
    """The command printed more than :data:`MAX_OUTPUT_BYTES` on stdout."""


@dataclass(slots=True)
class _Finished:
    returncode: int
    stdout: bytes
    stderr_tail: bytes


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command and everything it started in its session (its own process group)."""
    if proc.returncode is None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows: no process groups to kill
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def _read_some(fd: int, out: bytearray, err: bytearray, is_out: bool) -> bool | None:
    """Read what *fd* has now: False at EOF, None if nothing is there yet.

    stdout over the cap raises :class:`_TooMuchOutput`; of stderr only the tail is kept.
    """
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return None
    if not chunk:
        return False
    if is_out:
        out += chunk
        if len(out) > MAX_OUTPUT_BYTES:
            raise _TooMuchOutput
    else:
        err += chunk
        del err[:-STDERR_TAIL_BYTES]
    return True


def _run(argv: list[str], cwd: Path | None, timeout: float) -> _Finished:
    """Run *argv* with bounded output and a deadline that covers everything it starts.

    The command gets its own session (``start_new_session``), so on a timeout the whole process
    group is killed, not only the command. Once the command itself has exited, what it wrote is
    already in the pipes: it is drained without waiting for EOF, because a background child it
    left behind may hold stdout open for ever. Raises ``subprocess.TimeoutExpired`` or
    :class:`_TooMuchOutput` (the process group killed in both cases).
    """
    if os.name != "posix":  # pragma: no cover - Windows: no select() on pipes, no process groups
        done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
        if len(done.stdout) > MAX_OUTPUT_BYTES:
            raise _TooMuchOutput
        return _Finished(done.returncode, done.stdout, done.stderr[-STDERR_TAIL_BYTES:])
    proc = subprocess.Popen(  # argv from the user's own config, run without a shell
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    streams = {proc.stdout.fileno(): True, proc.stderr.fileno(): False}  # fd -> is stdout
    try:
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while proc.poll() is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(argv, timeout)
                if not selector.get_map():  # both pipes closed: only the exit is left to wait for
                    proc.wait(remaining)
                    break
                # a short wake-up notices the exit while a background child keeps the pipes open
                for key, _ in selector.select(min(remaining, 0.05)):
                    fd = key.fd
                    if _read_some(fd, out, err, streams[fd]) is False:
                        selector.unregister(fd)
            for fd in [f for f in streams if f in selector.get_map()]:  # its last words, bounded
                for _ in range(MAX_OUTPUT_BYTES // 65536 + 2):
                    if not _read_some(fd, out, err, streams[fd]):
                        break  # EOF, or nothing more for now
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return _Finished(proc.wait(), bytes(out), bytes(err))


def resolve_command(options: Any, context: PluginContext) -> str:
    if isinstance(options, dict):
        argv = [str(a) for a in options["argv"]]
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    else:
        argv = [str(a) for a in options]
        timeout = DEFAULT_TIMEOUT
    name = argv[0]
    where = f"profile {context.profile!r}: command {name!r}"
    try:
        done = _run(argv, context.base_dir if context.base_dir.is_dir() else None, timeout)
    except FileNotFoundError:
        raise CredentialError(f"{where} not found") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(f"{where} did not finish in {timeout:g}s (it was killed)") from None
    except _TooMuchOutput:
        raise CredentialError(
            f"{where} printed over {MAX_OUTPUT_BYTES // 1024} KiB (it was killed); "
            "a secret command prints the secret on its first line"
        ) from None
    except OSError as exc:
        raise CredentialError(
            f"profile {context.profile!r}: cannot run {name!r}: {exc.strerror or exc}"
        ) from None
    if done.returncode != 0:
        lines = done.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        last = scrub(lines[-1].strip())[:200] if lines else "no message on stderr"
        raise CredentialError(f"{where} exited with {done.returncode}: {last}")
    first = done.stdout.split(b"\n", 1)[0].removesuffix(b"\r").decode("utf-8", "replace")
    if not first:
        raise CredentialError(f"{where} printed nothing")
    return first


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register("command", resolve_command, OPTIONS_SCHEMA)
