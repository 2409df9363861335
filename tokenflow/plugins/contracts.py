"""The contracts plugins implement: token stores, secret resolvers and dialects.

These are :class:`typing.Protocol` classes, so a plugin needs no base class: any object with
the right methods fits, and ``mypy`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tokenflow.tokens import Token
from tokenflow.wire import HttpRequest, HttpResponse

__all__ = [
    "Dialect",
    "DialectRegistrar",
    "FastPathStore",
    "FastRenewalStore",
    "Grant",
    "GrantContext",
    "GrantRegistrar",
    "HttpRequest",
    "HttpResponse",
    "PluginContext",
    "SecretResolver",
    "SecretWatch",
    "SourceRegistrar",
    "StoreFactory",
    "StoreRegistrar",
    "TokenStore",
    "Watched",
    "WriterAwareStore",
]


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a store factory or a secret resolver may need beyond its options.

    :param profile: the profile being served.
    :param base_dir: the directory of the file that defined the value, for relative paths.
    :param cache_dir: tokenflow's user cache directory (where the file store keeps tokens).
    :param interactive: whether the user can be asked (stdin is a TTY).
    """

    profile: str
    base_dir: Path
    cache_dir: Path
    interactive: bool = False


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens are kept between calls (and between processes, for shared stores).

    All methods must be safe to call from several threads at once.
    """

    def load(self, key: str) -> Token | None:
        """The token saved under *key*, or ``None``. A damaged entry is reported and
        treated as absent; it must never raise for bad data, only for an unusable store."""

    def save(self, key: str, token: Token) -> None:
        """Persist *token* under *key*, atomically: a reader sees the old or the new one."""

    def delete(self, key: str) -> None:
        """Forget *key*; deleting an absent key is not an error."""

    def lock(self, key: str) -> AbstractContextManager[object]:
        """Serialise refreshes of *key* across every process (or host) sharing the store."""


@runtime_checkable
class FastPathStore(Protocol):
    """An optional capability of a :class:`TokenStore`: its tokens can be read without it.

    The CLI's cached path (``tokenflow token`` answered in a few milliseconds) imports no plugin:
    it reads one file in tokenflow's cache-file format (:mod:`tokenflow.base.cachefile`). A store
    that keeps a key's token in such a file says where; any other store is simply not offered to
    the fast path, and the CLI takes the full path for its profiles.
    """

    def fast_path_file(self, key: str) -> str | None:
        """The absolute path of the cache file holding *key*'s token, or ``None``."""


@runtime_checkable
class WriterAwareStore(Protocol):
    """An optional capability of a :class:`TokenStore`: waiting for another process's renewal.

    When many processes find a token expiring at once, one takes ``lock(key)`` and renews; the
    others would take the lock one after the other just to read the new token, each woken only
    when the one before it lets go. A store that can wait for the holder *without* taking the
    lock (the file store waits for a shared ``flock``) lets them all wake together and read the
    token the holder saved; they take the lock only if it is still not fresh.
    """

    def wait_for_writer(self, key: str, timeout: float) -> bool:
        """Wait (at most *timeout* seconds) until no process holds *key*'s lock.

        Returns whether one did, so the caller should read the store again; ``False`` when
        nobody held it, or the wait timed out (the caller then takes the lock as usual).
        """


@runtime_checkable
class FastRenewalStore(Protocol):
    """An optional capability of a :class:`FastPathStore`: the CLI may renew its tokens itself.

    The CLI's renewal path (``tokenflow token --force-refresh``, or a cached token inside its
    refresh margin) refreshes without loading plugins. It can do so only for a store whose
    ``save`` is exactly: write the cache file (:mod:`tokenflow.base.cachefile` format) with
    :func:`tokenflow.base.files.write_atomic` while holding an exclusive ``flock`` of a lock
    file (:func:`tokenflow.base.flock.acquire_lock_file`), the same lock its ``lock`` takes.
    """

    def fast_renewal_files(self, key: str) -> tuple[str, str, float] | None:
        """``(token file, lock file, lock timeout in seconds)`` of *key*, or ``None``."""


@dataclass(frozen=True, slots=True)
class Watched:
    """What a secret's value depends on, so a cache of derived facts knows when it is stale.

    :param env: environment variables the value is read from.
    :param files: files the value is read from.
    :param verbatim: the value *is* the one variable's value, or the one file's content as
        :func:`tokenflow.base.boundedread.read_secret_file` reads it: a reader may take it from
        there without the plugin (the CLI's renewal path reads a client secret so).
    """

    env: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    verbatim: bool = False


StoreFactory = Callable[[Mapping[str, Any], PluginContext], TokenStore]
"""``factory(options, context) -> TokenStore``; options as written in the profile."""

SecretResolver = Callable[[Any, PluginContext], str]
"""``resolver(options, context) -> str``; raise CredentialError or ConfigError on failure."""

SecretWatch = Callable[[Any, PluginContext], Watched]
"""``watch(options, context) -> Watched``: what a ``cache_key_safe`` source's value depends on.

The CLI's fast path keys tokens by such a value (a username from ``{env: USER}``) and must
notice when it changes without calling any plugin: it re-checks what ``watch`` names. A
``cache_key_safe`` source without ``watch`` keeps its profiles on the full path."""


class Dialect(Protocol):
    """How one family of servers wants token requests shaped.

    :meth:`token_request` gets the grant's parameters (``grant_type`` first, then for example
    ``username``/``password`` or ``refresh_token``, and ``scope`` when configured) and the
    client credentials; it decides where each goes (query string, form body, Basic header).

    Optionally, a ``request_shape`` attribute names the shape in
    :data:`tokenflow.base.oauthforms.SHAPES` that its token requests are exactly: the CLI's
    renewal path then builds a refresh without loading the plugin.
    """

    name: str

    def token_request(
        self,
        token_url: str,
        params: Mapping[str, str],
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        """Build the token (or refresh) request."""

    def revoke_request(
        self,
        revoke_url: str,
        token: Token,
        client_id: str,
        client_secret: str | None,
        client_auth: str,
    ) -> HttpRequest:
        """Build the revocation request for *token*."""


class GrantContext(Protocol):
    """What the engine hands a grant when the profile needs a new token from scratch.

    The engine implements it; a grant only calls it. Refreshing is the engine's job, never a
    grant's: a grant runs when there is no token, or the refresh token was refused.

    :ivar profile: the profile's name (for messages).
    :ivar options: the grant's own profile keys as validated against its options schema; a key
        named in :attr:`Grant.secret_options` holds a secret *spec*: read it with :meth:`secret`.
    :ivar interactive: whether a person may be asked now (a terminal, ``--interactive``, or an
        embedding tool that passed a ``login`` callback). A grant that needs a person must raise
        :class:`~tokenflow.errors.ReauthenticationRequired` when this is false.
    :ivar client_id: the OAuth client's id.
    :ivar issuer: the server's issuer identifier (RFC 8414), when configured or discovered.
    """

    @property
    def profile(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def interactive(self) -> bool: ...

    @property
    def client_id(self) -> str: ...

    @property
    def issuer(self) -> str | None: ...

    @property
    def scope(self) -> str | None:
        """The profile's ``scope``: what an authorization or device request asks for (the
        engine adds it to token requests itself)."""

    def secret(self, key: str) -> str | None:
        """The value of a secret option (resolved once per session); ``None`` when not set."""

    def endpoint(self, name: str) -> str | None:
        """The URL of ``token``, ``authorization``, ``device_authorization`` or ``revocation``:
        written in the server's config, else discovered from its issuer; ``None`` if neither."""

    def request_token(self, params: Mapping[str, str]) -> Token:
        """Send a token request through the server's dialect and parse the reply.

        *params* start with ``grant_type``; the engine adds the profile's ``scope`` and extra
        ``params`` unless given, and authenticates the client as configured. Raises
        :class:`~tokenflow.errors.TokenRequestError` (with the OAuth ``error``) or
        :class:`~tokenflow.errors.TransportError`.
        """

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send any other request (a device authorization request, say) through the server's
        transport: TLS, proxies, deadlines and the body cap apply."""

    def clock(self) -> float:
        """The engine's clock (wall time in seconds; injectable in tests)."""

    def sleep(self, seconds: float) -> None:
        """Wait (interruptible; a fake clock in tests advances instead)."""

    def notify(self, message: str, *, url: str | None = None, user_code: str | None = None) -> None:
        """Tell the person what to do (open *url*, enter *user_code*): emits a ``login_required``
        event and calls the embedding tool's ``login`` callback, or writes to the terminal."""


class Grant(Protocol):
    """How a profile gets its first token (``grant: NAME``), registered by
    ``tokenflow_register_grants``.

    :ivar interactive: whether it needs a person (a browser, a device code). The CLI runs an
        interactive grant only when a person can answer, and says ``tokenflow login`` otherwise.
    :ivar secret_options: the profile keys that hold secrets (a literal or a secret source, as
        ``password`` does): they are validated as secrets, masked and resolved lazily.
    :ivar identity_options: the profile keys that tell users apart (``username``): they enter the
        cache key, so two users never share a token. Secret-valued ones enter by the rules of
        their source (by value only for cheap sources such as ``env`` and ``file``).
    """

    @property
    def interactive(self) -> bool: ...

    @property
    def secret_options(self) -> Collection[str]: ...

    @property
    def identity_options(self) -> Collection[str]: ...

    def obtain(self, context: GrantContext) -> Token:
        """Run the grant and return the new token (the engine saves it)."""


# -- the register(...) callables handed to the registration hooks ---------------------------
class StoreRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_stores``."""

    def __call__(
        self, name: str, factory: StoreFactory, options_schema: Mapping[str, Any] | None = None
    ) -> None: ...


class SourceRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_secret_sources``."""

    def __call__(
        self,
        name: str,
        resolver: SecretResolver,
        options_schema: Mapping[str, Any] | None = None,
        cache_key_safe: bool = False,
        watch: SecretWatch | None = None,
    ) -> None: ...


class GrantRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_grants``."""

    def __call__(
        self, name: str, grant: Grant, options_schema: Mapping[str, Any] | None = None
    ) -> None: ...


class DialectRegistrar(Protocol):
    """The ``register`` callable handed to ``tokenflow_register_dialects``."""

    def __call__(self, name: str, dialect: Dialect) -> None: ...
