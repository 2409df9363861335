"""Server endpoints from an issuer: OAuth 2.0 Authorization Server Metadata (RFC 8414).

A server written as ``issuer: https://login.example.com/realms/x`` (instead of, or besides, its
endpoint URLs) is looked up at ``/.well-known/oauth-authorization-server`` (RFC 8414 section 3,
inserted before the issuer's path), then at OpenID Connect's
``<issuer>/.well-known/openid-configuration``. The document's ``issuer`` must equal the
configured one exactly (section 3.3): otherwise a server could pass off another's endpoints.

Explicit keys always win over discovered ones. The metadata is cached in the cache directory
(a day by default), so a cached token never costs a metadata request, and a process that needs a
new token fetches it once a day at most; when an endpoint taken from it answers 404 the engine
fetches it again once (:meth:`Discovery.refresh_after_not_found`), for servers that moved.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from tokenflow.base import cachefile
from tokenflow.config.model import ServerSpec
from tokenflow.errors import ConfigError, TransportError
from tokenflow.plugins.contracts import HttpRequest, HttpResponse
from tokenflow.redact import get_logger
from tokenflow.wire import parse_server_url

__all__ = [
    "DEFAULT_MAX_AGE",
    "ENDPOINT_NAMES",
    "Discovery",
    "ServerMetadata",
    "metadata_urls",
    "parse_metadata",
]

log = get_logger("tokenflow.discovery")

DEFAULT_MAX_AGE: Final = 86400.0  # a day
MAX_CACHE_FILE: Final = 256 * 1024
CACHE_FORMAT: Final = 1

# endpoint name -> (metadata field, ServerSpec attribute of the explicit key)
ENDPOINT_NAMES: Final[Mapping[str, tuple[str, str]]] = {
    "token": ("token_endpoint", "token_url"),
    "authorization": ("authorization_endpoint", "authorization_url"),
    "device_authorization": ("device_authorization_endpoint", "device_authorization_url"),
    "revocation": ("revocation_endpoint", "revoke_url"),
}

Send = Callable[[HttpRequest], HttpResponse]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What tokenflow uses of an authorization server's metadata document."""

    issuer: str
    endpoints: Mapping[str, str] = field(default_factory=dict)  # by ENDPOINT_NAMES key
    auth_methods: tuple[str, ...] = ()  # token_endpoint_auth_methods_supported

    def client_auth(self) -> str | None:
        """``basic`` or ``body`` as the server advertises (basic first: RFC 8414's default)."""
        methods = self.auth_methods or ("client_secret_basic",)  # section 2: the default
        if "client_secret_basic" in methods:
            return "basic"
        if "client_secret_post" in methods:
            return "body"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "endpoints": dict(self.endpoints),
                "auth_methods": list(self.auth_methods)}


def metadata_urls(issuer: str) -> list[str]:
    """Where the metadata of *issuer* may be, in the order to try.

    RFC 8414 section 3.1 inserts the well-known segment between host and path; OpenID Connect
    Discovery appends it to the issuer.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(parts._replace(path=f"/.well-known/oauth-authorization-server{path}",
                                        query="", fragment=""))
    oidc = urlunsplit(parts._replace(path=f"{path}/.well-known/openid-configuration",
                                     query="", fragment=""))
    return [rfc8414, oidc]


def parse_metadata(body: bytes, issuer: str, where: str, *, allow_http: bool = False) -> ServerMetadata:
    """Read a metadata document and check it belongs to *issuer*.

    Raises :class:`~tokenflow.errors.TransportError` (not transient) for a document that is not
    a JSON object, names another issuer, or gives an endpoint that is not an absolute HTTPS URL.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise TransportError(f"the metadata at {where} is not a JSON object", transient=False)
    found = data.get("issuer")
    if found != issuer:
        raise TransportError(
            f"the metadata at {where} names issuer {ascii(found)[:200]}, not the configured "
            f"{issuer!r} "
            "(RFC 8414 section 3.3): check the server's issuer",
            transient=False,
        )
    endpoints: dict[str, str] = {}
    for name, (key, _) in ENDPOINT_NAMES.items():
        value = data.get(key)
        if value is None:
            continue
        # the same parser the transport connects with (tokenflow.wire): no user-info, no
        # backslashes, no whitespace or control characters, http only on loopback
        parsed = parse_server_url(value) if isinstance(value, str) else "it is not a string"
        if isinstance(parsed, str) or (parsed.scheme == "http" and not allow_http
                                       and not parsed.is_loopback):
            why = parsed if isinstance(parsed, str) else "plain http:// to a host not on loopback"
            raise TransportError(f"the metadata at {where} gives an unusable {key}: {why}",
                                 transient=False)
        endpoints[name] = value
    methods = data.get("token_endpoint_auth_methods_supported")
    auth_methods = tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else ()
    return ServerMetadata(issuer, endpoints, auth_methods)


class Discovery:
    """The endpoints of one server: explicit keys first, then its issuer's metadata.

    Thread-safe; the metadata is fetched at most once per process (and once a day across
    processes through the cache file) unless :meth:`refresh_after_not_found` asks again.
    """

    def __init__(
        self,
        server: ServerSpec,
        cache_dir: Path,
        send: Send,
        *,
        clock: Clock = time.time,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self.server = server
        self._cache_dir = cache_dir
        self._send = send
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._metadata: ServerMetadata | None = None
        self._refetched = False

    @property
    def issuer(self) -> str | None:
        return self.server.issuer

    # -- what the engine asks ------------------------------------------------------------------
    def explicit(self, name: str) -> str | None:
        """The endpoint written in the server's config, if any."""
        _, attribute = ENDPOINT_NAMES[name]
        value = getattr(self.server, attribute, None)
        return value if isinstance(value, str) and value else None

    def endpoint(self, name: str) -> str | None:
        """The URL of endpoint *name* (see :data:`ENDPOINT_NAMES`), or ``None``."""
        if name not in ENDPOINT_NAMES:
            raise ValueError(f"unknown endpoint {name!r}")
        explicit = self.explicit(name)
        if explicit is not None or self.issuer is None:
            return explicit
        return self.metadata().endpoints.get(name)

    def token_url(self) -> str:
        """The token endpoint; a :class:`~tokenflow.errors.ConfigError` when there is none."""
        url = self.endpoint("token")
        if url is None:
            raise ConfigError(
                f"server {self.server.name!r}: the metadata of {self.issuer!r} names no "
                "token_endpoint; write token_url"
            )
        return url

    def client_auth(self, written: str | None) -> str:
        """*written* when the config says; else what the metadata advertises; else ``basic``."""
        if written:
            return written
        if self.issuer is None:
            return "basic"
        return self.metadata().client_auth() or "basic"

    def discovered(self, name: str) -> bool:
        """Whether endpoint *name* comes from the metadata (so a 404 may mean it moved)."""
        return self.explicit(name) is None and self.issuer is not None

    def refresh_after_not_found(self) -> bool:
        """Fetch the metadata again after a discovered endpoint answered 404, once per process.

        Returns whether anything changed (so the request is worth repeating).
        """
        with self._lock:
            if self._refetched or self.issuer is None:
                return False
            self._refetched = True
            before = self._metadata
            self._metadata = self._fetch()
            self._save(self._metadata)
            return before is None or self._metadata.endpoints != before.endpoints

    def moved_after_not_found(self, url: str) -> str | None:
        """After *url* answered 404: if it is a discovered endpoint and the metadata, read again
        (:meth:`refresh_after_not_found`), now names another URL for it, that URL."""
        with self._lock:
            current = self._metadata
        if current is None:
            return None
        names = [name for name, value in current.endpoints.items()
                 if value == url and self.discovered(name)]
        if not names or not self.refresh_after_not_found():
            return None
        moved = self.metadata().endpoints.get(names[0])
        return moved if moved and moved != url else None

    def metadata(self) -> ServerMetadata:
        """The issuer's metadata: from memory, the cache file, or the server (then cached)."""
        with self._lock:
            if self._metadata is None:
                cached = self._load()
                if cached is None:
                    cached = self._fetch()
                    self._save(cached)
                self._metadata = cached
            return self._metadata

    # -- fetching ------------------------------------------------------------------------------
    def _fetch(self) -> ServerMetadata:
        issuer = self.issuer
        assert issuer is not None
        misses: list[str] = []
        for url in metadata_urls(issuer):
            response = self._send(HttpRequest("GET", url, {"Accept": "application/json"}))
            if response.status in (404, 410, 400, 403, 405):
                misses.append(f"{url} (HTTP {response.status})")
                continue
            if response.status != 200:
                raise TransportError(f"the metadata at {url} answered HTTP {response.status}",
                                     transient=response.status >= 500, status=response.status)
            log.debug("read the metadata of issuer %s from %s", issuer, url)
            return parse_metadata(response.body, issuer, url,
                                  allow_http=self.server.allow_insecure_http)
        raise TransportError(
            f"server {self.server.name!r}: no metadata for issuer {issuer!r} at "
            + ", ".join(misses) + "; write the endpoints (token_url...) instead",
            transient=False,
        )

    # -- the cache file ------------------------------------------------------------------------
    def _path(self) -> Path:
        issuer = self.issuer or ""
        name = cachefile.sha256(issuer.encode("utf-8")).hexdigest()[:32]
        return self._cache_dir / "discovery" / f"{name}.json"

    def _load(self) -> ServerMetadata | None:
        path = self._path()
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_CACHE_FILE + 1)
        except OSError:
            return None
        try:
            data = json.loads(raw) if len(raw) <= MAX_CACHE_FILE else None
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                return None
            fetched_at = float(data["fetched_at"])
            now = self._clock()
            if not (now - self._max_age < fetched_at <= now + 300):  # too old, or from the future
                return None
            meta = data["metadata"]
            issuer = self.issuer
            if issuer is None or meta["issuer"] != issuer:
                return None
            endpoints = {str(k): str(v) for k, v in dict(meta["endpoints"]).items()
                         if k in ENDPOINT_NAMES}
            return ServerMetadata(issuer, endpoints, tuple(str(m) for m in meta["auth_methods"]))
        except (ValueError, KeyError, TypeError):
            log.debug("ignored a damaged discovery cache entry %s", path.name)
            return None

    def _save(self, metadata: ServerMetadata) -> None:
        path = self._path()
        payload = json.dumps({"format": CACHE_FORMAT, "fetched_at": self._clock(),
                              "metadata": metadata.to_dict()}, sort_keys=True).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".discovery-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:  # a cache that cannot be written costs a fetch next time, no more
            log.debug("could not cache the metadata of %s: %s", self.issuer, exc.strerror)

