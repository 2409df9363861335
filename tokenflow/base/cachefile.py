"""The on-disk format of one cached token, shared by the file store and the CLI's fast path.

Kept free of heavy imports (only ``os``, ``stat`` and :mod:`tokenflow.base.boundedread`) because
the fast path reads it before anything else is loaded: SHA-256 comes from the interpreter's
built-in module, since ``hashlib`` loads OpenSSL (2-3 ms and a few MB of resident memory on every
``tokenflow token``), and JSON is read and written by the C accelerator of the ``json`` package
(``_json``), since importing the package compiles half a dozen regular expressions (1.5 ms).
:func:`loads` and :func:`dumps_canonical` give exactly ``json``'s results and fall back to it
for anything unusual. An entry is::

    {"format": 1, "checksum": "sha256:<hex of the canonical token JSON>", "token": {...}}

The checksum catches truncation and bit rot; the ``format`` number lets a later version change
the layout without misreading old files.
"""

from __future__ import annotations

import os
import stat

from tokenflow.base import boundedread

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import; annotations here are strings
    from typing import Any


def _find_sha256() -> Any:
    """The built-in SHA-256 constructor (``_sha2`` from 3.12, ``_sha256`` before), else hashlib's.

    Same digests as ``hashlib.sha256``; hashlib is the fallback for builds without the built-in
    hashes (some FIPS builds).
    """
    import sys

    for name in ("_sha2", "_sha256") if sys.version_info >= (3, 12) else ("_sha256",):
        try:
            return __import__(name).sha256
        except (ImportError, AttributeError):
            continue
    import hashlib  # pragma: no cover - builds without the built-in hashes

    return hashlib.sha256  # pragma: no cover


sha256 = _find_sha256()


# -- JSON through the json package's C accelerator -------------------------------------------
class _DecoderContext:
    """What ``_json.make_scanner`` reads from a default ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _canonical_encoder() -> Any:
    """The encoder ``json.dumps(value, sort_keys=True, separators=(",", ":"))`` builds."""
    import _json

    # a new one per call, as json.dumps does: its circular-reference markers are per call
    return _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None,
                              ":", ",", True, False, True)


def _accelerator() -> tuple[Any, Any]:
    try:
        import _json

        context: Any = _DecoderContext()  # duck-typed: the stub asks for a JSONDecoder
        scanner = _json.make_scanner(context)
        _canonical_encoder()
        return scanner, _canonical_encoder
    except Exception:  # pragma: no cover - another Python: the json package does it all
        return None, None


_scan_once, _make_canonical_encoder = _accelerator()
_JSON_SPACE = " \t\n\r"


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``, without importing the json package for well-formed UTF-8 JSON."""
    if _scan_once is not None:
        try:
            text = raw.decode("utf-8")
            start = len(text) - len(text.lstrip(_JSON_SPACE))
            value, end = _scan_once(text, start)
            if end == len(text.rstrip(_JSON_SPACE)):
                return value
        except Exception:  # noqa: S110 - json.loads below raises the right error, or reads
            pass  # an encoding UTF-8 cannot (the scanner's own errors need json.decoder loaded)
    import json

    return json.loads(raw)


def dumps_canonical(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"))``."""
    if _make_canonical_encoder is not None:
        try:
            return "".join(_make_canonical_encoder()(value, 0))
        except Exception:  # noqa: S110 - json.dumps below raises the same error, its own way
            pass
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"))


FORMAT = 1
LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: no token expires later


class CorruptEntry(ValueError):
    """The file exists but is not a valid entry of this format (truncated, foreign, damaged)."""


class UnsafeEntry(PermissionError):
    """The file is writable by others or owned by someone else: reading it would trust them."""


def _canonical(token: dict[str, Any]) -> bytes:
    return dumps_canonical(token).encode()


def encode(token: dict[str, Any]) -> bytes:
    """Serialise a token dict (``Token.to_dict()``) with its format number and checksum.

    One line of canonical JSON: the token object is encoded once, for the checksum and the
    entry alike (an indented copy went through the pure-Python encoder and cost as much as
    the rest of a save's CPU work). Readers parse JSON, so entries written indented by older
    versions read the same. Writers check :func:`time_problem` first: an entry whose times no
    reader accepts is damaged for every reader but the one that wrote it.
    """
    body = _canonical(token)
    checksum: str = sha256(body).hexdigest()
    head = f'{{"checksum":"sha256:{checksum}","format":{FORMAT},"token":'
    return head.encode() + body + b"}\n"


def decode(raw: bytes) -> dict[str, Any]:
    """Parse and verify an entry; raise :class:`CorruptEntry` on anything unexpected."""
    try:
        entry = loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptEntry(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(entry, dict):
        raise CorruptEntry("not a JSON object")
    if entry.get("format") != FORMAT:
        raise CorruptEntry(f"unknown format {entry.get('format')!r}")
    token = entry.get("token")
    if not isinstance(token, dict):
        raise CorruptEntry("no token object")
    expected = "sha256:" + sha256(_canonical(token)).hexdigest()
    if entry.get("checksum") != expected:
        raise CorruptEntry("checksum mismatch")
    problem = time_problem(token)
    if problem is not None:
        raise CorruptEntry(problem)
    return token


def time_problem(token: dict[str, Any]) -> str | None:
    """Why :func:`decode` would refuse *token*'s times, or ``None``."""
    for name in ("expires_at", "obtained_at"):
        # NaN compares false with everything, so it would look fresh for ever; 1e308 breaks
        # every date formatter: such an entry is damaged, whoever wrote it
        value = token.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 <= value <= LATEST_TIME:
            return f"{name} is not a time between 1970 and 9999"
    return None


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


MAX_ENTRY_BYTES = 1 << 20  # a token entry is a few KB; a bigger file is not ours


def read_raw(path: str) -> bytes | None:
    """The bytes of the entry at *path*, ``None`` if absent; raises CorruptEntry or UnsafeEntry.

    A symlink, a FIFO, a device or a directory at *path* is refused as unsafe (opening never
    waits, see :mod:`tokenflow.base.boundedread`); a file over :data:`MAX_ENTRY_BYTES` is corrupt.
    """
    try:
        return boundedread.read_limited(path, MAX_ENTRY_BYTES, follow_symlinks=False,
                                        check=lambda st: check_safe(st, path))
    except FileNotFoundError:
        return None
    except boundedread.NotRegularFile as exc:
        raise UnsafeEntry(f"refusing to read {exc}; delete it") from None
    except boundedread.FileTooLarge as exc:
        raise CorruptEntry(str(exc)) from None


def read(path: str) -> dict[str, Any] | None:
    """The verified token dict at *path* (:func:`read_raw`, then :func:`decode`)."""
    raw = read_raw(path)
    return None if raw is None else decode(raw)
