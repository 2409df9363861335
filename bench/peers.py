"""The clients the ``fetch`` and ``refresh`` benchmarks compare: the same grant, done by each.

* ``urllib3 (floor)``: a bare ``urllib3.PoolManager`` POST of the same form plus ``json.loads``;
* ``urllib3 + floor write``: the same, then :func:`floors.floor_write` of the reply (the floor
  of any client that keeps its token on disk);
* ``tokenflow``: ``session.force_refresh()`` with the memory store;
* ``tokenflow file store (N files)``: the same with the default file store, in a token
  directory holding N token files (3, and 10,000: a save must not cost more with more files);
* ``requests-oauthlib`` and ``Authlib`` when installed (``LegacyApplicationClient`` /
  ``grant_type="password"``), against the same server.

Each client is an :class:`Op`: the call that is timed and an optional untimed ``prepare`` (a
fetch must start from an empty cache: the token file is removed, as before a first fetch).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from fixtures import PROFILE, ServerInfo, mapping_config
from floors import floor_write
from harness import peer_available


@dataclass(frozen=True)
class Op:
    """One client's way to do the benchmarked request; ``prepare`` runs untimed before it."""

    call: Callable[[], str]
    prepare: Callable[[], None] | None = None


FLOOR = "urllib3 (floor)"
FLOOR_WRITE = "urllib3 + floor write"


def file_store_label(files: int) -> str:
    return f"tokenflow file store ({files:,} files)"


class HttpClients:
    """The same password grant and refresh, done by each client under test."""

    def __init__(self, server: ServerInfo, work: Path, result_notes: list[str],
                 token_file_counts: tuple[int, ...] = ()) -> None:
        self.server = server
        self.client_id, self.secret = server.client_id, server.client_secret
        self.username, self.password = server.username, server.password
        self.url = server.token_url
        self.fetchers: dict[str, Op] = {}
        self.refreshers: dict[str, Op] = {}
        self.closers: list[Callable[[], None]] = []
        work.mkdir(parents=True, exist_ok=True)
        self._floor(work)
        self._tokenflow(work, "tokenflow", "memory")
        for files in token_file_counts:
            self._tokenflow_file_store(work, files)
        self._requests_oauthlib(result_notes)
        self._authlib(result_notes)

    def _floor(self, work: Path) -> None:
        import urllib3

        pool = urllib3.PoolManager()
        pair = f"{self.client_id}:{self.secret}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Authorization": "Basic " + base64.b64encode(pair).decode()}
        grant = urlencode({"grant_type": "password", "username": self.username,
                           "password": self.password})
        state: dict[str, str] = {}
        target = work / "floor-token.json"

        def fetch_data() -> dict[str, str]:
            data: dict[str, str] = json.loads(
                pool.request("POST", self.url, body=grant, headers=headers).data)
            state["refresh"] = data["refresh_token"]
            return data

        def refresh_data() -> dict[str, str]:
            if "refresh" not in state:
                fetch_data()
            body = urlencode({"grant_type": "refresh_token", "refresh_token": state["refresh"]})
            data: dict[str, str] = json.loads(
                pool.request("POST", self.url, body=body, headers=headers).data)
            return data

        def written(data: dict[str, str]) -> str:
            floor_write(target, json.dumps(data).encode())
            return data["access_token"]

        self.fetchers[FLOOR] = Op(lambda: fetch_data()["access_token"])
        self.refreshers[FLOOR] = Op(lambda: refresh_data()["access_token"])
        self.fetchers[FLOOR_WRITE] = Op(lambda: written(fetch_data()))
        self.refreshers[FLOOR_WRITE] = Op(lambda: written(refresh_data()))
        self.closers.append(pool.clear)

    def _tokenflow(self, work: Path, label: str, store: object) -> None:
        config = mapping_config(self.server, "rfc6749", work / label.replace(" ", "-"), store)
        session = config.session(PROFILE)
        key = session.cache_key

        path_of = getattr(session.store, "path", None)

        def empty() -> None:  # nothing cached: force_refresh() runs the grant
            if path_of is None:
                session.store.delete(key)
            else:
                # the state a first fetch meets: no file. Not store.delete(): logout also lists
                # the directory for a killed writer's temporary files, and on ext4 listing a
                # 10,000-file directory makes the next write in it 3 to 6 ms slower
                Path(path_of(key)).unlink(missing_ok=True)

        def refresh() -> str:
            return session.force_refresh().access_token  # a refresh token is cached: refresh

        self.fetchers[label] = Op(refresh, prepare=empty)
        self.refreshers[label] = Op(refresh)
        self.closers.append(config.close)

    def _tokenflow_file_store(self, work: Path, files: int) -> None:
        """A file store whose directory holds *files* token files (this profile's among them)."""
        from tokenflow.base import cachefile
        from tokenflow.tokens import Token

        directory = work / f"tokens-{files}"
        directory.mkdir(mode=0o700)
        entry = cachefile.encode(Token("at-other-profile", "Bearer", 4e9, 1.7e9,
                                       "rt-other-profile").to_dict())
        for _ in range(files - 1):  # the others; the profile's own is saved by the warm-ups
            fd = os.open(directory / f"{secrets.token_hex(16)}.json",
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, entry)
            os.close(fd)
        self._tokenflow(work, file_store_label(files), {"file": {"path": str(directory)}})

    def _requests_oauthlib(self, notes: list[str]) -> None:
        if not (peer_available("requests_oauthlib") and peer_available("oauthlib")):
            notes.append("requests-oauthlib is not installed: comparison skipped")
            return
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the embedded server is plain HTTP
        oauthlib2 = importlib.import_module("oauthlib.oauth2")
        ro = importlib.import_module("requests_oauthlib")
        auth_mod = importlib.import_module("requests.auth")
        basic = auth_mod.HTTPBasicAuth(self.client_id, self.secret)
        oauth = ro.OAuth2Session(client=oauthlib2.LegacyApplicationClient(client_id=self.client_id))
        state: dict[str, str] = {}

        def fetch() -> str:
            token = oauth.fetch_token(self.url, username=self.username, password=self.password,
                                      client_id=self.client_id, client_secret=self.secret)
            state["refresh"] = token["refresh_token"]
            return str(token["access_token"])

        def refresh() -> str:
            if "refresh" not in state:
                fetch()
            token = oauth.refresh_token(self.url, refresh_token=state["refresh"], auth=basic)
            return str(token["access_token"])

        self.fetchers["requests-oauthlib"] = Op(fetch)
        self.refreshers["requests-oauthlib"] = Op(refresh)
        self.closers.append(oauth.close)

    def _authlib(self, notes: list[str]) -> None:
        if not peer_available("authlib"):
            notes.append("Authlib is not installed: comparison skipped")
            return
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
        module = importlib.import_module("authlib.integrations.requests_client")
        oauth = module.OAuth2Session(self.client_id, self.secret,
                                     token_endpoint_auth_method="client_secret_basic")
        state: dict[str, str] = {}

        def fetch() -> str:
            token = oauth.fetch_token(self.url, grant_type="password", username=self.username,
                                      password=self.password)
            state["refresh"] = token["refresh_token"]
            return str(token["access_token"])

        def refresh() -> str:
            if "refresh" not in state:
                fetch()
            token = oauth.refresh_token(self.url, refresh_token=state["refresh"])
            return str(token["access_token"])

        self.fetchers["Authlib"] = Op(fetch)
        self.refreshers["Authlib"] = Op(refresh)
        self.closers.append(oauth.close)

    def close(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                close()
