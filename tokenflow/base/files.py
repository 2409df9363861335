"""Private directories and atomic, durable writes: what every cache file tokenflow writes needs.

Standard library only, so the built-in file store and the CLI's index writer share one
implementation without either importing the other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["ensure_private_dir", "write_atomic"]


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
    """Write *data* to *path* so that readers and crashes see the old or the new content.

    *durable* also makes it survive a power cut (fsync); a cache that can be rebuilt, such as
    the fast path's index, skips that cost.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
