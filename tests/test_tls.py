"""TLS against a real HTTPS token server on loopback, with certificates from a trustme CA.

Verification is on by default and a failure stops the request before a byte of it is sent: the
server must count no token request (Team Server's password travels in the query string).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import profile_yaml, run_cli

import tokenflow
from tokenflow.errors import ConfigError, TransportError
from tokenflow.testing import EmbeddedServer

WriteConfig = Callable[..., Path]
ServerFactory = Callable[..., EmbeddedServer]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[EmbeddedServer]:
    """An HTTPS server whose certificate names 127.0.0.1 and localhost."""
    with EmbeddedServer(ssl_context=server_context(ca, "127.0.0.1", "localhost")) as server:
        yield server


def https_config(server: EmbeddedServer, dialect: str = "teamserver", **extra_server: Any) -> str:
    return profile_yaml(server, dialect=dialect, extra_server={"retries": 2, **extra_server})


def assert_nothing_sent(server: EmbeddedServer) -> None:
    assert server.counts["token"] == 0
    assert server.requests == []
    assert server.last_raw_request is None


@pytest.mark.parametrize("dialect", ["teamserver", "rfc6749"])
def test_unknown_ca_is_refused_before_the_request_is_sent(
    https_server: EmbeddedServer, write_config: WriteConfig, dialect: str
) -> None:
    path = write_config(https_config(https_server, dialect))
    session = tokenflow.load_config(path).session("prod")
    with pytest.raises(TransportError) as caught:
        session.token()
    message = str(caught.value)
    assert "TLS" in message
    assert "certificate" in message.lower()
    assert "verify" in message  # the option that fixes it
    assert https_server.default_account.password not in message
    assert "?" not in message
    assert caught.value.transient is False  # retrying cannot fix a certificate
    assert_nothing_sent(https_server)


def test_cli_refuses_unknown_ca_with_exit_4(
    https_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(https_config(https_server))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 4  # a TLS failure is a network failure: nothing was answered
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "certificate" in line.lower() and "verify" in line
    assert https_server.default_account.password not in result.stderr
    assert_nothing_sent(https_server)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_path_relative_to_the_config_file(
    ca: trustme.CA, write_config: WriteConfig, tmp_path: Path, host: str
) -> None:
    with EmbeddedServer(ssl_context=server_context(ca, host), host=host) as server:
        path = write_config(https_config(server, verify="certs/ca.pem"))
        (path.parent / "certs").mkdir()
        ca.cert_pem.write_to_path(str(path.parent / "certs" / "ca.pem"))

        token = tokenflow.load_config(path).session("prod").token()
        assert server.is_valid_access_token(token.access_token)
        assert server.url.startswith(f"https://{host}:")

        elsewhere = tmp_path / "elsewhere"  # the path is not relative to the working directory
        elsewhere.mkdir()
        result = run_cli("token", "prod", "-c", str(path), "--force-refresh", cwd=elsewhere)
        assert result.returncode == 0, result.stderr
        assert server.is_valid_access_token(result.stdout.strip())
        assert server.counts["token"] == 2


def test_verify_path_that_does_not_exist_is_a_config_error(
    https_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(https_config(https_server, verify="certs/missing.pem"))
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    message = str(caught.value)
    assert str(path) in message and "verify" in message and "missing.pem" in message
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 2
    assert_nothing_sent(https_server)


def test_certificate_for_another_name_is_refused(ca: trustme.CA, write_config: WriteConfig) -> None:
    """A certificate from the trusted CA, but for localhost only, while the URL says 127.0.0.1."""
    with EmbeddedServer(ssl_context=server_context(ca, "localhost")) as server:
        path = write_config(https_config(server, verify="ca.pem"))
        ca.cert_pem.write_to_path(str(path.parent / "ca.pem"))
        with pytest.raises(TransportError) as caught:
            tokenflow.load_config(path).session("prod").token()
        assert "TLS" in str(caught.value) and "127.0.0.1" in str(caught.value)
        assert_nothing_sent(server)


def test_verify_false_works_but_warns(
    https_server: EmbeddedServer, write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(https_config(https_server, verify=False))
    with caplog.at_level(logging.WARNING, logger="tokenflow"):
        token = tokenflow.load_config(path).session("prod").token()
    assert https_server.is_valid_access_token(token.access_token)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("tokenflow")]
    assert len(warnings) == 1
    assert "TLS verification is off" in warnings[0].getMessage()

    result = run_cli("token", "prod", "-c", str(path), "--force-refresh")
    assert result.returncode == 0, result.stderr
    assert https_server.is_valid_access_token(result.stdout.strip())  # stdout: the token only
    assert "TLS verification is off" in result.stderr
    assert "InsecureRequestWarning" not in result.stderr  # one warning, not one per request
