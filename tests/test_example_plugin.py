"""The example plugin package, installed with pip into a fresh virtual environment and used
through the ``tokenflow`` command, as a user would (examples/tokenflow-example-plugin).

The environment is built once for the module, offline: ``--system-site-packages`` makes tokenflow
and its dependencies importable (plus a ``.pth`` file when the tests themselves run in a virtual
environment, whose packages ``--system-site-packages`` would not see), and pip installs the
example with ``--no-deps --no-build-isolation --no-index``, so it needs the ``hatchling`` build
backend to be installed where the tests run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import site
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult

from tokenflow.testing import EmbeddedServer
from tokenflow.tokens import fingerprint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tokenflow-example-plugin"
ORIGIN = "entry point (tokenflow-example-plugin 0.1.0)"
BLOCKED = "blocked by $TOKENFLOW_DISABLE_PLUGINS"


@dataclass
class Venv:
    python: Path

    def run(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> CliResult:
        full_env = dict(os.environ)
        full_env.update(env or {})
        done = subprocess.run([str(self.python), *args], env=full_env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, check=False)
        return CliResult(done.returncode, done.stdout, done.stderr)

    def tokenflow(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        return self.run("-m", "tokenflow", *args, env=env)

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([str(self.python), *args], env={**os.environ, **(env or {})},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("the hatchling build backend is not installed: the example plugin cannot be "
                    "built offline (pip install hatchling)")
    home = tmp_path_factory.mktemp("example-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(home)], check=True, capture_output=True, timeout=120)
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    if sys.prefix != sys.base_prefix:
        # We run inside a virtual environment: its packages are not the "system" ones of the
        # interpreter the new environment is based on, so add them explicitly.
        outer = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(p)]
        (Path(purelib) / "_tokenflow_outer_site.pth").write_text(
            f"import site; list(map(site.addsitedir, {outer!r}))\n",
            encoding="utf-8")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-build-isolation", "--no-index", "--disable-pip-version-check", "--no-input", "--no-cache-dir",
         str(EXAMPLE)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr  # warnings are fine, failure is not
    return Venv(python)


def rows(table: str) -> dict[str, list[str]]:
    """``tokenflow plugins`` output as {plugin: [origin, registers]}."""
    out: dict[str, list[str]] = {}
    for line in table.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0]] = cells[1:]
    return out


def position(text: str, needle: str) -> tuple[int, int]:
    offset = text.index(needle)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def config_text(token_url: str, client_id: str) -> str:
    return f"""\
version: 1
servers:
  ts:
    token_url: {token_url}
    dialect: teamserver
    retries: 0
clients:
  app:
    client_id: {client_id}
    client_secret: {{dotenv: {{path: .env, key: CLIENT_SECRET}}}}
profiles:
  prod:
    server: ts
    client: app
    grant: password
    username: alice
    password: {{dotenv: {{path: .env, key: TS_PASSWORD}}}}
    store: {{sqlite: {{path: tokens.sqlite3}}}}
"""


def server_config(server: EmbeddedServer, write_config: Any) -> Path:
    path: Path = write_config(config_text(server.token_url, server.default_client.client_id))
    (path.parent / ".env").write_text(
        f"# test credentials\nexport TS_PASSWORD='{server.default_account.password}'\n"
        f'CLIENT_SECRET="{server.default_client.secret}"\n', encoding="utf-8")
    return path


def test_plugins_lists_the_entry_point(venv: Venv) -> None:
    result = venv.tokenflow("plugins")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table["example"] == [ORIGIN, "store sqlite, secret source dotenv, event observer"]
    assert table["tokenflow.file_store"] == ["built-in, required", "store file"]


def test_validate_accepts_the_plugin_and_locates_bad_options(venv: Venv, write_config: Any) -> None:
    good = config_text("http://127.0.0.1:9/token", "app")
    result = venv.tokenflow("validate", str(write_config(good)))
    assert (result.returncode, result.stdout) == (0, "ok: 1 file(s), 1 profile(s): prod\n")

    bad = (good.replace("path: tokens.sqlite3", "path: 42, lock_timeout: 0")
               .replace("key: TS_PASSWORD", "kye: TS_PASSWORD"))
    path = write_config(bad, name="bad.yaml")
    result = venv.tokenflow("validate", str(path))
    assert result.returncode == 2

    def at(needle: str) -> str:
        line, col = position(bad, needle)
        return f"{path}:{line}:{col}"

    assert result.stdout.splitlines() == [
        f"{at('dotenv: {path: .env, kye')}: $.profiles.prod.password.dotenv: 'key' is a required property",
        f"{at('kye')}: $.profiles.prod.password.dotenv.kye: unknown key 'kye'; allowed: key, path",
        f"{at('42')}: $.profiles.prod.store.sqlite.path: 42 is not of type 'string'",
        f"{at('0}')}: $.profiles.prod.store.sqlite.lock_timeout: "
        "0 is less than or equal to the minimum of 0",
    ]
    assert result.stderr == "tokenflow: 4 error(s)\n"


def test_token_uses_the_plugin_store_source_and_observer(
    venv: Venv, tokenflow_server: EmbeddedServer, write_config: Any, tmp_path: Path,
) -> None:
    path = server_config(tokenflow_server, write_config)
    events = tmp_path / "events.jsonl"
    env = {"TOKENFLOW_EXAMPLE_EVENTS": str(events)}
    first = venv.tokenflow("token", "prod", "-c", str(path), env=env)
    assert first.returncode == 0, first.stderr
    access = first.stdout.strip()
    assert tokenflow_server.is_valid_access_token(access)  # credentials came from .env

    second = venv.tokenflow("token", "prod", "-c", str(path), "--format", "header", env=env)
    assert second.stdout == f"Authorization: Bearer {access}\n"
    assert tokenflow_server.counts["password"] == 1  # the second run read the SQLite store

    database = path.parent / "tokens.sqlite3"
    assert database.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(database) as conn:
        stored = [json.loads(data) for (data,) in conn.execute("SELECT data FROM tokens")]
    assert [t["access_token"] for t in stored] == [access]
    assert not (Path(os.environ["TOKENFLOW_CACHE_DIR"]) / "tokens").exists()  # not the file store

    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["fetched", "stored", "cache_hit"]
    assert {r["profile"] for r in records} == {"prod"}
    assert {r["fingerprint"] for r in records} == {fingerprint(access)}
    assert records[0]["pid"] != records[2]["pid"]  # two processes
    text = events.read_text()
    for secret in (access, stored[0]["refresh_token"], tokenflow_server.default_account.password,
                   tokenflow_server.default_client.secret):
        assert secret not in text


def test_one_request_for_concurrent_processes(
    venv: Venv, tokenflow_server_factory: Any, write_config: Any,
) -> None:
    """lock(key) of the SQLite store gives single flight across processes."""
    server = tokenflow_server_factory(latency=0.5)
    path = server_config(server, write_config)
    runs = [venv.popen("-m", "tokenflow", "token", "prod", "-c", str(path)) for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, outputs
    assert len({out for out, _ in outputs}) == 1
    assert server.counts["token"] == 1


LOCKER = """
import sys
from pathlib import Path
from tokenflow.errors import StorageError
from tokenflow_example.sqlite_store import SQLiteStore

database, key, timeout, hold = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "hold"
try:
    with SQLiteStore(Path(database), lock_timeout=timeout).lock(key):
        print("locked", flush=True)
        if hold:
            sys.stdin.readline()
except StorageError as exc:
    print(f"refused: {exc}", flush=True)
"""


def test_lock_excludes_other_processes(venv: Venv, tmp_path: Path) -> None:
    database = str(tmp_path / "t.sqlite3")
    holder = venv.popen("-c", LOCKER, database, "key", "5", "hold")
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        waiter = venv.run("-c", LOCKER, database, "key", "0.3", "once")
        assert waiter.stdout.startswith("refused: another process has held the lock"), waiter
        other_key = venv.run("-c", LOCKER, database, "other", "0.3", "once")
        assert other_key.stdout == "locked\n"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    assert venv.run("-c", LOCKER, database, "key", "0.3", "once").stdout == "locked\n"


def test_disabling_the_entry_point_removes_the_plugin(venv: Venv, write_config: Any) -> None:
    env = {"TOKENFLOW_DISABLE_PLUGINS": "example"}
    listed = venv.tokenflow("plugins", env=env)
    assert rows(listed.stdout)["example"] == [BLOCKED, "-"]
    assert "sqlite" not in listed.stdout

    path = write_config(config_text("http://127.0.0.1:9/token", "app"))
    checked = venv.tokenflow("validate", str(path), env=env)
    assert checked.returncode == 2
    assert "unknown store 'sqlite'; known: file, keyring, memory, redis" in checked.stdout
    assert "unknown secret source 'dotenv'; known: command, env, file, keyring, prompt" in checked.stdout
    used = venv.tokenflow("token", "prod", "-c", str(path), env=env)
    assert used.returncode == 2
    assert "unknown secret source 'dotenv'" in used.stderr


def test_the_example_package_own_tests_pass(venv: Venv, tmp_path: Path) -> None:
    """Its tests use the ``tokenflow_server`` fixture that tokenflow's pytest11 entry point provides."""
    result = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bt'}",
                      cwd=EXAMPLE, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout
