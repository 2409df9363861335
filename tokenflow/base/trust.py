"""Whether a file in tokenflow's cache may be believed: who could have written it, and a keyed MAC.

The CLI's fast path prints a token because an index file says which token file answers for a
profile. In a cache directory another local user can write, that index could be forged to map
one profile to another's token. So, as ssh does with its keys, every file the fast path reads
and every directory on the way to it must be owned by the user (or root) and not writable by
others (a world-writable directory is accepted only with the sticky bit, as ``/tmp`` has), and
the index's entries carry a MAC under a random key kept in a 0600 file of the cache: an entry
that does not verify was not written by tokenflow for this user.

The same key hides the values the index depends on: it stores ``HMAC(key, value)`` of the
environment variables a config reads (a password in ``${TS_PASSWORD}`` among them), never their
plain SHA-256, which could be cracked offline.

Standard library only, and not ``hmac``/``hashlib`` either (they load OpenSSL, milliseconds on
every ``tokenflow token``): HMAC-SHA256 is built on the interpreter's own SHA-256 (RFC 2104).
"""

from __future__ import annotations

import os
import stat

from tokenflow.base.boundedread import read_limited
from tokenflow.base.cachefile import UnsafeEntry, check_safe, sha256

__all__ = ["KEY_BYTES", "check_dir_chain", "keyed_digest", "load_key", "read_private"]

KEY_BYTES = 32
_BLOCK = 64  # SHA-256's block size
_INNER = bytes(range(256)).translate(bytes(b ^ 0x36 for b in range(256)))
_OUTER = bytes(range(256)).translate(bytes(b ^ 0x5C for b in range(256)))
_trusted_dirs: set[str] = set()


def keyed_digest(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of *data* under *key*, as hex (RFC 2104; equal to ``hmac.new(...)``)."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_INNER) + data).digest()
    return str(sha256(key.translate(_OUTER) + inner).hexdigest())


def check_dir_chain(directory: str) -> None:
    """Raise :class:`UnsafeEntry` unless every directory from *directory* up to ``/`` is safe.

    Safe: owned by the user or by root, and not writable by group or others unless the sticky
    bit is set (others can then add entries but not replace ours). Checked once per process.
    """
    path = os.path.abspath(directory)
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # pragma: no cover - Windows: ACLs, not modes
        return
    me = getuid()
    pending = []
    while path not in _trusted_dirs:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)  # a link is as safe as what it points to, and its own parent
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeEntry(f"refusing to use {path}: not a directory")
        if st.st_uid not in (me, 0):
            raise UnsafeEntry(f"refusing to use {path}: it is owned by uid {st.st_uid}, not by you")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            raise UnsafeEntry(
                f"refusing to use {path}: others can write to it "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run chmod go-w on it"
            )
        pending.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    _trusted_dirs.update(pending)


def read_private(path: str, limit: int) -> bytes | None:
    """The bytes of the regular file *path* (at most *limit*), ``None`` if it does not exist.

    Refuses (an ``OSError``) a file others could have written, in a directory others could have
    replaced, a symbolic link, a FIFO or a device, and a file over *limit* bytes; never blocks.
    """
    check_dir_chain(os.path.dirname(os.path.abspath(path)))
    try:
        return read_limited(path, limit, follow_symlinks=False,
                            check=lambda st: check_safe(st, path))
    except FileNotFoundError:
        return None


def load_key(path: str, *, create: bool) -> bytes | None:
    """The cache's MAC key; with *create*, made (32 random bytes, mode 0600) if missing.

    A new key is written to a private temporary file and linked into place, so no reader ever
    sees a partial key; a key of the wrong length (a damaged file) is replaced when *create*.
    """
    key = read_private(path, KEY_BYTES)
    if key is not None and len(key) == KEY_BYTES:
        return key
    if not create:
        return None
    import contextlib  # only the first run makes a key: the fast path never pays for these
    import tempfile

    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".key.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        if key is None:
            with contextlib.suppress(FileExistsError):  # another process published one first
                os.link(tmp, path)
        else:
            os.replace(tmp, path)  # a damaged key: every entry it sealed is void anyway
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    key = read_private(path, KEY_BYTES)
    return key if key is not None and len(key) == KEY_BYTES else None
