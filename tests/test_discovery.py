"""Discovery from an issuer (RFC 8414) against metadata built by oauthlib's ``MetadataEndpoint``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeClock
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

from tokenflow.config.model import ServerSpec
from tokenflow.engine.discovery import Discovery, metadata_urls, parse_metadata
from tokenflow.errors import TransportError
from tokenflow.transport import Transport


def discovery(server: IndependentServer, cache_dir: Path, clock: FakeClock, **keys: object) -> Discovery:
    spec = ServerSpec("idp", keys.pop("token_url", None), issuer=server.issuer, **keys)  # type: ignore[arg-type]
    transport = Transport(ServerSpec("idp", server.token_url, retries=0))
    return Discovery(spec, cache_dir, transport.send, clock=clock)


def test_metadata_urls_follow_rfc8414_then_openid_connect() -> None:
    assert metadata_urls("https://idp.example") == [
        "https://idp.example/.well-known/oauth-authorization-server",
        "https://idp.example/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://idp.example/realms/dev/") == [
        "https://idp.example/.well-known/oauth-authorization-server/realms/dev",
        "https://idp.example/realms/dev/.well-known/openid-configuration",
    ]


def test_endpoints_and_client_auth_come_from_the_metadata(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    found = discovery(independent_server, cache_dir, clock)
    assert found.endpoint("token") == independent_server.token_url
    assert found.endpoint("authorization") == independent_server.authorize_url
    assert found.endpoint("device_authorization") == independent_server.device_url
    assert found.endpoint("revocation") == independent_server.revoke_url
    assert found.client_auth(None) == "basic"  # advertised, and RFC 6749's preferred method
    assert found.client_auth("body") == "body"  # written wins
    assert independent_server.counts["metadata"] == 1

    independent_server.metadata_auth_methods = ["client_secret_post"]
    other = discovery(independent_server, cache_dir / "other", clock)
    assert other.client_auth(None) == "body"


def test_openid_configuration_is_the_fallback(
    independent_server_factory: IndependentServerFactory, cache_dir: Path, clock: FakeClock
) -> None:
    server = independent_server_factory(metadata_at="openid")
    assert discovery(server, cache_dir, clock).endpoint("token") == server.token_url
    assert [r.status for r in server.requests if "well-known" in r.path] == [404, 200]


def test_metadata_naming_another_issuer_is_refused(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    independent_server.metadata_issuer = "https://evil.example"
    with pytest.raises(TransportError, match=r"names issuer 'https://evil\.example'.*RFC 8414"):
        discovery(independent_server, cache_dir, clock).endpoint("token")
    assert not (cache_dir / "discovery").exists() or not any((cache_dir / "discovery").iterdir())


def test_explicit_keys_win_and_cost_no_request(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    found = discovery(independent_server, cache_dir, clock, token_url="https://explicit.example/token",
                      client_auth="body")
    assert found.endpoint("token") == "https://explicit.example/token"
    assert found.client_auth("body") == "body"
    assert independent_server.counts["metadata"] == 0
    assert found.endpoint("authorization") == independent_server.authorize_url  # not written: discovered


def test_metadata_is_cached_for_a_day_across_processes(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    discovery(independent_server, cache_dir, clock).endpoint("token")
    discovery(independent_server, cache_dir, clock).endpoint("token")  # a new process: the file
    assert independent_server.counts["metadata"] == 1
    clock.advance(86_400 + 1)
    discovery(independent_server, cache_dir, clock).endpoint("token")
    assert independent_server.counts["metadata"] == 2


def test_a_damaged_cache_file_is_ignored(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    discovery(independent_server, cache_dir, clock).endpoint("token")
    [path] = (cache_dir / "discovery").iterdir()
    for junk in (b"{not json", b"[]", json.dumps({"format": 1, "fetched_at": "x"}).encode(), b"x" * 300_000):
        path.write_bytes(junk)
        found = discovery(independent_server, cache_dir, clock)
        assert found.endpoint("token") == independent_server.token_url
    assert independent_server.counts["metadata"] == 5


def test_a_404_refetches_the_metadata_once(
    independent_server: IndependentServer, cache_dir: Path, clock: FakeClock
) -> None:
    found = discovery(independent_server, cache_dir, clock)
    found.endpoint("token")
    assert found.discovered("token")
    assert found.refresh_after_not_found() is False  # nothing moved
    assert found.refresh_after_not_found() is False  # and only once per process
    assert independent_server.counts["metadata"] == 2


@pytest.mark.parametrize("body", [b"<html>", b"[]", json.dumps({"issuer": "https://a", "token_endpoint": "ftp://x"}).encode(),
                                  json.dumps({"issuer": "https://a", "token_endpoint": "http://a.example/t"}).encode(),
                                  json.dumps({"issuer": "https://a", "token_endpoint": "https://u@a.example/t"}).encode(),
                                  json.dumps({"issuer": "https://a", "token_endpoint": "https://a\\b/t"}).encode()])
def test_unusable_metadata_is_refused(body: bytes) -> None:
    with pytest.raises(TransportError):
        parse_metadata(body, "https://a", "https://a/.well-known/x")


def test_plain_http_endpoints_are_fine_on_loopback_only() -> None:
    doc = json.dumps({"issuer": "http://127.0.0.1:9", "token_endpoint": "http://127.0.0.1:9/t"}).encode()
    assert parse_metadata(doc, "http://127.0.0.1:9", "here").endpoints["token"] == "http://127.0.0.1:9/t"


def test_a_server_needs_token_url_or_issuer() -> None:
    import tokenflow
    from tokenflow.errors import ConfigError

    base = {"version": 1, "clients": {"c": {"client_id": "x"}},
            "profiles": {"p": {"server": "s", "client": "c", "grant": "client_credentials"}}}
    with pytest.raises(ConfigError, match=r"servers\.s: needs token_url or issuer"):
        tokenflow.config_from_mapping({**base, "servers": {"s": {"dialect": "rfc6749"}}})
    with pytest.raises(ConfigError, match="clear text"):
        tokenflow.config_from_mapping({**base, "servers": {"s": {"issuer": "http://idp.example"}}})
    flow = tokenflow.config_from_mapping({**base, "servers": {"s": {"issuer": "https://idp.example/r"}}})
    server = flow.servers["s"]
    assert (server.issuer, server.token_url, server.client_auth) == ("https://idp.example/r", None, None)
