"""Keep secrets out of everything a human or a log collector can see.

Three layers, because each catches what the others cannot:

* :class:`Secret` holds a password, client secret or token; its ``repr``/``str`` are masked, so a
  secret that ends up in an f-string, a dataclass repr or a traceback's locals shows ``***``.
* :func:`scrub` removes secrets from free text by *shape* (``password=...`` in query strings and
  form bodies, ``Authorization:`` headers, JSON token fields) and by *value* (every secret value
  this process has seen is remembered and replaced wherever it appears, whatever the shape).
* :class:`ScrubbingFilter` applies :func:`scrub` to log records. :func:`install_log_filters`
  attaches it to the ``tokenflow`` and ``urllib3`` loggers, because urllib3 logs the full request
  URL at DEBUG and Team Server carries the password in that URL's query string.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from typing import Final
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "REPLY_SECRET_FIELDS",
    "ScrubbingFilter",
    "Secret",
    "excerpt",
    "install_log_filters",
    "printable",
    "remember_reply_secrets",
    "remember_secret",
    "scrub",
]

MASK: Final = "***"

_SECRET_NAMES = (
    r"password|passwd|client[_-]?secret|secret|(?:access|refresh|id)[_-]?token|token|"
    r"assertion|code[_-]?verifier|api[_-]?key"
)
# the fields of a token endpoint's reply that are secrets, whatever else the reply says
REPLY_SECRET_FIELDS: Final = ("access_token", "refresh_token", "id_token")


class _ShapePatterns:
    """The patterns that recognise secrets by shape, compiled on first use.

    Compiling them costs several milliseconds (the case-insensitive alternations above all),
    which every ``tokenflow`` process would pay at import even when nothing is ever scrubbed:
    the CLI's renewal path sends one request and scrubs only if something goes wrong.
    """

    def __init__(self) -> None:
        # key=value in query strings and form bodies (also key: value, key="value", and Python
        # reprs: 'key': 'value', where a quote closes the key before the separator)
        self.kv = re.compile(
            rf"(?i)(?P<key>\b(?:{_SECRET_NAMES})\b[\"']?)(?P<sep>\s*[=:]\s*)(?P<q>[\"']?)"
            rf"(?P<val>[^&\s\"',;)}}\]]+)"
        )
        # JSON: "key": "value", escaped quotes inside the value included
        self.json = re.compile(
            rf"(?i)(?P<key>\"(?:{_SECRET_NAMES})\"\s*:\s*\")(?P<val>(?:[^\"\\]|\\.)*)(?P<end>\"?)"
        )
        # Authorization / Proxy-Authorization headers, in any case, and bare "Bearer xyz" /
        # "Basic xyz"
        self.auth = re.compile(
            r"(?i)\b(?P<scheme>bearer|basic)(?P<sp>\s+)(?P<val>[A-Za-z0-9._~+/=-]+)")
        # Team Server revocation puts the access token in the path: /api/revoketoken/<token>
        self.revoke_path = re.compile(r"(?i)(?P<key>/revoketoken/)(?P<val>[^/?\s\"']+)")


_shapes: _ShapePatterns | None = None


def _shape_patterns() -> _ShapePatterns:
    global _shapes
    if _shapes is None:
        _shapes = _ShapePatterns()  # a race only compiles them twice
    return _shapes


_URL_SAFE: Final = re.compile(r"[A-Za-z0-9._~-]+")
_MIN_REMEMBERED = 4  # shorter values would scrub ordinary words out of messages

_MAX_TRANSIENT = 256  # tokens rotate; remembering every one forever would grow without bound

_known_lock = threading.Lock()
_pinned: set[str] = set()  # passwords and client secrets: remembered for the process's life
_transient: dict[str, None] = {}  # tokens, oldest first
_known_pattern: re.Pattern[str] | None = None
_known_changed = False  # the pattern is rebuilt by the next scrub(), not by every new token


def remember_secret(value: str, *, pinned: bool = True) -> None:
    """Add *value* to the secrets :func:`scrub` replaces wherever they appear.

    Pinned values (passwords, client secrets) stay for the life of the process; unpinned ones
    (tokens) are kept for the most recent few hundred, which covers every token still valid.
    Cheap: the pattern of known values is compiled when :func:`scrub` next needs it (compiling
    hundreds of alternatives takes milliseconds, and every refresh brings a new token).
    """
    global _known_changed
    if len(value) < _MIN_REMEMBERED or value in _pinned or (not pinned and value in _transient):
        return
    # the URL-encoded forms appear in query strings and form bodies (tokens seldom need them)
    forms = {value} if _URL_SAFE.fullmatch(value) else {value, quote(value, safe=""), quote_plus(value)}
    with _known_lock:
        for form in forms:
            if pinned:
                _pinned.add(form)
                _transient.pop(form, None)
            else:
                _transient[form] = None
        while len(_transient) > _MAX_TRANSIENT:
            del _transient[next(iter(_transient))]
        _known_changed = True


def _known_values_pattern() -> re.Pattern[str] | None:
    global _known_pattern, _known_changed
    if _known_changed:
        with _known_lock:
            if _known_changed:
                # longest first, so a secret that contains another is replaced whole
                alternatives = sorted(_pinned | _transient.keys(), key=len, reverse=True)
                _known_pattern = (re.compile("|".join(re.escape(v) for v in alternatives))
                                  if alternatives else None)
                _known_changed = False
    return _known_pattern


def scrub(text: str) -> str:
    """Return *text* with every recognisable secret replaced by ``***``."""
    pattern = _known_values_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    # JSON first: it knows escaped quotes, which would end the key=value pattern's value early
    shapes = _shape_patterns()
    text = shapes.json.sub(lambda m: f"{m['key']}{MASK}{m['end']}", text)
    text = shapes.kv.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)
    text = shapes.auth.sub(lambda m: f"{m['scheme']}{m['sp']}{MASK}", text)
    text = shapes.revoke_path.sub(lambda m: f"{m['key']}{MASK}", text)
    # A secret that contains the mask ("pa***") can be re-formed by a replacement next to it;
    # repeat until none is left (each pass shortens the text: secrets are longer than the mask).
    while pattern is not None and MASK in text and pattern.search(text):
        text = pattern.sub(MASK, text)
    return text


def remember_reply_secrets(data: object) -> None:
    """Remember the token values of a decoded reply (a JSON object or form fields) as secrets.

    Called on every reply before any message is built from it: a server that answers an
    error *and* a token, or repeats the token in ``error_description``, must not see it echoed.
    """
    if isinstance(data, dict):
        for name in REPLY_SECRET_FIELDS:
            value = data.get(name)
            if isinstance(value, str):
                remember_secret(value, pinned=False)


_UNPRINTABLE_CLASS: Final = r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]"
_unprintable: re.Pattern[str] | None = None


def printable(text: str) -> str:
    """*text* with every control character (C0, DEL, C1, line breaks) and other non-printing
    code point replaced by ``?``: what a server sends must not drive the terminal.

    The pattern is compiled on first use: its character class takes 7 ms to compile, which
    a run that prints nothing a server sent (a cache hit, a renewal) should not pay."""
    global _unprintable
    if text.isascii() and text.isprintable():
        return text  # the common case, and exactly what the pattern keeps of ASCII (20-7e)
    if _unprintable is None:
        _unprintable = re.compile(_UNPRINTABLE_CLASS)
    return _unprintable.sub("?", text)


def excerpt(body: bytes | str, limit: int = 200) -> str:
    """A one-line, secret-free, printable excerpt of a reply of at most *limit* characters.

    Scrubbed *before* it is cut: a token cut at the boundary would otherwise leave its prefix,
    which no pattern recognises any more. Scrubbing costs time in proportion to the text, so
    a hostile megabyte is first cut to :data:`_EXCERPT_WINDOW` characters; a secret the cut
    splits can only be in the last :data:`_LONGEST_SECRET` characters of the scrubbed window
    (nothing follows it), so those are dropped after scrubbing.
    """
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    if isinstance(body, bytes):
        import json

        with contextlib.suppress(ValueError, RecursionError):
            remember_reply_secrets(json.loads(text))
    if len(text) > _EXCERPT_WINDOW:
        text = scrub(text[:_EXCERPT_WINDOW])
        text = text[: max(0, len(text) - _LONGEST_SECRET)]
    else:
        text = scrub(text)
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"


_LONGEST_SECRET: Final = 64 * 1024 + 1  # the longest token tokenflow accepts, and one more
_EXCERPT_WINDOW: Final = 3 * _LONGEST_SECRET


class Secret:
    """A string that must never be shown: ``repr`` and ``str`` print ``***``.

    Call :meth:`reveal` at the one place the value is really needed (building a request).
    Creating a Secret remembers its value so :func:`scrub` can remove it from any text.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        """The secret value itself; keep it out of messages."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


class ScrubbingFilter(logging.Filter):
    """Rewrite a record's message with :func:`scrub` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: keep the record, drop its arguments
            message = str(record.msg)
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # the handler formats the traceback later; pre-render it scrubbed
            formatter = logging.Formatter()
            record.exc_text = scrub(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER: Final = ScrubbingFilter()
_installed: set[str] = set()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the scrubbing filter attached: every tokenflow module
    logs through one of these, so its records are clean before any handler (Python's fallback
    handler included) sees them."""
    logger = logging.getLogger(name)
    if name not in _installed:
        logger.addFilter(_FILTER)
        _installed.add(name)
    return logger


def scrub_traceback(text: str) -> str:
    """Scrub a formatted traceback: known secret values everywhere, patterns only in messages.

    Source lines (indented by four spaces) are code such as ``token = session.token()``, which
    the ``key = value`` pattern would mangle; they hold no secret values, and known values are
    still removed from them.
    """
    pattern = _known_values_pattern()
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("    ") and not line.startswith("     "):
            lines.append(pattern.sub(MASK, line) if pattern is not None else line)
        else:
            lines.append(scrub(line))
    return "".join(lines)


def install_log_filters(*libraries: str) -> None:
    """Attach the scrubbing filter to urllib3's loggers, and those of *libraries* (for example
    ``"httpx", "httpcore"``, whose loggers show request URLs that may carry a query-placed
    token); idempotent. tokenflow's own loggers get it from :func:`get_logger`.

    A logger's filters only see records logged *to that logger*, not to its children, so the
    filter goes on every ``urllib3.*`` logger that exists once urllib3 has been imported.
    """
    prefixes = ("urllib3", *libraries)
    names = [*prefixes, *(n for n in logging.root.manager.loggerDict
                          if n.startswith(tuple(f"{p}." for p in prefixes)))]
    for name in names:
        if name not in _installed:
            logging.getLogger(name).addFilter(_FILTER)
            _installed.add(name)
