"""Hooks run through pluggy's own hook callers, and grants are plugins.

What a user who knows pytest's plugin system expects: ``tryfirst``/``trylast`` order the calls,
``wrapper=True`` and ``hookwrapper=True`` implementations wrap the others (of the event hook and
of the registration hooks alike), and a third-party grant written against the grant hook alone
runs like a built-in one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tokenflow
from tokenflow.errors import ConfigError
from tokenflow.events import TokenEvent
from tokenflow.plugins import StoreRegistrar, hookimpl
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import EmbeddedServer, success_response

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
import jwt_bearer_grant

GUIDE = Path(__file__).parent.parent / "docs" / "plugins.md"


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as srv:
        yield srv


def mapping(server: EmbeddedServer, profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "servers": {"s": {"token_url": server.token_url, "retries": 0}},
        "clients": {"c": {"client_id": server.default_client.client_id,
                          "client_secret": server.default_client.secret}},
        "profiles": {"p": {"server": "s", "client": "c", "store": "memory", **profile}},
    }


# -- order and wrappers on tokenflow_event --------------------------------------------------------
class Recorder:
    """Observers in every flavour pluggy offers, all writing to one list."""

    def __init__(self) -> None:
        self.calls: list[str] = []


def observers(calls: list[str]) -> list[object]:
    class Plain:
        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            calls.append(f"plain:{event.kind}")

    class First:
        @hookimpl(tryfirst=True)
        def tokenflow_event(self, event: TokenEvent) -> None:
            calls.append(f"first:{event.kind}")

    class Last:
        @hookimpl(trylast=True)
        def tokenflow_event(self, event: TokenEvent) -> None:
            calls.append(f"last:{event.kind}")

    class NewWrapper:
        @hookimpl(wrapper=True)
        def tokenflow_event(self, event: TokenEvent) -> Generator[None, list[None], list[None]]:
            calls.append(f"wrap-before:{event.kind}")
            result = yield
            calls.append(f"wrap-after:{event.kind}:{len(result)}")
            return result

    class OldWrapper:
        @hookimpl(hookwrapper=True)
        def tokenflow_event(self, event: TokenEvent) -> Generator[None, Any, None]:
            calls.append(f"old-before:{event.kind}")
            yield
            calls.append(f"old-after:{event.kind}")

    # registration order is deliberately the reverse of the expected call order for the
    # plain observers: tryfirst/trylast, not registration, must decide
    return [Last(), First(), Plain(), OldWrapper(), NewWrapper()]


def test_event_observers_run_in_pluggys_order_inside_their_wrappers(server: EmbeddedServer) -> None:
    calls: list[str] = []
    host = build_plugin_host(extra_plugins=observers(calls))
    flow = tokenflow.config_from_mapping(
        mapping(server, {"grant": "client_credentials"}), plugins=host)
    flow.session("p").token()
    fetched = [c for c in calls if c.endswith(":fetched") or ":fetched:" in c]
    assert fetched == [
        "wrap-before:fetched",  # registered last: the outermost wrapper
        "old-before:fetched",
        "first:fetched",  # tryfirst
        "plain:fetched",  # the built-in logging sink returns nothing and is not recorded
        "last:fetched",  # trylast
        "old-after:fetched",
        "wrap-after:fetched:0",  # observers return None: pluggy collects no results
    ]


def test_a_raising_observer_is_logged_and_never_breaks_the_flow(
    server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            raise RuntimeError("observer bug")

    host = build_plugin_host(extra_plugins=[Broken()])
    flow = tokenflow.config_from_mapping(
        mapping(server, {"grant": "client_credentials"}), plugins=host)
    with caplog.at_level(logging.WARNING, logger="tokenflow.plugins"):
        token = flow.session("p").token()
    assert server.is_valid_access_token(token.access_token)
    assert any("raised RuntimeError: observer bug" in r.getMessage() for r in caplog.records)


def test_events_are_built_only_for_observers_that_want_them(
    server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The logging sink says (``wants``) which events its logger would write; an observer without
    ``wants`` gets everything; one whose ``wants`` is broken is never silenced by it."""
    from tokenflow.events import EventKind

    quiet = build_plugin_host()  # only the built-in logging sink
    with caplog.at_level(logging.WARNING, logger="tokenflow.events"):
        assert not quiet.observes(EventKind.FETCHED)
        assert quiet.observes(EventKind.STALE_SERVED)  # a WARNING: the sink would write it
    with caplog.at_level(logging.DEBUG, logger="tokenflow.events"):
        assert quiet.observes(EventKind.FETCHED)

    seen: list[str] = []

    class Picky:
        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            seen.append(f"picky:{event.kind}")

    def only_refreshes(kind: EventKind) -> bool:
        return kind is EventKind.REFRESHED

    Picky.tokenflow_event.wants = only_refreshes  # type: ignore[attr-defined]

    class Broken:
        @hookimpl
        def tokenflow_event(self, event: TokenEvent) -> None:
            seen.append(f"broken:{event.kind}")

    def broken_wants(kind: EventKind) -> bool:
        raise RuntimeError("wants bug")

    Broken.tokenflow_event.wants = broken_wants  # type: ignore[attr-defined]

    picky = build_plugin_host(extra_plugins=[Picky()])
    with caplog.at_level(logging.WARNING, logger="tokenflow.events"):
        assert not picky.observes(EventKind.FETCHED)
        assert picky.observes(EventKind.REFRESHED)
        flow = tokenflow.config_from_mapping(
            mapping(server, {"grant": "client_credentials"}), plugins=picky)
        session = flow.session("p")
        session.token()
        assert seen == []  # nobody wanted "fetched" or "stored": no event was built
        events: list[str] = []
        callback_flow = tokenflow.config_from_mapping(
            mapping(server, {"grant": "client_credentials"}), plugins=picky)
        callback_flow.session("p", on_event=lambda e: events.append(str(e.kind))).token()
        assert "fetched" in events  # an on_event callback always gets its events

    both = build_plugin_host(extra_plugins=[Picky(), Broken()])
    assert both.observes(EventKind.FETCHED)
    tokenflow.config_from_mapping(
        mapping(server, {"grant": "client_credentials"}), plugins=both).session("p").token()
    assert "broken:fetched" in seen and "picky:fetched" in seen  # once built, all observers see it


# -- wrappers on a registration hook ------------------------------------------------------------
def test_a_wrapper_wraps_a_registration_hook_and_registrations_name_their_plugin() -> None:
    seen: list[str] = []

    class StoreWrapper:
        @hookimpl(wrapper=True)
        def tokenflow_register_stores(self, register: StoreRegistrar) -> Generator[None, Any, Any]:
            seen.append("before")
            result = yield  # every store plugin registers here, built-ins included
            seen.append("after")
            from tokenflow.builtins.memory_store import MemoryStore  # a test may use a built-in

            register("scratch", lambda options, context: MemoryStore())
            return result

    host = build_plugin_host(extra_plugins=[StoreWrapper()])
    assert seen == ["before", "after"]  # one call of the hook, wrapped once
    assert {"memory", "file", "scratch"} <= set(host.stores)
    assert host.stores["file"].plugin == "tokenflow.file_store"
    assert host.stores["scratch"].plugin.startswith("extra")  # the wrapper's plugin registered it


# -- a third-party grant ------------------------------------------------------------------------
JWT = jwt_bearer_grant.JWT_BEARER


def test_a_third_party_grant_runs_through_the_grant_hook_alone(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assertion = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJl"
    monkeypatch.setenv("SVC_ASSERTION", assertion)
    host = build_plugin_host(extra_plugins=[jwt_bearer_grant])
    flow = tokenflow.config_from_mapping(
        mapping(server, {"grant": JWT, "assertion": {"env": "SVC_ASSERTION"}, "subject": "svc",
                         "scope": "read"}),
        plugins=host)
    server.script(success_response(access_token="jwt-issued-1", expires_in=3600))
    with caplog.at_level(logging.DEBUG):
        token = flow.session("p").token()
    assert token.access_token == "jwt-issued-1"
    raw = server.last_raw_request
    assert raw is not None
    form = dict(pair.split("=", 1) for pair in raw.body.decode().split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    assert form["assertion"] == assertion and form["scope"] == "read"
    headers = {k.lower(): v for k, v in raw.headers.items()}
    assert headers["authorization"].startswith("Basic ")  # the client authenticates as set
    assert assertion not in caplog.text and assertion not in repr(flow.profile("p"))
    # the subject tells users apart: another subject is another token
    other = tokenflow.config_from_mapping(
        mapping(server, {"grant": JWT, "assertion": {"env": "SVC_ASSERTION"}, "subject": "ops"}),
        plugins=host)
    assert other.session("p").cache_key != flow.session("p").cache_key
    listed = {info.name: info.registers for info in host.plugins()}
    assert listed["jwt_bearer_grant"] == [f"grant {JWT}"]


def test_a_grants_options_are_validated_with_file_line_and_column(tmp_path: Path) -> None:
    host = build_plugin_host(extra_plugins=[jwt_bearer_grant])
    path = tmp_path / "tokenflow.yaml"
    path.write_text(
        "version: 1\n"
        "servers: {s: {token_url: 'https://auth.example.com/token'}}\n"
        "clients: {c: {client_id: app}}\n"
        "profiles:\n"
        f"  a: {{server: s, client: c, grant: '{JWT}', subject: svc}}\n"
        f"  b: {{server: s, client: c, grant: '{JWT}', assertion: {{nope: x}}}}\n"
        "  c: {server: s, client: c, grant: password, username: u}\n"
        f"  d: {{server: s, client: c, grant: '{JWT}', assertion: x, subject: [7]}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        tokenflow.load_config(path, plugins=host)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:5:3: $.profiles.a: the {JWT} grant needs assertion",
        f"{path}:6:95: $.profiles.b.assertion.nope: unknown secret source 'nope'; "
        "known: command, env, file, keyring, prompt",
        f"{path}:7:3: $.profiles.c: the password grant needs password",
        f"{path}:8:106: $.profiles.d.subject: [7] is not of type 'string'",
    ]


def test_the_guide_quotes_the_third_party_grant_verbatim() -> None:
    source = (Path(__file__).parent / "plugins" / "jwt_bearer_grant.py").read_text(encoding="utf-8")
    assert f"```python\n{source}```" in GUIDE.read_text(encoding="utf-8")
