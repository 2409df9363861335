"""The CLI's renewal path: refresh a file-store token from the index, without the config.

``tokenflow token PROFILE --force-refresh``, and the hourly renewal of a cached token (the
cached path hands over when the token is inside its refresh margin), used to load the YAML,
validate it, scan entry points, build pluggy's host and import every built-in plugin just to
send one refresh request: twice the cost of a urllib3 script doing that request. When the fast
path's index is current (the same proofs the cached path uses: the head and the profile's
entry), its entry also holds what a refresh needs (:meth:`tokenflow.cli.index_writer._Compiler.
renewal`, never a secret value), and this module renews from it:

1. take the file store's lock of the token (:func:`tokenflow.base.flock.acquire_lock_file`, the
   very lock the store's ``lock`` takes) and read the token file again under it: another
   process may have renewed meanwhile, and a fresh token is then printed (unless forced);
2. read the client secret where the config says (``{env: NAME}`` or ``{file: PATH}``);
3. build the request with the dialect's own function (:mod:`tokenflow.base.oauthforms`), send
   it with the project's :class:`~tokenflow.transport.Transport` (bounded reads, deadlines,
   retries, redaction) and parse the reply with :func:`~tokenflow.tokens.token_from_reply`;
4. save it as the store does (:func:`~tokenflow.base.files.write_atomic`, durable, the
   cache-file format) before printing it.

Anything else returns ``None`` and the full path answers, as if this path did not exist: no
refresh token, a refused refresh, a server or network error, a token file that is damaged or
unsafe, a lock that cannot be had, a secret that cannot be read. (On a terminal it draws the
full path's waiting line: :func:`tokenflow.cli.progress.watch_request`.) A refresh the server
refused, or that got no usable answer (the network, a 5xx after the retries), is handed over
with its failure (:func:`tokenflow.engine.session.note_failed_refresh`): the full path does not
ask again (see docs/renewal.md).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any

    from tokenflow.cli.fast.index import Found
    from tokenflow.errors import TokenRequestError, TransportError
    from tokenflow.tokens import Token
    from tokenflow.transport import RetryObserver

__all__ = ["renewed_token_output"]

ALLOW = ("force_refresh",)  # the renewal path honours --force-refresh; -v goes the full way


def renewed_token_output(argv: Sequence[str], setup_logging: Callable[[], None]) -> str | None:
    """What ``tokenflow token`` prints after renewing the token from the index, or ``None``.

    *setup_logging* installs the CLI's stderr log handler (warnings only, as the full path
    without ``-v``); it is called before anything that may log.
    """
    from tokenflow.cli.fast import index as fast

    try:
        found = fast.find_entry(argv, ALLOW)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    if found is None:
        return None
    record = found.entry.get("renew")
    if not isinstance(record, dict):
        return None
    if not found.force:
        text = fast.fresh_output(found, found.token, time.time())
        if text is not None:
            return text  # fresh after all (renewed since the cached path looked)
    if found.token is None or not found.token.get("refresh_token"):
        return None  # nothing to refresh with: the profile's grant runs on the full path
    setup_logging()
    with _collector_paused():
        return _renew(found, record)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the renewal imports urllib3 and the transport.

    Those imports create tens of thousands of long-lived objects, and each few hundred
    trigger a collection that finds nothing to free: about 5 ms of a renewal's CPU (measured
    with ``-c`` runs of the same imports, 21 interleaved rounds). The work is bounded (one
    request), and the collector is back on before anything else runs (a hand-over to the full
    path included); reference counting frees everything else meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _renew(found: Found, record: dict[str, Any]) -> str | None:
    from tokenflow.base.flock import acquire_lock_file, release_lock_file
    from tokenflow.cli import progress

    server = record["server"]
    # on a terminal, the full path's waiting line: from the lock (another process may be
    # renewing) to the reply, as the full path shows it around the session's work
    with progress.watch_request("token endpoint", str(record["token_url"]), str(server["name"]),
                                str(found.entry["profile"]), int(server["retries"])) as on_retry:
        try:
            fd = acquire_lock_file(str(record["lock_path"]), float(record["lock_timeout"]))
        except OSError:
            return None  # nothing was sent: the full path reports it in its own words
        if fd is None:  # held too long: the full path would say the same after the same wait
            from tokenflow.base.flock import timed_out_message
            from tokenflow.errors import StorageError

            raise StorageError(timed_out_message(str(found.entry["token_path"]),
                                                 float(record["lock_timeout"])))
        try:
            return _renew_locked(found, record, on_retry)
        finally:
            release_lock_file(fd)


def _renew_locked(found: Found, record: dict[str, Any], on_retry: RetryObserver) -> str | None:
    from pathlib import Path

    from tokenflow.base import cachefile, output
    from tokenflow.base.files import write_atomic
    from tokenflow.cli.fast import index as fast
    from tokenflow.errors import TokenflowError, TokenRequestError, TransportError
    from tokenflow.tokens import Token

    token_path = str(found.entry["token_path"])
    try:
        data = cachefile.read(token_path)  # again, under the lock: a sibling may have renewed
        token = None if data is None else Token.from_dict(data)
    except (OSError, ValueError):
        return None
    if token is None or not token.refresh_token:
        return None
    if not found.force:
        text = fast.fresh_output(found, data, time.time())
        if text is not None:
            return text
    try:
        secret = _client_secret(record["client_secret"])
    except (OSError, ValueError, LookupError):
        return None  # unset, unreadable: the full path says so in its own words
    try:
        new = _refresh(found, record, token.refresh_token, token.scope or record["scope"], secret,
                       on_retry)
    except TransportError as exc:
        # no usable answer (network, 5xx after the retries): the full path's session takes this
        # as its answer instead of asking again (it may serve a still-valid token, or report)
        _hand_over(token.refresh_token, exc)
        return None
    except TokenRequestError as exc:
        if exc.refused_refresh:  # the full path goes on: re-read the store, sign in again
            _hand_over(token.refresh_token, exc)
            return None
        raise  # answered and worded as the full path words it: asking again would spend more
    except (TokenflowError, LookupError, ValueError, TypeError):
        return None  # odd, before anything was sent: the full path tries and reports
    # the server has answered (and may have rotated the refresh token): never ask again
    from tokenflow.errors import StorageError

    fields = new.to_dict()
    problem = cachefile.time_problem(fields)
    if problem is not None:  # the file store's own words for a token it cannot keep
        raise StorageError(f"cannot store the token of {Path(token_path).name}: its {problem}")
    entry = cachefile.encode(fields)
    try:
        write_atomic(Path(token_path), entry)
    except OSError as exc:
        raise StorageError(f"cannot write {token_path}: {exc.strerror or exc}") from None
    return output.render(found.format, new.access_token, new.token_type, new.expires_at,
                         new.scope, time.time())


def _hand_over(refresh_token: str, failure: TokenRequestError | TransportError) -> None:
    """Leave the answer to the full path, with the failure it would have met itself."""
    from tokenflow.engine.session import note_failed_refresh

    note_failed_refresh(refresh_token, failure)


def _client_secret(spec: object) -> str | None:
    """The client secret from where the record says (``None``: a public client)."""
    if spec is None:
        return None
    from tokenflow.base.boundedread import read_secret_file
    from tokenflow.redact import remember_secret

    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError("not a secret source the renewal path reads")
    ((kind, where),) = spec.items()
    if kind == "env":
        value = os.environ[where]
    elif kind == "file":
        value = read_secret_file(where)
    else:
        raise ValueError("not a secret source the renewal path reads")
    remember_secret(value)  # pinned, like every resolved secret: scrubbed from any message
    return value


def _refresh(found: Found, record: dict[str, Any], refresh_token: str, scope: str | None,
             client_secret: str | None, on_retry: RetryObserver) -> Token:
    """The refresh-token grant (RFC 6749 section 6), as the session sends it; a refusal is
    worded as the session words it (:func:`~tokenflow.tokens.explain_request_error`)."""
    from tokenflow.base import oauthforms
    from tokenflow.errors import TokenRequestError
    from tokenflow.tokens import explain_request_error, token_from_reply
    from tokenflow.transport import Transport
    from tokenflow.wire import HttpRequest

    server = _Server(record)
    build = oauthforms.SHAPES[str(record["shape"])]  # the dialect's own (its request_shape)
    params = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    request = HttpRequest(*build(server.token_url, params, str(record["client_id"]),
                                 client_secret, str(record["client_auth"])))
    transport = Transport(server)
    try:
        sent_at = time.time()
        response = transport.send(request, on_retry=on_retry)
    finally:
        transport.close()
    try:
        return token_from_reply(response, now=sent_at,
                                default_lifetime=float(record["default_lifetime"]),
                                previous_refresh_token=refresh_token, requested_scope=scope)
    except TokenRequestError as exc:
        explain_request_error(exc, method=request.method, grant_type="refresh_token",
                              profile=str(found.entry["profile"]),
                              client=str(record["client_name"]), server=server.name)
        raise


class _Server:
    """The settings :class:`~tokenflow.transport.Transport` reads of a server
    (:class:`~tokenflow.transport.ServerSettings`), from the index's record: building the
    config model's ``ServerSpec`` would load the model's dataclasses for nothing. A record with
    configured headers, discovery or TLS verification off is never written, so those are fixed.
    """

    __slots__ = ("allow_insecure_http", "name", "retries", "timeout", "token_url", "verify")

    issuer = None
    headers: Mapping[str, str] = {}

    def __init__(self, record: dict[str, Any]) -> None:
        settings = record["server"]
        self.name = str(settings["name"])
        self.token_url = str(record["token_url"])
        self.timeout = float(settings["timeout"])
        self.retries = int(settings["retries"])
        verify = settings["verify"]
        if not (verify is True or isinstance(verify, str)):
            raise ValueError("TLS verification off is left to the full path")
        self.verify: bool | str = verify
        self.allow_insecure_http = settings["allow_insecure_http"] is True
