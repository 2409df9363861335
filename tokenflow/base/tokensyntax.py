"""What an access token may look like before tokenflow prints it or puts it in a header.

RFC 6750 section 2.1: ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``.
A token outside that set is refused wherever tokens enter: a server's reply, a token store and
the CLI's cached fast path. Otherwise a token holding CR/LF injects a header through
``curl -H "Authorization: Bearer $(tokenflow token p)"`` and escape sequences reach the terminal.

Standard library only, and no ``re``: the fast path imports this.
"""

from __future__ import annotations

__all__ = ["b64token_problem"]

_B64TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")
MAX_TOKEN_CHARS = 64 * 1024  # far beyond any real token (large JWTs are a few KiB)


def b64token_problem(token: str) -> str | None:
    """Why *token* is not an RFC 6750 ``b64token``, or ``None``; never quotes the token."""
    if not token:
        return "it is empty"
    if len(token) > MAX_TOKEN_CHARS:
        return f"it is over {MAX_TOKEN_CHARS} characters long"
    body = token.rstrip("=")
    if body and set(body) <= _B64TOKEN_CHARS:
        return None
    for index, char in enumerate(token):
        if char in _B64TOKEN_CHARS or (char == "=" and index >= len(body)):
            continue
        if char in "\r\n":
            what = "a line break"
        elif char < " " or "\x7f" <= char <= "\x9f":
            what = "a control character"
        elif char in " \t":
            what = "whitespace"
        elif char > "\x7e":
            what = "a non-ASCII character"
        else:
            what = f"the character {char!r}"
        return (f"it has {what} at position {index + 1}, outside the RFC 6750 token syntax "
                "(letters, digits and -._~+/ with trailing =)")
    return "it has '=' before its end"
