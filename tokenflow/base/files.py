"""Private directories and atomic, durable writes: what every cache file tokenflow writes needs.

Standard library only, so the built-in file store and the CLI's index writer share one
implementation without either importing the other.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib costs milliseconds to import, and the CLI's fast path imports this
    from pathlib import Path

__all__ = ["ensure_private_dir", "file_stamp", "write_atomic"]


def ensure_private_dir(path: Path) -> None:
    """Create *path* (and parents) with mode 0700; tighten it if it exists looser."""
    # mkdir(parents=True) creates missing parents with the umask's mode (0777 under umask 0):
    # create each one private instead
    for parent in reversed(path.parents):
        if not parent.is_dir():
            parent.mkdir(mode=0o700, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o700)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write *data* to *path*: readers see the old or the new content; on disk when it returns.

    The order is write, rename, then one fsync of the file, rather than fsync, rename and an
    fsync of the directory. On Linux's journaling file systems (ext4, XFS, btrfs) fsync of a
    file commits the journal transaction that holds the file's latest metadata change, which
    here is the rename: when this returns, the new name and the new bytes are both on disk, and
    a directory fsync would only pay for a second commit (measured on ext4: +50 to +100 us, a
    third of a save; see bench/README.md). A crash before it returns happens before the token
    is handed out and leaves the old entry (ext4 writes a file's data before a rename that
    replaces another file) or, where the data was not yet ordered before the rename (a first
    save, or a file system without that rule), an empty or short entry: its checksum fails, it
    is quarantined like any damaged entry and the token fetched again.
    """
    fd, tmp = _create_temp(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.replace(tmp, path)
        except BaseException:
            try:  # noqa: SIM105 - contextlib would cost the CLI's cached path an import
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if durable:  # a cache that can be rebuilt (the fast path's index) skips the fsync
            os.fsync(fd)  # after the rename: commits the data and the new name together (see above)
    finally:
        os.close(fd)


_TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))


def _create_temp(path: Path) -> tuple[int, str]:
    """A new private file beside *path*: ``.<name>.<8 random hex digits>.tmp``.

    The shape of :func:`tempfile.mkstemp`'s names (the file store's sweep recognises it), made
    with one ``os.urandom`` and one exclusive ``open`` instead of mkstemp's name generator.
    """
    prefix = os.path.join(os.fspath(path.parent), f".{path.name}.")
    for _ in range(100):
        tmp = f"{prefix}{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def file_stamp(path: str) -> list[int] | None:
    """What changes when a file is rewritten: size, mtime, inode and ctime (``None``: absent)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
