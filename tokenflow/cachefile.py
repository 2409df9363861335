"""The on-disk format of one cached token, shared by the file store and the CLI's fast path.

Kept free of heavy imports (only ``json``, ``hashlib``, ``os``) because the fast path reads it
before anything else is loaded. An entry is::

    {"format": 1, "checksum": "sha256:<hex of the canonical token JSON>", "token": {...}}

The checksum catches truncation and bit rot; the ``format`` number lets a later version change
the layout without misreading old files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import; annotations here are strings
    from typing import Any

FORMAT = 1


class CorruptEntry(ValueError):
    """The file exists but is not a valid entry of this format (truncated, foreign, damaged)."""


class UnsafeEntry(PermissionError):
    """The file is writable by others or owned by someone else: reading it would trust them."""


def _canonical(token: dict[str, Any]) -> bytes:
    return json.dumps(token, sort_keys=True, separators=(",", ":")).encode()


def encode(token: dict[str, Any]) -> bytes:
    """Serialise a token dict (``Token.to_dict()``) with its format number and checksum."""
    checksum = "sha256:" + hashlib.sha256(_canonical(token)).hexdigest()
    entry = {"format": FORMAT, "checksum": checksum, "token": token}
    return json.dumps(entry, indent=1, sort_keys=True).encode() + b"\n"


def decode(raw: bytes) -> dict[str, Any]:
    """Parse and verify an entry; raise :class:`CorruptEntry` on anything unexpected."""
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptEntry(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(entry, dict):
        raise CorruptEntry("not a JSON object")
    if entry.get("format") != FORMAT:
        raise CorruptEntry(f"unknown format {entry.get('format')!r}")
    token = entry.get("token")
    if not isinstance(token, dict):
        raise CorruptEntry("no token object")
    expected = "sha256:" + hashlib.sha256(_canonical(token)).hexdigest()
    if entry.get("checksum") != expected:
        raise CorruptEntry("checksum mismatch")
    return token


def check_safe(st: os.stat_result, path: str) -> None:
    """Refuse a file others could have written (as ssh does with its keys)."""
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeEntry(
            f"refusing to read {path}: it is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 on it or delete it"
        )
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        raise UnsafeEntry(f"refusing to read {path}: it is owned by uid {st.st_uid}, not by you")


def read(path: str) -> dict[str, Any] | None:
    """The token dict at *path*, ``None`` if absent; raises CorruptEntry or UnsafeEntry."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        check_safe(os.fstat(fd), path)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return decode(b"".join(chunks))
