"""Shared test helpers: isolated cache/config directories, config writers, a fake clock, CLI runs.

The embedded server fixtures (``tokenflow_server``, ``tokenflow_server_factory``) come from the
``tokenflow.testing.pytest_plugin`` entry point, exactly as users get them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tokenflow.testing import EmbeddedServer


class FakeClock:
    """A wall clock tests move by hand; pass it to both the session and the server."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache and config directories and a clean tokenflow environment."""
    root = tmp_path_factory.mktemp("home")
    cache = root / "cache"
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    for name in ("TOKENFLOW_CONFIG", "TOKENFLOW_PROFILE", "TOKENFLOW_PLUGINS",
                 "TOKENFLOW_DISABLE_PLUGINS", "http_proxy", "https_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return cache


@pytest.fixture
def cache_dir(isolated_dirs: Path) -> Path:
    return isolated_dirs


def profile_yaml(
    server: EmbeddedServer,
    *,
    dialect: str = "teamserver",
    client_auth: str = "basic",
    grant: str = "password",
    store: str = "file",
    extra_server: Mapping[str, object] | None = None,
    extra_profile: Mapping[str, object] | None = None,
    secrets_inline: bool = True,
    name: str = "prod",
) -> str:
    """A complete config for *server* (YAML text).

    Credentials are inline unless ``secrets_inline=False`` (then from $TS_CLIENT_SECRET, $TS_USER
    and $TS_PASSWORD, see :func:`secret_env`). ``extra_server``/``extra_profile`` add or override
    keys (values are dumped as YAML flow scalars/mappings).
    """
    import json

    client = server.default_client
    account = server.default_account
    if secrets_inline:
        secret, user, password = client.secret, account.username, account.password
    else:
        secret, user, password = "{env: TS_CLIENT_SECRET}", "{env: TS_USER}", "{env: TS_PASSWORD}"
    revoke = server.revoke_url_template if dialect == "teamserver" else server.rfc7009_revoke_url
    server_keys: dict[str, object] = {
        "token_url": server.token_url, "dialect": dialect, "client_auth": client_auth,
        "revoke_url": revoke, "retries": 0,
    }
    server_keys.update(extra_server or {})
    profile_keys: dict[str, object] = {"server": "ts", "client": "app", "grant": grant,
                                       "store": store}
    if grant == "password":
        profile_keys["username"] = user
        profile_keys["password"] = password
    profile_keys.update(extra_profile or {})

    def scalar(value: object) -> str:
        if isinstance(value, str) and value.startswith("{"):
            return value  # a YAML flow mapping written by the caller
        return json.dumps(value)

    lines = ["version: 1", "servers:", "  ts:"]
    lines += [f"    {k}: {scalar(v)}" for k, v in server_keys.items()]
    lines += ["clients:", "  app:", f"    client_id: {json.dumps(client.client_id)}",
              f"    client_secret: {scalar(secret)}", "profiles:", f"  {name}:"]
    lines += [f"    {k}: {scalar(v)}" for k, v in profile_keys.items()]
    return "\n".join(lines) + "\n"


def secret_env(server: EmbeddedServer) -> dict[str, str]:
    """The variables ``profile_yaml(secrets_inline=False)`` reads."""
    return {
        "TS_CLIENT_SECRET": server.default_client.secret,
        "TS_USER": server.default_account.username,
        "TS_PASSWORD": server.default_account.password,
    }


@pytest.fixture
def write_config(tmp_path: Path) -> Iterator[object]:
    """``write_config(text, name="tokenflow.yaml") -> Path``: a config file in a temp dir."""

    def write(text: str, name: str = "tokenflow.yaml") -> Path:
        path = tmp_path / "config" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    yield write


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> CliResult:
    """Run ``python -m tokenflow ARGS`` in a real subprocess with the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "tokenflow", *args],
        env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)
