"""``python -m tokenflow.testing``: the embedded server run by hand, with a profile to try."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import run_cli


@contextmanager
def embedded(*args: str) -> Iterator[subprocess.Popen[str]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tokenflow.testing", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def stderr_until_serving(server: subprocess.Popen[str]) -> list[str]:
    assert server.stderr is not None
    lines: list[str] = []
    for line in server.stderr:
        if line.startswith("serving until"):
            return lines
        lines.append(line)
    raise AssertionError(f"the server ended early: {lines}")


def test_the_printed_profile_works_with_the_cli(tmp_path: Path) -> None:
    with embedded("--lifetime", "120") as server:
        assert server.stdout is not None
        profile = server.stdout.read()  # stdout holds the profile and ends after it
        info = stderr_until_serving(server)
        assert info[0].startswith("token endpoint: http://127.0.0.1:")
        assert profile.startswith("version: 1\n")
        assert yaml.safe_load(profile)["profiles"]["local"]["grant"] == "password"
        config = tmp_path / "tokenflow.yaml"
        config.write_text(profile)
        first = run_cli("token", "local", "-c", str(config))
        assert first.returncode == 0, first.stderr
        second = run_cli("token", "local", "-c", str(config), "--format", "json")
        assert second.returncode == 0 and first.stdout.strip() in second.stdout
        assert '"expires_in": 1' in second.stdout  # the --lifetime of 120 s


def test_write_saves_the_profile_in_one_command(tmp_path: Path) -> None:
    config = tmp_path / "tokenflow.yaml"
    with embedded("--write", str(config), "--grant", "client_credentials") as server:
        assert server.stdout is not None
        assert server.stdout.read() == ""
        info = stderr_until_serving(server)
        assert any(str(config) in line for line in info)
        assert os.stat(config).st_mode & 0o777 == 0o600
        assert yaml.safe_load(config.read_text())["profiles"]["local"]["grant"] == "client_credentials"
        done = run_cli("token", "local", "-c", str(config))
        assert done.returncode == 0, done.stderr
    again = subprocess.run([sys.executable, "-m", "tokenflow.testing", "--write", str(config)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize(("grant", "endpoint"), [("device_code", "device_authorization_url"),
                                                 ("authorization_code", "authorization_url")])
def test_interactive_grant_profiles(grant: str, endpoint: str) -> None:
    with embedded("--grant", grant) as server:
        assert server.stdout is not None
        profile = yaml.safe_load(server.stdout.read())
        stderr_until_serving(server)
        url = profile["servers"]["embedded"][endpoint]
        assert url.startswith("http://127.0.0.1:")
        local = profile["profiles"]["local"]
        assert local["grant"] == grant
        assert "client_secret" not in profile["clients"][local["client"]]
        port = int(url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the printed endpoint is served


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "tokenflow.testing", "--port", str(port)],
                              capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert f"cannot listen on port {port}" in done.stderr
    assert done.stdout == ""
