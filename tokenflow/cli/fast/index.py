"""The CLI's cached-token fast path: ``tokenflow token PROFILE`` in a few milliseconds.

A cache hit must not pay for PyYAML, jsonschema, urllib3, pluggy or the entry-point scan
(together ten times the cost of the hit itself). So the full path, after it has loaded and
validated a config, *compiles* it into an index beside the token cache
(:mod:`tokenflow.cli.index_writer`), and this module answers from it: it proves the index still
describes the world, reads the one token file the index names for the profile and prints the
token. Anything unusual (a stale index, a store without a token file, an expiring token, an
unknown flag, an event observer from a third-party plugin that must see the cache hit) returns
``None`` and the full path takes over; the fast path never fails where the full path would
have succeeded.

The index of a config source list is a directory ``<cache>/index/<hash of the sources>/``:

* ``head.json``: what every answer depends on: the config files (with a stamp of size, mtime,
  inode and ctime, and their SHA-256), the environment variables the config reads, the installed
  plugins (``sys.path`` and the mtimes of directories holding distributions), tokenflow's
  version, and the *generation*: a MAC over all of that;
* ``p-<hash of the profile name>.json``: one entry per profile: its token file and refresh
  margin, what its cache key's values depend on (the variables and files its secret sources
  ``watch``), the generation it belongs to, and a MAC.

So a hit reads three small files whatever the number of profiles, and checks config files by
their stamp; only a file whose stamp changed, or that was modified within the second the head
was written (a change in the same second may leave the stamp equal), is hashed again. Every
file and directory on the way must be the user's and not writable by others, and entries
verify under the cache's MAC key (:mod:`tokenflow.base.trust`): a forged or stale entry is
simply not used. Environment values are kept only as MACs under that key.

Standard library only (``tokenflow.base`` and this package): ``tests/test_architecture.py``
and import-linter check it, imports inside functions included.
"""

from __future__ import annotations

import os
import sys
import time

from tokenflow.base import cachefile, locations, output
from tokenflow.base.boundedread import read_limited
from tokenflow.base.files import file_stamp
from tokenflow.base.freshness import refresh_at
from tokenflow.base.trust import keyed_digest, load_key, read_private
from tokenflow.cli.fast import grammar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

INDEX_FORMAT = 3
PLUGIN_ENV = ("TOKENFLOW_PLUGINS", "TOKENFLOW_DISABLE_PLUGINS")
RACY_SECONDS = 2.0  # a file modified this close to the head's writing is hashed, not trusted
MAX_INDEX_FILE = 1024 * 1024
MAX_WATCHED_FILE = 16 * 1024 * 1024  # a config file or a username file, hashed


# -- what the index is made of (shared with the writer) -------------------------------------------
def sha256_hex(data: bytes) -> str:
    return str(cachefile.sha256(data).hexdigest())


def file_digest(key: bytes, path: str) -> str | None:
    """A keyed digest of a regular file's content (bounded), ``None`` if it cannot be read.

    Keyed, never a plain SHA-256: a watched file may hold a secret (a refresh token read from
    ``{file: ...}``, a config with a literal password) that a plain hash would let anyone who
    can read the index test guesses against.
    """
    try:
        return keyed_digest(key, read_limited(path, MAX_WATCHED_FILE))
    except OSError:
        return None


def env_digest(key: bytes, name: str) -> str | None:
    """A keyed digest of a variable's value (never its plain hash: it may be a password)."""
    value = os.environ.get(name)
    if value is None:
        return None
    return keyed_digest(key, f"{name}\0{value}".encode("utf-8", "surrogateescape"))


def search_path() -> list[str]:
    """``sys.path`` without the script's own directory.

    ``sys.path[0]`` is the venv's ``bin`` for the console script and the working directory for
    ``python -m tokenflow``; it differs between the two and holds no installed distribution, so
    keeping it would make them invalidate each other's index (and every new file in the working
    directory would too). With ``-P``/``-I`` Python does not add it.
    """
    return [p for p in (sys.path if sys.flags.safe_path else sys.path[1:]) if p]


def mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def distribution_dirs() -> dict[str, int | None]:
    """The search-path directories that hold installed distributions, with their mtimes.

    Installing, upgrading or removing a package adds or removes a ``*.dist-info`` directory,
    which changes its parent's mtime: that is how a new entry-point plugin is noticed.
    """
    marks: dict[str, int | None] = {}
    for entry in search_path():
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        if any(n.endswith((".dist-info", ".egg-info", ".egg-link")) for n in names):
            marks[entry] = mtime(entry)
    return marks


def index_dir(cache_dir: str, sources: Sequence[str]) -> str:
    """Where the index of a config source list lives."""
    key = sha256_hex("\0".join(os.path.abspath(s) for s in sources).encode())[:24]
    return os.path.join(cache_dir, "index", key)


def key_path(cache_dir: str) -> str:
    return os.path.join(cache_dir, "index", "key")


def entry_path(directory: str, profile: str) -> str:
    return os.path.join(directory, f"p-{sha256_hex(profile.encode('utf-8', 'surrogateescape'))[:32]}.json")


def sealed(key: bytes, body: dict[str, Any]) -> dict[str, Any]:
    """*body* with its MAC (over its canonical JSON) added as ``mac``."""
    return {**body, "mac": keyed_digest(key, cachefile.dumps_canonical(body).encode())}


def unseal(key: bytes, raw: bytes | None) -> dict[str, Any] | None:
    """The body of a sealed document, or ``None`` if absent, damaged or not ours."""
    if raw is None:
        return None
    document = cachefile.loads(raw)
    if not isinstance(document, dict):
        return None
    mac = document.pop("mac", None)
    if not isinstance(mac, str) or keyed_digest(key, cachefile.dumps_canonical(document).encode()) != mac:
        return None
    return document


def version() -> str:
    from tokenflow.base.version import VERSION

    return VERSION


# -- reading (the fast path itself) --------------------------------------------------------------
def files_unchanged(key: bytes, recorded: dict[str, Any], written_ns: int) -> bool:
    """Each recorded file still has its content: by stamp, or by hash when the stamp can lie."""
    racy_after = written_ns - int(RACY_SECONDS * 1e9)
    for path, (stamp, digest) in recorded.items():
        now = file_stamp(path)
        if now is not None and now == stamp and now[1] < racy_after:
            continue
        if file_digest(key, path) != digest:
            return False
    return True


def head_is_current(key: bytes, head: dict[str, Any], files: list[str]) -> bool:
    if head.get("format") != INDEX_FORMAT or head.get("version") != version():
        return False
    if head.get("files") != [os.path.abspath(f) for f in files]:
        return False
    if not files_unchanged(key, head["hashes"], head["written_ns"]):
        return False
    if any(env_digest(key, name) != digest for name, digest in head["env"].items()):
        return False
    if head.get("search_path") != search_path():
        return False
    return all(mtime(path) == mark for path, mark in head["plugin_dirs"].items())


def entry_is_current(key: bytes, entry: dict[str, Any], head: dict[str, Any], name: str) -> bool:
    if entry.get("generation") != head.get("generation") or entry.get("profile") != name:
        return False
    if any(env_digest(key, n) != digest for n, digest in entry["env"].items()):
        return False
    return files_unchanged(key, entry["hashes"], head["written_ns"])


def _parse_args(argv: Sequence[str], allow: tuple[str, ...] = ()
                ) -> tuple[str | None, str, list[str], bool] | None:
    """``(profile, format, config paths, force refresh)`` of a ``token`` command line the cached
    path (or, with *allow*, the renewal path) can answer, read with the CLI's own grammar
    (:mod:`tokenflow.cli.fast.grammar`); ``None`` for anything else."""
    values = grammar.parse_command(argv, grammar.TOKEN, allow)
    if values is None:
        return None
    profile, fmt, configs = values["profile"], values["format"], values["config"]
    assert profile is None or isinstance(profile, str)
    assert isinstance(fmt, str) and (configs is None or isinstance(configs, list))
    return profile, fmt, list(configs or []), values["force_refresh"] is True


class Found:
    """What the index says about the profile a ``token`` command line asks for: its current,
    verified entry, the output format, whether ``--force-refresh`` was given and the cached
    token (``None``: absent)."""

    __slots__ = ("entry", "force", "format", "token")

    def __init__(self, entry: dict[str, Any], fmt: str, force: bool,
                 token: dict[str, Any] | None) -> None:
        self.entry = entry
        self.format = fmt
        self.force = force
        self.token = token


def find_entry(argv: Sequence[str], allow: tuple[str, ...] = ()) -> Found | None:
    """The profile's entry, proven current (head and entry), and its cached token; ``None``
    when the index cannot vouch for it (then only the full path may answer).

    Raises ``OSError``, ``ValueError`` and the like for damaged or unsafe files: callers treat
    any exception as "ask the full path".
    """
    parsed = _parse_args(argv, allow)
    if parsed is None:
        return None
    profile, fmt, configs, force = parsed
    sources = locations.config_sources(configs)
    if not sources:
        return None
    cache = locations.cache_dir()
    key = load_key(key_path(cache), create=False)
    if key is None:
        return None
    directory = index_dir(cache, sources)
    head = unseal(key, read_private(os.path.join(directory, "head.json"), MAX_INDEX_FILE))
    if head is None or not head_is_current(key, head, locations.config_files(sources)):
        return None
    name = profile or os.environ.get("TOKENFLOW_PROFILE") or head.get("only_profile")
    if not isinstance(name, str) or not name:
        return None
    entry = unseal(key, read_private(entry_path(directory, name), MAX_INDEX_FILE))
    if entry is None or not entry_is_current(key, entry, head, name):
        return None
    raw = read_private(entry["token_path"], MAX_INDEX_FILE)
    token = cachefile.decode(raw) if raw is not None else None
    return Found(entry, fmt, force, token)


def fresh_output(found: Found, token: dict[str, Any] | None, now: float) -> str | None:
    """What ``tokenflow token`` prints for *token* (a cache entry's token) if it is fresh at
    *now* by the profile's margin; ``None`` when it is not, or is anything unusual."""
    if token is None:
        return None
    try:
        expires_at = float(token["expires_at"])
        obtained_at = float(token.get("obtained_at", expires_at))
        access, token_type, scope = token["access_token"], token["token_type"], token.get("scope")
        # what Token.from_dict requires of a cache entry: anything else is the full path's to judge
        if not isinstance(access, str) or not isinstance(token_type, str) or not (
                scope is None or isinstance(scope, str)):
            return None
        if now >= refresh_at(expires_at, obtained_at, float(found.entry["margin"])):
            return None
        return output.render(found.format, access, token_type, expires_at, scope, now)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def cached_token_output(argv: Sequence[str], now: float | None = None) -> str | None:
    """The text ``tokenflow token`` would print, if it can be had from cache cheaply."""
    try:
        found = find_entry(argv)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # missing, damaged or unsafe: the full path reports what is wrong
    if found is None:
        return None
    return fresh_output(found, found.token, time.time() if now is None else now)
