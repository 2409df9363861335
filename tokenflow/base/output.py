"""How ``tokenflow token`` prints a token, shared by the fast path and the full CLI.

Standard library only, and no ``datetime`` or ``shlex`` (import time matters on the fast path);
``json`` is imported only by the formats that print JSON (importing it costs about 1.5 ms).
The refresh token is never printed in any format.
"""

from __future__ import annotations

import time

from tokenflow.base.cachefile import LATEST_TIME

FORMATS = ("raw", "json", "header", "env", "exec-credential")




def _clamp(epoch: float) -> float:
    """*epoch* inside what ``time.gmtime`` and RFC 3339 can express (NaN reads as 0).

    A cache file or a server may hold any number (``1e308``, ``inf``, ``NaN``): printing it must
    not be what fails.
    """
    if epoch != epoch:  # NaN
        return 0.0
    return min(max(epoch, 0.0), float(LATEST_TIME))


def iso_utc(epoch: float) -> str:
    """``2026-11-28T08:33:37Z``: ISO 8601 / RFC 3339 in UTC, whole seconds (clamped to
    1970-01-01..9999-12-31)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_clamp(epoch)))


def shell_quote(value: str) -> str:
    """Quote *value* for POSIX shells (single quotes; embedded quotes closed and escaped)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def render(
    fmt: str,
    access_token: str,
    token_type: str,
    expires_at: float,
    scope: str | None,
    now: float,
) -> str:
    """The text to print for *fmt* (one of :data:`FORMATS`), with a trailing newline.

    Raises ``ValueError`` for a token outside the RFC 6750 syntax or of a type other than
    Bearer (a tampered cache file read by the fast path, which then defers to the full path).
    """
    from tokenflow.base.tokensyntax import b64token_problem

    if b64token_problem(access_token) is not None or token_type.lower() != "bearer":
        raise ValueError("not a printable Bearer token")
    expires_at = _clamp(expires_at)
    if fmt == "raw":
        return access_token + "\n"
    if fmt == "header":
        return f"Authorization: Bearer {access_token}\n"
    if fmt == "json":
        import json

        return json.dumps({
            "access_token": access_token,
            "token_type": token_type,
            "expires_at": iso_utc(expires_at),
            "expires_in": max(0, int(expires_at - now)),
            "scope": scope,
        }) + "\n"
    if fmt == "env":
        return (
            f"export TOKENFLOW_ACCESS_TOKEN={shell_quote(access_token)}\n"
            f"export TOKENFLOW_EXPIRES_AT={shell_quote(iso_utc(expires_at))}\n"
        )
    if fmt == "exec-credential":
        import json

        return json.dumps({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": access_token, "expirationTimestamp": iso_utc(expires_at)},
        }) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
