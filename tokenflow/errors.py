"""The exceptions tokenflow raises, one tree under :class:`TokenflowError`.

::

    TokenflowError                     every error tokenflow raises on purpose
    ├── ConfigError                    bad profile file, unknown profile, unset ${VAR} (CLI exit 2)
    ├── CredentialError                a secret source failed: command exit, no keyring (exit 1)
    ├── TokenRequestError              the server refused: RFC 6749 section 5.2 (exit 1)
    │   └── ReauthenticationRequired   refresh refused and no credentials to grant again
    ├── TransportError                 no answer: DNS, refused, TLS, timeout (exit 4); an answer
    │                                  that cannot be used: 5xx/429 after retries, redirect (exit 1)
    ├── StorageError                   the token store failed (exit 1)
    └── PluginError                    a plugin could not be loaded or misbehaved (exit 2)

Every message is written to be shown to a user as one line and never carries a secret: the
server's ``error_description`` is scrubbed of the tokens it may repeat, and response excerpts are
truncated and scrubbed the same way.

CLI exit codes (``tokenflow --help`` shows them too): 0 success; 1 the server or a credential
refused, or the server's answer could not be used; 2 bad usage or config; 3 a bug; 4 a network
failure (no answer: DNS, connection refused, TLS, timeout); 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "REFUSED_REFRESH_ERRORS",
    "ConfigError",
    "ConfigIssue",
    "CredentialError",
    "PluginError",
    "ReauthenticationRequired",
    "StorageError",
    "TokenRequestError",
    "TokenflowError",
    "TransportError",
    "did_you_mean",
]

EXIT_NETWORK = 4


class TokenflowError(Exception):
    """Root of every error tokenflow raises on purpose.

    ``exit_code`` is what the CLI exits with when this error stops it.
    """

    exit_code = 1


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, located as precisely as the source allows.

    ``line`` and ``column`` are 1-based; 0 means unknown (for example a problem with the whole
    file, or a value that came from a mapping rather than a file).
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where = f"{where}:{self.line}:{self.column}"
        # an issue with no place (unknown profile, unset {env: NAME}) is just its message
        return ": ".join(part for part in (where, self.path, self.message) if part)


class ConfigError(TokenflowError):
    """The configuration cannot be used; ``issues`` lists every problem found at once."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue("", 0, 0, "", issues)]
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @property
    def first_line(self) -> str:
        """The first problem, with a count of the others: what a one-line CLI error shows."""
        first = str(self.issues[0]) if self.issues else "invalid configuration"
        more = len(self.issues) - 1
        return f"{first} (and {more} more)" if more > 0 else first


class CredentialError(TokenflowError):
    """A secret source could not produce its value (command failed, no keyring, no TTY...)."""


class TokenRequestError(TokenflowError):
    """The token server answered with an error (RFC 6749 section 5.2) or an unusable body.

    ``error`` and ``error_description`` are the server's fields (scrubbed of any token the
    server repeats), ``status`` the HTTP status, ``body_excerpt`` a short, scrubbed excerpt of
    the body for the cases where the server did not answer with OAuth JSON at all.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        status: int | None = None,
        body_excerpt: str = "",
    ) -> None:
        self.error = error
        self.error_description = error_description
        self.status = status
        self.body_excerpt = body_excerpt
        super().__init__(message)

    @property
    def refused_refresh(self) -> bool:
        """Whether the server refused the refresh token itself (RFC 6749 section 5.2:
        ``invalid_grant``; some servers say ``invalid_token``), rather than anything else: the
        one answer after which signing in again, not retrying, is what helps."""
        return self.error in REFUSED_REFRESH_ERRORS


REFUSED_REFRESH_ERRORS = frozenset({"invalid_grant", "invalid_token"})


class ReauthenticationRequired(TokenRequestError):
    """The refresh token was refused and the profile has no credentials to run its grant."""


class TransportError(TokenflowError):
    """The request could not be completed: DNS, connect, TLS, timeout, or retries spent.

    ``transient`` tells the engine whether trying later could succeed, which decides whether a
    still-valid token may be handed out instead of failing.
    """

    def __init__(self, message: str, *, transient: bool = True, status: int | None = None) -> None:
        self.transient = transient
        self.status = status
        # no HTTP status: the server never answered (DNS, refused, TLS, timeout), which scripts
        # want to tell apart from a refusal; an answer that could not be used stays 1
        self.exit_code = EXIT_NETWORK if status is None else 1
        super().__init__(message)


class StorageError(TokenflowError):
    """The token store could not read or write (permissions, unsafe file, backend missing)."""


class PluginError(TokenflowError):
    """A plugin could not be loaded, or implements a hook tokenflow does not know."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str], *, noun: str, listing: str = "",
                 limit: int = 8) -> str:
    """The tail of an "unknown NAME" message: the closest names, then a capped list of choices.

    ``"; did you mean 'prod'? (profiles: dev, prod, ... and 980 more; see `tokenflow profiles`)"``.
    The list is capped at *limit* names so a config with a thousand profiles still gets a
    one-line error; *listing* names the command that shows them all.
    """
    import difflib

    names = sorted(set(choices))
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    text = ""
    if close:
        text = "; did you mean " + " or ".join(repr(name) for name in close) + "?"
    if not names:
        return f"{text}; there are no {noun}"
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    if more > 0:
        shown += f", ... and {more} more" + (f"; see `{listing}`" if listing else "")
    return f"{text} ({noun}: {shown})" if close else f"; {noun}: {shown}"
