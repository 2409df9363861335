"""The adapters (requests, httpx sync and async, urllib3 through the helper) against real servers.

The embedded server issues tokens; :class:`resource_server.ResourceServer` enforces them. A
token the issuer expires (``expire_access_tokens``) or drops (a refresh replaces it) gets a 401
with ``error="invalid_token"``, as a real API answers a token another process refreshed away.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import requests
import trio
import urllib3
from conftest import profile_yaml
from independent_server import (  # noqa: F401  (the fixture is used by name)
    IndependentServerFactory,
    independent_server_factory_fixture,
)
from resource_server import CountingProxy, ResourceServer
from test_independent_server import config_yaml as independent_config_yaml

import tokenflow
from tokenflow.adapters import (
    atoken_after_401,
    bearer_challenge,
    should_retry,
    token_after_401,
)
from tokenflow.adapters.httpx import TokenflowAuth as HttpxAuth
from tokenflow.adapters.requests import TokenflowAuth as RequestsAuth
from tokenflow.config.model import Config
from tokenflow.engine.placement import place, with_query_token
from tokenflow.engine.session import TokenSession
from tokenflow.events import EventKind, TokenEvent
from tokenflow.testing import EmbeddedServer
from tokenflow.testing.pytest_plugin import ServerFactory

WriteConfig = Callable[..., Path]
THREADS = 16
TASKS = 64


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory) -> EmbeddedServer:
    return tokenflow_server_factory()


@pytest.fixture
def api(server: EmbeddedServer) -> Iterator[ResourceServer]:
    with ResourceServer(server) as resource:
        yield resource


def load(server: EmbeddedServer, write_config: WriteConfig, **options: Any) -> Config:
    return tokenflow.load_config(write_config(profile_yaml(server, **options)))


@pytest.fixture
def config(server: EmbeddedServer, write_config: WriteConfig) -> Iterator[Config]:
    config = load(server, write_config)
    yield config
    config.close()


def refresh_requests(server: EmbeddedServer) -> tuple[int, int]:
    """(token endpoint requests, of which refresh grants) since the last reset."""
    counts = server.counts
    return counts["token"], counts["refresh_token"]


def revoke_every_access_token(server: EmbeddedServer, api: ResourceServer) -> None:
    """What a resource server restart or a sibling's refresh does: cached tokens stop working."""
    server.expire_access_tokens()
    server.reset_counts()
    api.reset()


# -- the 401 rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "header", "retry"), [
    (401, 'Bearer realm="api", error="invalid_token", error_description="expired"', True),
    (401, 'Bearer realm="api"', True),
    (401, "Bearer", True),
    (401, 'Basic realm="x", Bearer error="invalid_token"', True),
    (401, 'Bearer error=invalid_token', True),
    (401, 'Bearer realm="a, error=\\"insufficient_scope\\"", error="invalid_token"', True),
    (401, 'Bearer error="insufficient_scope"', False),
    (401, 'Bearer error="invalid_request"', False),
    (401, 'Basic realm="x"', False),
    (401, None, False),
    (403, 'Bearer error="invalid_token"', False),
    (200, 'Bearer', False),
])
def test_the_401_rule(status: int, header: str | None, retry: bool) -> None:
    assert should_retry(status, header) is retry


def test_bearer_challenge_reads_quoted_and_plain_parameters() -> None:
    assert bearer_challenge('Basic realm="b", Bearer realm="a\\"b", error=invalid_token, x="1"') == {
        "realm": 'a"b', "error": "invalid_token", "x": "1"}
    assert bearer_challenge('Basic realm="b"') is None
    assert bearer_challenge("Bearer " + "a=" * 100_000) is not None  # bounded, no blow-up


def test_query_placement_keeps_the_rest_of_the_url() -> None:
    assert with_query_token("https://h/p?a=1%202&access_token=old#f", "n/w") == (
        "https://h/p?a=1%202&access_token=n%2Fw#f")
    assert place("https://h/p", {"authorization": "x", "A": "b"}, "t", "header") == (
        "https://h/p", {"A": "b", "Authorization": "Bearer t"})
    assert place("https://h/p", {"A": "b"}, "t", "query") == ("https://h/p?access_token=t", {"A": "b"})


# -- requests ------------------------------------------------------------------------------------
def test_requests_sends_the_token_and_gets_through(config: Config, api: ResourceServer) -> None:
    with requests.Session() as http:
        http.auth = RequestsAuth(config.session())
        response = http.get(api.url, timeout=10)
    assert response.status_code == 200 and response.history == []
    assert api.seen[0].authorization == f"Bearer {config.session().token().access_token}"


def test_requests_16_threads_after_revocation_refresh_once(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    auth = RequestsAuth(config.session())
    with requests.Session() as http:
        assert http.get(api.url, auth=auth, timeout=10).status_code == 200
    revoke_every_access_token(server, api)
    barrier = threading.Barrier(THREADS)
    results: list[requests.Response] = []

    def call() -> None:
        with requests.Session() as http:
            barrier.wait(timeout=30)
            results.append(http.get(api.url, auth=auth, timeout=30))

    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in results] == [200] * THREADS
    assert refresh_requests(server) == (1, 1)
    retried = [r for r in results if r.history]
    assert retried and all([h.status_code for h in r.history] == [401] for r in retried)
    assert api.statuses().count(200) == THREADS


def test_requests_does_not_retry_a_403(config: Config, server: EmbeddedServer, api: ResourceServer) -> None:
    api.forbid = True
    response = requests.get(api.url, auth=RequestsAuth(config.session()), timeout=10)
    assert response.status_code == 403 and response.history == []
    assert api.statuses() == [403]
    assert refresh_requests(server) == (1, 0)  # the first grant only


def test_requests_never_retries_a_second_401(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    api.refuse_all = True
    server.reset_counts()
    response = requests.get(api.url, auth=RequestsAuth(session), timeout=10)
    assert response.status_code == 401
    assert [h.status_code for h in response.history] == [401]
    assert api.statuses() == [401, 401]
    assert refresh_requests(server) == (1, 1)


def test_requests_leaves_other_401s_alone(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    api.refuse_all = True
    api.challenge = 'Bearer realm="api", error="insufficient_scope"'
    server.reset_counts()
    response = requests.get(api.url, auth=RequestsAuth(session), timeout=10)
    assert response.status_code == 401 and response.history == []
    assert refresh_requests(server) == (0, 0)


def test_requests_rewinds_a_file_body_and_resends_it(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    revoke_every_access_token(server, api)
    body = io.BytesIO(b"skip:the payload")
    body.seek(5)  # a body that starts mid-file is resent from where it started
    response = requests.post(api.url, data=body, auth=RequestsAuth(session), timeout=10)
    assert response.status_code == 200 and [h.status_code for h in response.history] == [401]
    assert [s.body for s in api.seen] == [b"the payload", b"the payload"]
    assert response.json()["body"] == "the payload"


def test_requests_resends_after_a_large_401_body_without_reading_it(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    revoke_every_access_token(server, api)
    api.pad_401 = 512 * 1024
    response = requests.get(api.url, auth=RequestsAuth(session), timeout=10)
    assert response.status_code == 200 and [h.status_code for h in response.history] == [401]
    assert api.statuses() == [401, 200]


def test_requests_does_not_resend_a_streaming_body(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    revoke_every_access_token(server, api)

    def stream() -> Iterator[bytes]:
        yield b"part one,"
        yield b"part two"

    response = requests.post(api.url, data=stream(), auth=RequestsAuth(session), timeout=10)
    assert response.status_code == 401 and response.history == []
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert [(s.status, s.body) for s in api.seen] == [(401, b"part one,part two")]
    assert refresh_requests(server) == (0, 0)  # nothing was resent, so nothing was invalidated


def test_a_token_refreshed_elsewhere_is_picked_up_without_a_refresh(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    """The issue's story: another process refreshed, the server dropped our token, our memory
    still calls it fresh. The 401 sends us to the store, which has the sibling's new token."""
    ours = config.session()
    ours.token()
    sibling = config.session(interactive=False)  # a second session: as another process would
    sibling.force_refresh()
    server.reset_counts()
    response = requests.get(api.url, auth=RequestsAuth(ours), timeout=10)
    assert response.status_code == 200 and [h.status_code for h in response.history] == [401]
    assert refresh_requests(server) == (0, 0)


# -- httpx ---------------------------------------------------------------------------------------
def test_httpx_sync_16_threads_after_revocation_refresh_once(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    auth = HttpxAuth(config.session())
    with httpx.Client(auth=auth, timeout=30) as client:
        assert client.get(api.url).status_code == 200
        revoke_every_access_token(server, api)
        barrier = threading.Barrier(THREADS)
        results: list[httpx.Response] = []

        def call() -> None:
            barrier.wait(timeout=30)
            results.append(client.get(api.url))

        threads = [threading.Thread(target=call) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert [r.status_code for r in results] == [200] * THREADS
    assert refresh_requests(server) == (1, 1)
    assert any(r.history and r.history[0].status_code == 401 for r in results)


async def _many_tasks(url: str, auth: HttpxAuth, n: int, start: Callable[[], Any]) -> list[int]:
    statuses: list[int] = []
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        assert (await client.get(url)).status_code == 200
        start()

        async def call() -> None:
            statuses.append((await client.get(url)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(n):
                group.start_soon(call)
    return statuses


def test_httpx_64_asyncio_tasks_after_revocation_refresh_once(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    auth = HttpxAuth(config.session())
    statuses = asyncio.run(_many_tasks(api.url, auth, TASKS, lambda: revoke_every_access_token(server, api)))
    assert statuses == [200] * TASKS
    assert refresh_requests(server) == (1, 1)
    assert api.statuses().count(401) >= 1


def test_httpx_64_trio_tasks_after_revocation_refresh_once(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    auth = HttpxAuth(config.session())
    statuses = trio.run(_many_tasks, api.url, auth, TASKS, lambda: revoke_every_access_token(server, api))
    assert statuses == [200] * TASKS
    assert refresh_requests(server) == (1, 1)


def test_async_tasks_and_threads_together_refresh_once(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    revoke_every_access_token(server, api)
    auth = HttpxAuth(session)
    thread_statuses: list[int] = []

    def thread_call() -> None:
        thread_statuses.append(requests.get(api.url, auth=RequestsAuth(session), timeout=30).status_code)

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            threads = [threading.Thread(target=thread_call) for _ in range(8)]
            for thread in threads:
                thread.start()
            responses = await asyncio.gather(*(client.get(api.url) for _ in range(16)))
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 16
    assert thread_statuses == [200] * 8
    assert refresh_requests(server) == (1, 1)


def test_httpx_does_not_retry_a_403(config: Config, api: ResourceServer) -> None:
    api.forbid = True
    with httpx.Client(auth=HttpxAuth(config.session())) as client:
        response = client.get(api.url)
    assert response.status_code == 403 and response.history == []
    assert api.statuses() == [403]


def test_httpx_async_never_retries_a_second_401(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    api.refuse_all = True
    server.reset_counts()

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=HttpxAuth(session)) as client:
            return await client.get(api.url)

    response = asyncio.run(main())
    assert response.status_code == 401 and [h.status_code for h in response.history] == [401]
    assert api.statuses() == [401, 401]
    assert refresh_requests(server) == (1, 1)


def test_httpx_resends_bytes_but_not_a_stream(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    with httpx.Client(auth=HttpxAuth(session)) as client:
        revoke_every_access_token(server, api)
        resent = client.post(api.url, content=b"payload")
        assert resent.status_code == 200 and [h.status_code for h in resent.history] == [401]
        assert [s.body for s in api.seen] == [b"payload", b"payload"]

        revoke_every_access_token(server, api)
        streamed = client.post(api.url, content=iter([b"one,", b"two"]))
    assert streamed.status_code == 401 and streamed.history == []
    assert [(s.status, s.body) for s in api.seen] == [(401, b"one,two")]
    assert refresh_requests(server) == (0, 0)


def test_httpx_async_does_not_resend_an_async_stream(
    config: Config, server: EmbeddedServer, api: ResourceServer
) -> None:
    session = config.session()
    session.token()
    revoke_every_access_token(server, api)

    async def body() -> Any:
        yield b"chunk"

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=HttpxAuth(session)) as client:
            return await client.post(api.url, content=body())

    response = asyncio.run(main())
    assert response.status_code == 401 and response.history == []
    assert api.statuses() == [401]


def test_the_event_loop_keeps_running_while_a_refresh_is_slow(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    """With every token request taking 500 ms, a ticker task on the loop is never held up,
    and the 32 waiting tasks share one worker thread rather than parking one each.

    A blocking refresh would stall the ticker for the whole 500 ms; the bound (250 ms) leaves
    room for a loaded machine. The ticker first proves it notices a deliberate 500 ms block.
    """
    slow = tokenflow_server_factory(latency=0.5)
    config = load(slow, write_config)
    session = config.session()
    with ResourceServer(slow) as api:
        async def main() -> tuple[float, float, list[int], int]:
            gaps: list[float] = []
            threads: list[float] = []
            stop = asyncio.Event()
            limiter = anyio.to_thread.current_default_thread_limiter()

            async def ticker() -> None:
                last = time.perf_counter()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    threads.append(limiter.borrowed_tokens)
                    last = now

            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            time.sleep(0.5)  # the ticker's self-check: a blocked loop shows
            await asyncio.sleep(0.05)
            blocked = max(gaps)
            gaps.clear()
            async with httpx.AsyncClient(auth=HttpxAuth(session), timeout=30) as client:
                first = await asyncio.gather(*(client.get(api.url) for _ in range(32)))  # slow grant
                slow.expire_access_tokens()
                again = await asyncio.gather(*(client.get(api.url) for _ in range(32)))  # slow refresh
            stop.set()
            await tick
            return blocked, max(gaps), [r.status_code for r in first + again], int(max(threads))

        blocked, worst, statuses, threads = asyncio.run(main())
    config.close()
    assert blocked >= 0.45
    assert statuses == [200] * 64
    assert worst < 0.25, f"the event loop was blocked for {worst * 1000:.0f} ms"
    assert threads <= 2  # one for the token, at most one for an invalidation


def test_an_independent_server_requests_threads_and_asyncio_tasks_refresh_once(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig
) -> None:
    """The same promise against oauthlib's token endpoint: its access tokens stop working when
    its clock passes their expiry (ours still calls them fresh), its refresh grant replaces them."""
    offset = [0.0]
    issuer = independent_server_factory(clock=lambda: time.time() + offset[0])
    config = tokenflow.load_config(write_config(independent_config_yaml(issuer)))
    session = config.session()
    with ResourceServer(issuer) as api:
        auth = RequestsAuth(session)
        assert requests.get(api.url, auth=auth, timeout=10).status_code == 200
        offset[0] = 2 * issuer.access_token_lifetime
        before = issuer.counts
        barrier = threading.Barrier(THREADS)
        statuses: list[int] = []

        def call() -> None:
            barrier.wait(timeout=30)
            statuses.append(requests.get(api.url, auth=auth, timeout=30).status_code)

        threads = [threading.Thread(target=call) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert statuses == [200] * THREADS
        after = issuer.counts
        assert (after["total"] - before["total"], after["refresh_token"] - before["refresh_token"]) == (1, 1)

        marks: list[Any] = []

        def revoke() -> None:
            offset[0] = 4 * issuer.access_token_lifetime
            marks.append(issuer.counts)

        task_statuses = asyncio.run(_many_tasks(api.url, HttpxAuth(session), TASKS, revoke))
        final = issuer.counts
        after = marks[0]
    assert task_statuses == [200] * TASKS
    assert (final["total"] - after["total"], final["refresh_token"] - after["refresh_token"]) == (1, 1)
    config.close()


# -- urllib3 and anything else -------------------------------------------------------------------
def test_urllib3_with_the_helper(config: Config, server: EmbeddedServer, api: ResourceServer) -> None:
    session = config.session()
    http = urllib3.PoolManager(retries=False, timeout=10)

    def get() -> urllib3.BaseHTTPResponse:
        token = session.token()
        url, headers = session.apply(api.url, {"Accept": "application/json"}, token)
        response = http.request("GET", url, headers=headers)
        new = token_after_401(session, token, response.status, response.headers.get("WWW-Authenticate"))
        if new is not None:
            url, headers = session.apply(api.url, {"Accept": "application/json"}, new)
            response = http.request("GET", url, headers=headers)
        return response

    assert get().status == 200
    revoke_every_access_token(server, api)
    assert get().status == 200
    assert api.statuses() == [401, 200]
    assert refresh_requests(server) == (1, 1)


def test_async_helper_and_apply(config: Config, server: EmbeddedServer) -> None:
    session = config.session()

    async def main() -> tuple[Any, Any, dict[str, str]]:
        token = await session.atoken()
        none = await atoken_after_401(session, token, 403, 'Bearer error="invalid_token"')
        new = await atoken_after_401(session, token, 401, 'Bearer error="invalid_token"')
        return token, (none, new), await session.aheaders()

    token, (none, new), headers = asyncio.run(main())
    assert none is None and new is not None and new.access_token != token.access_token
    assert headers == {"Authorization": f"Bearer {new.access_token}"}
    assert refresh_requests(server) == (2, 1)


# -- invalidate: compare-and-set --------------------------------------------------------------------
def test_invalidate_forgets_only_the_token_the_caller_saw(config: Config, server: EmbeddedServer) -> None:
    session = config.session()
    old = session.token()
    assert session.invalidate("not-the-cached-token") is False
    assert session.token() is old  # nothing forgotten, no request
    assert session.invalidate(old) is True
    new = session.token()
    assert new.access_token != old.access_token and new.refresh_token == old.refresh_token
    assert session.invalidate(old) is False  # a late 401 for the old token changes nothing
    assert session.token() is new
    assert refresh_requests(server) == (2, 1)


WORKER = """
import sys, time, pathlib, tokenflow
from tokenflow.adapters import token_after_401
config = tokenflow.load_config(sys.argv[1])
session = config.session()
token = session.token()                       # the cached token, read from the file store
pathlib.Path(sys.argv[2]).touch()             # ready
deadline = time.monotonic() + 30
while not pathlib.Path(sys.argv[3]).exists() and time.monotonic() < deadline:
    time.sleep(0.005)
new = token_after_401(session, token, 401, 'Bearer error="invalid_token"')
print(new.fingerprint)
"""


def test_a_burst_of_401s_in_several_processes_refreshes_once(
    server: EmbeddedServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(profile_yaml(server))
    config = tokenflow.load_config(path)
    config.session().token()
    server.reset_counts()
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(tmp_path / f"ready{i}"), str(go)],
                         stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    prints = {w.communicate(timeout=60)[0].strip() for w in workers}
    assert [w.returncode for w in workers] == [0] * 4
    assert len(prints) == 1  # all ended with the same new token
    assert refresh_requests(server) == (1, 1)


# -- token placement ------------------------------------------------------------------------------
def test_query_placement_everywhere_and_never_in_logs(
    server: EmbeddedServer, write_config: WriteConfig, api: ResourceServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = load(server, write_config, extra_profile={"token_placement": "query"})
    session = config.session()
    assert session.token_placement == "query"
    with requests.Session() as http:
        assert http.get(api.url + "?page=2", auth=RequestsAuth(session), timeout=10).status_code == 200
    with httpx.Client(auth=HttpxAuth(session)) as client:
        assert client.get(api.url, params={"page": "3"}).status_code == 200
        revoke_every_access_token(server, api)
        assert client.get(api.url).status_code == 200  # the 401 retry places the new token too
    tokens = {s.token for s in api.seen}
    assert all(s.authorization is None for s in api.seen)
    seen_queries = [s.query for s in api.seen]
    assert seen_queries[0].startswith("access_token=") or "access_token=" in seen_queries[0]
    config.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/things" in logged  # the libraries did log the request URLs...
    assert "access_token=***" in logged  # ...with the token scrubbed
    first = session.token().access_token
    for value in {*tokens, first}:
        assert value not in logged
    assert "access_token" not in (session.apply("https://h/p")[1].get("Authorization") or "")


def test_query_placement_with_urllib3_through_apply_stays_out_of_logs(
    server: EmbeddedServer, write_config: WriteConfig, api: ResourceServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = load(server, write_config, extra_profile={"token_placement": "query"})
    session = config.session()
    token = session.token()
    http = urllib3.PoolManager(retries=False, timeout=10)
    url, headers = session.apply(api.url + "?page=1", {}, token)
    assert url.endswith(f"?page=1&access_token={token.access_token}") and headers == {}
    assert http.request("GET", url, headers=headers).status == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/things?page=1&access_token=***" in logged
    assert token.access_token not in logged
    config.close()
    # and in a process that sends no token request (the token comes from the cache), where
    # nothing but apply() could have put the filters on urllib3's loggers
    code = """
import logging, sys, urllib3, tokenflow
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)
session = tokenflow.load_config(sys.argv[1]).session()
url, headers = session.apply(sys.argv[2])
print("status", urllib3.PoolManager(retries=False).request("GET", url, headers=headers).status)
"""
    done = subprocess.run([sys.executable, "-c", code, str(config.files[0]), api.url], capture_output=True,
                          text=True, timeout=60, check=True)
    assert "status 200" in done.stdout and "access_token=***" in done.stdout
    assert token.access_token not in done.stdout + done.stderr
    assert server.counts["token"] == 1


def test_header_placement_leaves_the_url_alone(config: Config, api: ResourceServer) -> None:
    session = config.session()
    url, headers = session.apply(api.url + "?a=1", {"X": "y"})
    assert url == api.url + "?a=1" and headers == {"X": "y", **session.headers()}


def test_token_placement_is_validated(server: EmbeddedServer, write_config: WriteConfig) -> None:
    with pytest.raises(tokenflow.ConfigError, match="token_placement"):
        load(server, write_config, extra_profile={"token_placement": "cookie"})


# -- shared pools, events, imports ------------------------------------------------------------------
def test_300_sessions_on_one_server_share_a_few_connections(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    with CountingProxy(server.port) as proxy:
        text = profile_yaml(server, store="memory").replace(f":{server.port}/", f":{proxy.port}/")
        config = tokenflow.load_config(write_config(text))
        sessions = [config.session(interactive=False) for _ in range(300)]  # private: memory stores
        for session in sessions:
            session.token()
        assert server.counts["token"] == 300
        assert proxy.connections <= 3
        config.close()
        # the counter works: sessions with pools of their own open one connection each
        alone = [TokenSession(config.profile(), plugins=config.plugins, cache_dir=config.cache_dir,
                              interactive=False) for _ in range(5)]
        before = proxy.connections
        for session in alone:
            session.token()
            session.close()
        assert proxy.connections - before == 5


def test_on_event_gets_the_observers_events_and_a_broken_one_is_ignored(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[TokenEvent] = []
    session = config.session(on_event=events.append)
    token = session.token()
    session.invalidate(token)
    session.token()
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.FETCHED, EventKind.STORED, EventKind.INVALIDATED, EventKind.REFRESHED,
                     EventKind.STORED]
    assert all(e.profile == "prod" and e.cache_key == session.cache_key for e in events)

    def broken(event: TokenEvent) -> None:
        raise RuntimeError("boom")

    other = config.session(on_event=broken)
    assert other.force_refresh().access_token
    assert "on_event callback of profile 'prod' raised RuntimeError: boom (ignored)" in caplog.text


def test_importing_tokenflow_and_the_adapters_package_loads_no_http_client() -> None:
    code = ("import sys, tokenflow, tokenflow.adapters, tokenflow.engine.session; "
            "print([m for m in ('requests', 'httpx', 'anyio', 'trio', 'urllib3') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_sessions_sharing_a_pool_open_the_transport_only_to_send(tmp_path: Path) -> None:
    """The pool registry builds no transport until a request is sent (urllib3's URL parser is
    loaded with the config since server URLs are parsed once, with it: issue 9 item 5)."""
    code = """
import sys, tokenflow
config = tokenflow.config_from_mapping({"version": 1,
    "servers": {"ts": {"token_url": "https://idp.example/token"}}, "clients": {"app": {"client_id": "x"}},
    "profiles": {"p": {"server": "ts", "client": "app", "grant": "client_credentials", "store": "memory"}}},
    cache_dir=sys.argv[1])
config.session("p").status()
config.session("p", interactive=False).status()
print("tokenflow.transport" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


# -- docs/embedding.md: every example is a complete program that works ---------------------------
DOCS = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"


def doc_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.M | re.S)


def test_the_embedding_guide_has_an_example_per_client() -> None:
    examples = doc_examples()
    needles = ("tokenflow.adapters.requests", "httpx.Client(", "httpx.AsyncClient(",
               "urllib3.PoolManager(", "on_event=")
    for needle in needles:
        assert any(needle in example for example in examples), needle


@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_embedding_guide_example_runs(
    index: int, server: EmbeddedServer, api: ResourceServer, write_config: WriteConfig
) -> None:
    path = write_config(profile_yaml(server))
    code = doc_examples()[index].replace("https://api.example.com/things", api.url)
    env = {**os.environ, "TOKENFLOW_CONFIG": str(path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    if "API" in code:
        assert api.statuses() and set(api.statuses()) == {200}


# -- the async single flight ----------------------------------------------------------------------
def test_tasks_waiting_on_a_failing_request_share_its_error(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed when the block ends: connections are refused
    text = profile_yaml(server).replace(f":{server.port}/", f":{port}/")
    config = tokenflow.load_config(write_config(text))
    events: list[TokenEvent] = []
    session = config.session(on_event=events.append)

    async def main() -> list[BaseException | Any]:
        return await asyncio.gather(*(session.atoken() for _ in range(16)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, tokenflow.TransportError) for r in results)
    assert [e.kind for e in events] == [EventKind.FAILED]  # one attempt for all 16 tasks


def test_when_the_task_doing_the_work_is_cancelled_the_others_still_get_a_token(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    slow = tokenflow_server_factory(latency=0.3)
    config = load(slow, write_config)
    session = config.session()

    async def main() -> list[Any]:
        leader = asyncio.create_task(session.atoken())
        await asyncio.sleep(0.05)  # the leader is in its worker thread now
        followers = [asyncio.create_task(session.atoken()) for _ in range(8)]
        await asyncio.sleep(0.05)
        leader.cancel()
        tokens = await asyncio.gather(*followers)
        with pytest.raises(asyncio.CancelledError):
            await leader
        return tokens

    tokens = asyncio.run(main())
    assert len({t.access_token for t in tokens}) == 1
    assert slow.counts["token"] == 1
    config.close()
