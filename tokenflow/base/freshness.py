"""The one freshness rule, shared by the engine and the CLI's fast path.

A token is refreshed *margin* seconds before it expires, but never earlier than half-way through
its life: a server that issues five-minute tokens and a profile with a ten-minute margin must
not cause a refresh on every call.
"""

from __future__ import annotations

__all__ = ["refresh_at"]


def refresh_at(expires_at: float, obtained_at: float, margin: float) -> float:
    """When a token obtained at *obtained_at* and expiring at *expires_at* should be renewed."""
    return expires_at - min(margin, max(expires_at - obtained_at, 0.0) / 2)
