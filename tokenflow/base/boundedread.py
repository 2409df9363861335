"""Reading local files that someone else may have chosen: only regular files, never too much.

Every local input tokenflow reads (config files, secret files, cached tokens) goes through here,
because a path in a config file can name anything: ``/dev/zero`` (an endless read), a FIFO (an
``open`` or ``read`` that waits for ever), a directory, a terminal. So a file is opened with
``O_NONBLOCK`` (opening a FIFO does not wait for a writer), checked with ``fstat`` on the open
descriptor (no race with a rename between a check and the open), refused unless it is a regular
file, and read up to a limit the caller chooses.

Standard library only (``os`` and ``stat``): the CLI's fast path reads token files through it.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import; annotations here are strings
    from collections.abc import Callable

__all__ = ["MAX_SECRET_BYTES", "FileTooLarge", "NotRegularFile", "read_first_line", "read_limited",
           "read_secret_file"]

_CHUNK = 65536
MAX_SECRET_BYTES = 64 * 1024  # a password or key on one line; more is not a secret file


class NotRegularFile(OSError):
    """The path is a FIFO, a device, a directory or a socket: tokenflow reads regular files only."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind  # "a FIFO (named pipe)", "a character device", ...


class FileTooLarge(OSError):
    """The file (or, for :func:`read_first_line`, its first line) is over the caller's limit."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _open_regular(path: str, follow_symlinks: bool,
                  check: Callable[[os.stat_result], None] | None) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, _kind(st.st_mode))
        if check is not None:
            check(st)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_limited(path: str, limit: int, *, follow_symlinks: bool = True,
                 check: Callable[[os.stat_result], None] | None = None) -> bytes:
    """The whole content of the regular file *path*, at most *limit* bytes.

    Raises :class:`NotRegularFile`, :class:`FileTooLarge`, or the ``OSError`` of ``open``
    (``FileNotFoundError``, ``PermissionError``, ``ELOOP`` for a symlink when
    *follow_symlinks* is false). *check* sees the ``fstat`` of the open file before any byte is
    read and may raise to refuse it (the cache's ownership rules do).
    """
    fd = _open_regular(path, follow_symlinks, check)
    try:
        chunks: list[bytes] = []
        size = 0
        # the size from fstat is only a hint: a file can grow while it is read
        while size <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge(f"{path} is over {_bytes(limit)}")
    return b"".join(chunks)


def read_first_line(path: str, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The first line of the regular file *path*, without its line ending.

    Reads no further than the first newline, so a huge file with a short first line is fine;
    a first line over *limit* bytes raises :class:`FileTooLarge`.
    """
    fd = _open_regular(path, follow_symlinks, None)
    try:
        line = b""
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                line += chunk[:end]
                break
            line += chunk
            if len(line) > limit:
                break
    finally:
        os.close(fd)
    if len(line) > limit:
        raise FileTooLarge(f"the first line of {path} is over {_bytes(limit)}")
    return line[:-1] if line.endswith(b"\r") else line


def read_secret_file(path: str) -> str:
    """The value of a ``{file: PATH}`` secret: the first line of *path*, UTF-8, at most
    :data:`MAX_SECRET_BYTES` (the ``file`` secret source and the CLI's renewal path read it
    so). Raises ``OSError`` (also :class:`NotRegularFile`, :class:`FileTooLarge`) or
    ``UnicodeDecodeError``."""
    return read_first_line(path, MAX_SECRET_BYTES).decode("utf-8")


def _bytes(limit: int) -> str:
    if limit >= 1 << 20 and limit % (1 << 20) == 0:
        return f"{limit >> 20} MiB"
    if limit >= 1 << 10 and limit % (1 << 10) == 0:
        return f"{limit >> 10} KiB"
    return f"{limit} bytes"
