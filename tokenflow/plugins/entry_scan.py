"""Whether any installed distribution might declare an entry point in a group, found cheaply.

``importlib.metadata`` (its import, then a ``Distribution`` per installed package with its
entry points parsed) is a measurable part of a renewal from the CLI, and most installs have no
tokenflow plugin at all. :func:`may_declare` looks where ``importlib.metadata.distributions()``
looks (the ``*.dist-info`` and ``*.egg-info`` directories of each ``sys.path`` directory) and
reads each ``entry_points.txt`` with the same section rule. It answers ``False`` only when it
has seen everything ``importlib.metadata`` would see and no file has a ``[group]`` section;
anything it does not model (a distribution finder on ``sys.meta_path`` besides the standard
path finder, a zip or ``.egg`` on ``sys.path``, a file it cannot read or parse as
``importlib.metadata`` would) makes it answer ``True``, and the caller runs ``importlib.metadata``
as before, with the same results and the same errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["may_declare"]

# what importlib.metadata's PathDistribution.read_text treats as "no such file"
_ABSENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def may_declare(group: str, path: Sequence[object] | None = None) -> bool:
    """``False`` only if certainly no distribution on *path* (default ``sys.path``) declares an
    entry point in *group*."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return True  # another source of distributions (the importlib_metadata backport's...)
    for entry in sys.path if path is None else path:
        if not isinstance(entry, str):
            return True
        root = entry or "."
        if os.path.basename(entry).lower().endswith(".egg"):
            return True  # an egg's EGG-INFO is found by another rule
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.isfile(root):
                return True  # a zip file on the path
            continue  # importlib.metadata skips what it cannot list
        for child in children:
            if child.lower().endswith((".dist-info", ".egg-info")) and _may_declare_in(
                    os.path.join(root, child, "entry_points.txt"), group):
                return True
    return False


def _may_declare_in(file: str, group: str) -> bool:
    try:
        with open(file, encoding="utf-8") as stream:
            text = stream.read()
    except _ABSENT:
        return False
    except (OSError, UnicodeDecodeError):
        return True  # importlib.metadata would fail here: let it, with its own error
    section = None
    for line in map(str.strip, text.splitlines()):  # importlib.metadata's Sectioned.read
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            if section == group:
                return True
        elif section is not None and "=" not in line:
            return True  # importlib.metadata would raise on this line: let it
    return False
