"""Where tokenflow looks for config and keeps its cache.

This module is on the CLI's fast path, so it imports nothing beyond ``os`` and ``sys`` and works
with ``str`` paths (``pathlib`` alone costs a few milliseconds to import).
Importing platformdirs costs more than the whole cache hit, so on Linux and macOS the user
directories are computed here with platformdirs' own rules (a test checks that both agree);
elsewhere platformdirs is asked.

Config discovery (DESIGN.md section 1): ``--config PATH`` (repeatable), else ``$TOKENFLOW_CONFIG``
(paths joined by the OS path separator), else ``./tokenflow.yaml``, else the user config
directory's ``tokenflow/``. ``$TOKENFLOW_CACHE_DIR`` overrides the cache directory.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up; annotations are strings here
    from collections.abc import Sequence

APP = "tokenflow"
CONFIG_SUFFIXES = (".yaml", ".yml")


def _home() -> str:
    return os.path.expanduser("~")


def _xdg(variable: str, fallback: str) -> str:
    value = os.environ.get(variable, "")
    # the XDG spec (and platformdirs) ignore a value that is not an absolute path
    return value if os.path.isabs(value) else os.path.join(_home(), fallback)


def cache_dir() -> str:
    """tokenflow's user cache directory (tokens, the compiled config index)."""
    override = os.environ.get("TOKENFLOW_CACHE_DIR")
    if override:
        return os.path.abspath(override)
    if sys.platform == "darwin":
        return os.path.join(_home(), "Library", "Caches", APP)
    if os.name == "posix":
        return os.path.join(_xdg("XDG_CACHE_HOME", ".cache"), APP)
    import platformdirs  # pragma: no cover - exercised on Windows only

    return str(platformdirs.user_cache_dir(APP, appauthor=False))  # pragma: no cover


def config_dir() -> str:
    """The user config directory searched last: ``<user config dir>/tokenflow``."""
    if sys.platform == "darwin":
        return os.path.join(_home(), "Library", "Application Support", APP)
    if os.name == "posix":
        return os.path.join(_xdg("XDG_CONFIG_HOME", ".config"), APP)
    import platformdirs  # pragma: no cover - exercised on Windows only

    return str(platformdirs.user_config_dir(APP, appauthor=False))  # pragma: no cover


def config_sources(explicit: Sequence[str] = ()) -> list[str]:
    """The config paths (files or directories) to load, in discovery order.

    Returns an empty list when nothing is configured anywhere.
    """
    if explicit:
        return [os.fspath(p) for p in explicit]
    from_env = os.environ.get("TOKENFLOW_CONFIG", "")
    if from_env.strip():
        return [p for p in from_env.split(os.pathsep) if p.strip()]
    if os.path.isfile("tokenflow.yaml"):
        return ["tokenflow.yaml"]
    user = config_dir()
    return [user] if os.path.isdir(user) else []


def config_files(sources: Sequence[str]) -> list[str]:
    """Expand directories to their ``*.yaml``/``*.yml`` files (sorted); keep files as given.

    A path that does not exist is returned as is, so the loader reports it with its name.
    """
    files: list[str] = []
    for source in sources:
        if os.path.isdir(source):
            names = sorted(n for n in os.listdir(source) if n.endswith(CONFIG_SUFFIXES))
            files.extend(
                os.path.join(source, n) for n in names if os.path.isfile(os.path.join(source, n))
            )
        else:
            files.append(source)
    return files
