"""The CLI's cached-token fast path: ``tokenflow token PROFILE`` in a few milliseconds.

A cache hit must not pay for PyYAML, jsonschema, urllib3, pluggy or the entry-point scan
(together ten times the cost of the hit itself). So the full path, after it has loaded and
validated a config, *compiles* it into a small JSON index beside the token cache: for each
profile its cache key, token file and refresh margin. The fast path reads that index, proves it
still describes the world, reads the token file and prints the token. Anything unusual (a stale
index, another store, an expiring token, an unknown flag, an event observer from a third-party
plugin that must see the cache hit) returns ``None`` and the full path takes over; the fast path
never fails where the full path would have succeeded.

The index is valid only while everything it was computed from is unchanged:

* the config files (their list, and each file's SHA-256: content, not mtime);
* the environment variables the config reads (``${VAR}``, ``{env: NAME}`` usernames), by hash;
* secret files a username is read from, by hash;
* the installed plugins (``sys.path`` directories' mtimes change when packages are installed)
  and ``$TOKENFLOW_PLUGINS`` / ``$TOKENFLOW_DISABLE_PLUGINS``;
* tokenflow's version.

It is keyed by the hash of the config source list, written atomically (temporary file and
rename), so concurrent writers are safe: the last complete write wins.

Only ``os``, ``sys`` and ``time`` are imported at module level: SHA-256 and JSON come from
:mod:`tokenflow.cachefile`, which avoids hashlib's OpenSSL and the json package's start-up.
"""

from __future__ import annotations

import os
import sys
import time

from tokenflow.base import cachefile, locations, output
from tokenflow.base.freshness import refresh_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


INDEX_FORMAT = 1
_PLUGIN_ENV = ("TOKENFLOW_PLUGINS", "TOKENFLOW_DISABLE_PLUGINS")


def _sha256(data: bytes) -> str:
    return str(cachefile.sha256(data).hexdigest())


def _file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return _sha256(handle.read())
    except OSError:
        return None


def _env_hash(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else _sha256(value.encode("utf-8", "surrogateescape"))


def _search_path() -> list[str]:
    """``sys.path`` without the script's own directory.

    ``sys.path[0]`` is the venv's ``bin`` for the console script and the working directory for
    ``python -m tokenflow``; it differs between the two and holds no installed distribution, so
    keeping it would make them invalidate each other's index (and every new file in the working
    directory would too). With ``-P``/``-I`` Python does not add it.
    """
    return [p for p in (sys.path if sys.flags.safe_path else sys.path[1:]) if p]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _distribution_dirs() -> dict[str, int | None]:
    """The search-path directories that hold installed distributions, with their mtimes.

    Installing, upgrading or removing a package adds or removes a ``*.dist-info`` directory,
    which changes its parent's mtime: that is how a new entry-point plugin is noticed.
    """
    marks: dict[str, int | None] = {}
    for entry in _search_path():
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        if any(n.endswith((".dist-info", ".egg-info", ".egg-link")) for n in names):
            marks[entry] = _mtime(entry)
    return marks


def index_path(cache_dir: str, sources: Sequence[str]) -> str:
    """Where the index of a config source list lives."""
    key = _sha256("\0".join(os.path.abspath(s) for s in sources).encode())[:24]
    return os.path.join(cache_dir, "index", f"{key}.json")


def _version() -> str:
    from tokenflow.base.version import VERSION

    return VERSION


# -- reading (the fast path itself) --------------------------------------------------------------
def _index_is_current(index: dict[str, Any], files: list[str]) -> bool:
    if index.get("format") != INDEX_FORMAT or index.get("version") != _version():
        return False
    if index.get("files") != [os.path.abspath(f) for f in files]:
        return False
    for path, digest in index.get("hashes", {}).items():
        if _file_hash(path) != digest:
            return False
    for name, digest in index.get("env", {}).items():
        if _env_hash(name) != digest:
            return False
    if index.get("search_path") != _search_path():
        return False
    return all(_mtime(path) == mark for path, mark in index.get("plugin_dirs", {}).items())


def _parse_args(argv: Sequence[str]) -> tuple[str | None, str, list[str]] | None:
    """``token [PROFILE] [--format F] [-c PATH]...``; ``None`` for anything else."""
    if not argv or argv[0] != "token":
        return None
    profile: str | None = None
    fmt = "raw"
    configs: list[str] = []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg in ("--format", "-f", "-c", "--config"):
            if not args:
                return None
            value = args.pop(0)
            if arg in ("--format", "-f"):
                fmt = value
            else:
                configs.append(value)
        elif arg.startswith("--format="):
            fmt = arg.partition("=")[2]
        elif arg.startswith("--config="):
            configs.append(arg.partition("=")[2])
        elif arg in ("--interactive", "--no-browser"):
            continue  # they matter only for a sign-in, which a cache hit never needs
        elif arg.startswith("-") or profile is not None:
            return None  # --force-refresh, -v, --help, extra words: the full CLI decides
        else:
            profile = arg
    if fmt not in output.FORMATS:
        return None
    return profile, fmt, configs


def cached_token_output(argv: Sequence[str], now: float | None = None) -> str | None:
    """The text ``tokenflow token`` would print, if it can be had from cache cheaply."""
    parsed = _parse_args(argv)
    if parsed is None:
        return None
    profile, fmt, configs = parsed
    sources = locations.config_sources(configs)
    if not sources:
        return None
    try:
        with open(index_path(locations.cache_dir(), sources), "rb") as handle:
            index = cachefile.loads(handle.read())
        if not _index_is_current(index, locations.config_files(sources)):
            return None
        name = profile or os.environ.get("TOKENFLOW_PROFILE") or index.get("only_profile")
        entry = index["profiles"].get(name) if name else None
        if not entry or not entry.get("token_path"):
            return None
        token = cachefile.read(entry["token_path"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, damaged or unsafe: the full path reports what is wrong
    if token is None:
        return None
    now = time.time() if now is None else now
    try:
        expires_at = float(token["expires_at"])
        obtained_at = float(token.get("obtained_at", expires_at))
        access = token["access_token"]
        if not isinstance(access, str) or now >= refresh_at(expires_at, obtained_at,
                                                            float(entry["margin"])):
            return None
        return output.render(fmt, access, str(token.get("token_type", "Bearer")), expires_at,
                             token.get("scope"), now)
    except (KeyError, TypeError, ValueError):
        return None
