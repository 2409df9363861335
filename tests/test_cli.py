"""The ``tokenflow`` command end to end: real subprocesses against the embedded server.

Every command of DESIGN.md section 2, every output format, every exit code (0, 1, 2, 3, 130)
and the config discovery order, each checked through ``python -m tokenflow`` as users run it.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult, profile_yaml, run_cli, secret_env

from tokenflow.base import cachefile
from tokenflow.testing import EmbeddedServer, success_response

WriteConfig = Callable[..., Path]
ServerFactory = Callable[..., EmbeddedServer]

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# -- helpers -------------------------------------------------------------------------------------
def one_line(text: str) -> str:
    """The single line of *text*; fails when there are more (errors are one line)."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    return lines[0]


def epoch(iso: str) -> float:
    assert ISO_Z.match(iso), iso
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def issued(server: EmbeddedServer, access_token: str) -> tuple[str | None, str, float]:
    """(username, scope, expires_at) of an access token the server issued."""
    for token in server.issued_tokens():
        if token.access_token == access_token:
            return token.username, token.scope, token.expires_at
    raise AssertionError("the server did not issue this token")


def token_files(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").glob("*.json"))


def rewrite_expiry(path: Path, expires_in: float, lifetime: float = 3600.0) -> None:
    """Move a cached token's life on, as time passing would (the checksum stays valid)."""
    data = cachefile.decode(path.read_bytes())
    data["expires_at"] = time.time() + expires_in
    data["obtained_at"] = data["expires_at"] - lifetime
    path.write_bytes(cachefile.encode(data))


def table(stdout: str) -> list[list[str]]:
    """The rows of a table the CLI printed, header first, cells split on runs of spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line.strip()]


def two_profiles(server: EmbeddedServer) -> str:
    """``prod`` (scope "read write") and ``other`` (extends prod, scope "read")."""
    return profile_yaml(server) + "  other:\n    extends: prod\n    scope: read\n"


@pytest.fixture
def server(tokenflow_server: EmbeddedServer) -> EmbeddedServer:
    return tokenflow_server


@pytest.fixture
def config(server: EmbeddedServer, write_config: WriteConfig) -> Path:
    return write_config(profile_yaml(server))


def get_token(config: Path, *extra: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli("token", "prod", "-c", str(config), *extra, env=env)


# -- token: the five formats ---------------------------------------------------------------------
def test_token_raw_prints_the_bare_token(server: EmbeddedServer, config: Path) -> None:
    result = get_token(config, "--format", "raw")
    assert result.returncode == 0, result.stderr
    token = result.stdout[:-1]
    assert result.stdout == token + "\n" and token.strip() == token and token
    assert server.is_valid_access_token(token)
    assert server.counts["password"] == 1
    assert result.stderr == ""
    # raw is the default format
    assert run_cli("token", "prod", "-c", str(config)).stdout == result.stdout


def test_token_header(server: EmbeddedServer, config: Path) -> None:
    result = get_token(config, "--format", "header")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"Authorization: Bearer (\S+)\n", result.stdout)
    assert match is not None, result.stdout
    assert server.is_valid_access_token(match[1])


def test_token_json(server: EmbeddedServer, config: Path) -> None:
    result = get_token(config, "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"access_token", "token_type", "expires_at", "expires_in", "scope"}
    assert data["token_type"] == "Bearer"  # Team Server says "bearer"
    assert data["scope"] == "read write"
    _user, _scope, server_expiry = issued(server, data["access_token"])
    assert abs(epoch(data["expires_at"]) - server_expiry) <= 3
    assert 86_300 <= data["expires_in"] <= 86_400
    refresh = next(t.refresh_token for t in server.issued_tokens())
    assert refresh and refresh not in result.stdout


@pytest.mark.parametrize("nasty", [False, True], ids=["uuid", "shell-metacharacters"])
def test_token_env_is_safe_to_eval_in_a_posix_shell(
    server: EmbeddedServer, config: Path, nasty: bool
) -> None:
    expected = None
    if nasty:  # what a shell would expand, split or end a quote on, within the RFC 6750 syntax
        # (a token with quotes, spaces or $ is refused before printing: tests/test_responses.py)
        expected = "it-s~HOME.id+/id/q_end=="
        server.script(success_response(access_token=expected))
    script = (
        f'eval "$({shlex.quote(sys.executable)} -m tokenflow token prod '
        f'-c {shlex.quote(str(config))} --format env)" || exit 9; '
        'printf %s "$TOKENFLOW_ACCESS_TOKEN"; printf "|%s" "$TOKENFLOW_EXPIRES_AT"'
    )
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token, _, expires_at = done.stdout.partition("|")
    if expected is None:
        assert server.is_valid_access_token(token)
        expected = token
    assert token == expected
    assert abs(epoch(expires_at) - (time.time() + 86_399)) < 60
    # and the raw text is exactly the two export lines
    lines = get_token(config, "--format", "env").stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("export TOKENFLOW_ACCESS_TOKEN=")
    assert lines[1] == f"export TOKENFLOW_EXPIRES_AT='{expires_at}'"


def test_token_exec_credential_is_a_kubectl_exec_credential(
    server: EmbeddedServer, config: Path
) -> None:
    result = get_token(config, "--format", "exec-credential")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["apiVersion"] == "client.authentication.k8s.io/v1"
    assert data["kind"] == "ExecCredential"
    assert set(data) == {"apiVersion", "kind", "status"}
    assert set(data["status"]) == {"token", "expirationTimestamp"}
    token = data["status"]["token"]
    assert server.is_valid_access_token(token)
    _user, _scope, server_expiry = issued(server, token)
    assert abs(epoch(data["status"]["expirationTimestamp"]) - server_expiry) <= 3


def test_token_unknown_format_is_a_usage_error(config: Path) -> None:
    result = get_token(config, "--format", "yaml")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_force_refresh_makes_a_new_request(server: EmbeddedServer, config: Path) -> None:
    first = get_token(config).stdout.strip()
    second = get_token(config, "--force-refresh")
    assert second.returncode == 0, second.stderr
    new = second.stdout.strip()
    assert new != first
    assert server.counts["refresh_token"] == 1 and server.counts["password"] == 1
    assert server.is_valid_access_token(new) and not server.is_valid_access_token(first)
    assert get_token(config).stdout.strip() == new  # the new token was cached
    assert server.counts["token"] == 2


# -- default profile -----------------------------------------------------------------------------
def test_default_profile_from_environment(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(two_profiles(server))
    chosen = run_cli("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"})
    assert chosen.returncode == 0, chosen.stderr
    assert issued(server, chosen.stdout.strip())[1] == "read"
    # an explicit name wins over $TOKENFLOW_PROFILE
    named = run_cli("token", "prod", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"})
    assert issued(server, named.stdout.strip())[1] == "read write"
    # two profiles and no choice: an error listing them, and no request
    before = server.counts["token"]
    neither = run_cli("token", "-c", str(path))
    assert neither.returncode == 2
    line = one_line(neither.stderr)
    assert line.startswith("tokenflow: error: ") and "other" in line and "prod" in line
    assert server.counts["token"] == before


def test_the_only_profile_is_the_default(server: EmbeddedServer, config: Path) -> None:
    result = run_cli("token", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert server.is_valid_access_token(result.stdout.strip())


# -- validate, profiles, status ------------------------------------------------------------------
def test_validate_ok(config: Path) -> None:
    result = run_cli("validate", str(config))
    assert result.returncode == 0
    assert result.stdout == "ok: 1 file(s), 1 profile(s): prod\n"


def test_validate_reports_every_error_with_its_place(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = profile_yaml(server, extra_server={"dialect": "nosuch"},
                        extra_profile={"bogus_key": 1})
    path = write_config(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    source = text.splitlines()
    for line, needle, json_path in zip(
        lines, ('"nosuch"', "bogus_key"), ("$.servers.ts.dialect", "$.profiles.prod.bogus_key"),
        strict=True,
    ):
        number = next(i for i, row in enumerate(source, 1) if needle in row)
        column = source[number - 1].index(needle) + 1
        assert line.startswith(f"{path}:{number}:{column}: {json_path}: "), line
    assert "2 error(s)" in result.stderr
    # -c works for validate as for every command
    assert run_cli("validate", "-c", str(path)).returncode == 2


def test_profiles_lists_every_profile_and_marks_the_default(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(two_profiles(server))
    result = run_cli("profiles", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"})
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0][:4] == ["PROFILE", "SERVER", "GRANT", "STORE"]
    assert sorted(r[0] for r in rows[1:]) == ["other*", "prod"]
    assert all(r[1:4] == ["ts", "password", "file"] for r in rows[1:])
    assert server.counts["token"] == 0


def test_status_reads_the_cache_without_network(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    path = write_config(two_profiles(server))
    token = run_cli("token", "prod", "-c", str(path)).stdout.strip()
    server.reset_counts()

    rows = {r[0]: r for r in table(run_cli("status", "-c", str(path)).stdout)[1:]}
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert rows["prod"][1] == "fresh" and ISO_Z.match(rows["prod"][2])
    assert rows["prod"][4:] == ["yes", fingerprint, "file"]
    assert rows["other"][1:] == ["absent", "-", "-", "no", "-", "file"]
    assert token not in run_cli("status", "-c", str(path)).stdout

    (entry,) = token_files(cache_dir)
    rewrite_expiry(entry, expires_in=30)
    assert table(run_cli("status", "prod", "-c", str(path)).stdout)[1][1] == "expiring"
    rewrite_expiry(entry, expires_in=-30)
    row = table(run_cli("status", "prod", "-c", str(path)).stdout)[1]
    assert row[1] == "expired" and row[3] == "expired"
    assert server.counts["token"] == 0  # status never asks the server


def test_status_shows_a_broken_profile_without_hiding_the_others(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = profile_yaml(server) + (
        "  broken:\n    server: ts\n    client: app\n    grant: password\n"
        "    username: {env: TOKENFLOW_TEST_UNSET_USER}\n    password: x\n"
    )
    path = write_config(text)
    result = run_cli("status", "-c", str(path))
    rows = {r[0]: r for r in table(result.stdout)[1:]}
    assert result.returncode == 1
    assert rows["prod"][1] == "absent"
    assert rows["broken"][1] == "error"
    assert "TOKENFLOW_TEST_UNSET_USER is not set" in result.stdout
    alone = run_cli("status", "broken", "-c", str(path))
    assert alone.returncode == 2 and "TOKENFLOW_TEST_UNSET_USER" in alone.stderr


# -- logout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["teamserver", "rfc6749"])
def test_logout_forgets_and_logout_revoke_revokes(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path, dialect: str
) -> None:
    path = write_config(profile_yaml(server, dialect=dialect))
    first = run_cli("token", "prod", "-c", str(path)).stdout.strip()
    result = run_cli("logout", "prod", "-c", str(path))
    assert result.returncode == 0
    assert result.stderr == "tokenflow: prod: removed\n"
    assert token_files(cache_dir) == []
    assert server.is_valid_access_token(first)  # plain logout does not revoke
    assert server.counts["revoke"] == 0

    second = run_cli("token", "prod", "-c", str(path)).stdout.strip()
    result = run_cli("logout", "prod", "--revoke", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "tokenflow: prod: revoked and removed\n"
    assert server.counts["revoke"] == 1
    assert not server.is_valid_access_token(second)
    assert token_files(cache_dir) == []

    again = run_cli("logout", "prod", "--revoke", "-c", str(path))
    assert again.returncode == 0 and again.stderr == "tokenflow: prod: nothing cached\n"
    assert server.counts["revoke"] == 1


# -- exec ----------------------------------------------------------------------------------------
SHOW_ENV = "import os, sys; print(os.environ.get(sys.argv[1], '<unset>')); sys.exit(int(sys.argv[2]))"


def test_exec_puts_the_token_in_the_environment_and_returns_the_exit_code(
    server: EmbeddedServer, config: Path
) -> None:
    result = run_cli("exec", "prod", "-c", str(config), "--",
                     sys.executable, "-c", SHOW_ENV, "TOKENFLOW_ACCESS_TOKEN", "7")
    assert result.returncode == 7, result.stderr
    assert server.is_valid_access_token(result.stdout.strip())


@pytest.mark.parametrize("where", ["after-profile", "before-profile", "equals"])
def test_exec_env_var(server: EmbeddedServer, config: Path, where: str) -> None:
    options = {
        "after-profile": ["exec", "prod", "--env-var", "MY_TOKEN", "-c", str(config)],
        "before-profile": ["exec", "--env-var", "MY_TOKEN", "-c", str(config), "prod"],
        "equals": ["exec", "prod", "--env-var=MY_TOKEN", f"--config={config}"],
    }[where]
    result = run_cli(*options, "--", sys.executable, "-c", SHOW_ENV, "MY_TOKEN", "0")
    assert result.returncode == 0, result.stderr
    assert server.is_valid_access_token(result.stdout.strip())


def test_exec_usage_errors(config: Path) -> None:
    missing = run_cli("exec", "prod", "-c", str(config))
    assert missing.returncode == 2
    assert one_line(missing.stderr).startswith("tokenflow: error: exec needs a command")
    absent = run_cli("exec", "prod", "-c", str(config), "--", "no-such-command-tokenflow-test")
    assert absent.returncode == 127
    assert "no-such-command-tokenflow-test" in one_line(absent.stderr)


def test_exec_child_killed_by_a_signal_exits_like_a_shell(config: Path) -> None:
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = run_cli("exec", "prod", "-c", str(config), "--", sys.executable, "-c", kill)
    assert result.returncode == 128 + signal.SIGTERM


# -- schema, plugins, demo -----------------------------------------------------------------------
def test_schema_prints_the_json_schema_with_plugin_parts() -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"servers", "clients", "profiles", "version"} <= set(schema["properties"])
    assert '"teamserver"' in result.stdout and '"rfc6749"' in result.stdout  # registered dialects


def test_plugins_lists_builtins_required_and_blocked() -> None:
    result = run_cli("plugins", env={"TOKENFLOW_DISABLE_PLUGINS": "tokenflow.keyring,tokenflow.file_store"})
    assert result.returncode == 0, result.stderr
    rows = {r[0]: r for r in table(result.stdout)[1:]}
    assert rows["tokenflow.file_store"][1:] == ["built-in, required", "store file"]
    assert rows["tokenflow.rfc6749"][1] == "built-in, required"
    assert rows["tokenflow.teamserver"][2] == "dialect teamserver"
    assert rows["tokenflow.keyring"][1] == "blocked by $TOKENFLOW_DISABLE_PLUGINS"
    assert "tokenflow.env_source" in rows and "tokenflow.logging_sink" in rows


def test_demo_fast() -> None:
    result = run_cli("demo", "--fast", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for word in ("fetched", "refreshed", "refresh_rejected", "reauthenticated", "login_required",
                 "device code", "Demo complete"):
        assert word in result.stdout


# -- exit codes ----------------------------------------------------------------------------------
def test_wrong_password_exits_1_with_one_line(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(profile_yaml(server, secrets_inline=False))
    env = {**secret_env(server), "TS_PASSWORD": "not-the-password"}
    result = run_cli("token", "prod", "-c", str(path), env=env)
    assert result.returncode == 1
    assert re.fullmatch(r"tokenflow: error: profile 'prod': .*invalid_grant.*Bad credentials; "
                        r"check the username and password of profile 'prod'", one_line(result.stderr))
    assert "not-the-password" not in result.stderr and result.stdout == ""


def test_wrong_client_secret_exits_1(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(profile_yaml(server, secrets_inline=False))
    env = {**secret_env(server), "TS_CLIENT_SECRET": "not-the-secret"}
    result = run_cli("token", "prod", "-c", str(path), env=env)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "invalid_client" in line
    assert line.endswith("check client_id and client_secret of client 'app' (used by profile 'prod')")
    assert "not-the-secret" not in result.stderr


def test_unreachable_server_exits_4(write_config: WriteConfig) -> None:
    """A network failure has its own exit code, so scripts can retry it (issue 9, 17)."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with EmbeddedServer() as template:
        text = profile_yaml(template)
    path = write_config(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", text))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 4
    assert f"cannot connect to 127.0.0.1:{port}" in one_line(result.stderr)


def test_unknown_profile_exits_2(config: Path) -> None:
    result = run_cli("token", "nope", "-c", str(config))
    assert result.returncode == 2
    assert one_line(result.stderr) == "tokenflow: error: unknown profile 'nope'; profiles: prod"


def test_unset_variable_exits_2_at_its_place(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = profile_yaml(server, extra_profile={"scope": "${TF_TEST_UNSET_SCOPE}"})
    path = write_config(text)
    number, row = next((i, r) for i, r in enumerate(text.splitlines(), 1) if "TF_TEST_UNSET" in r)
    column = row.index('"${') + 1
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"tokenflow: error: {path}:{number}:{column}: $.profiles.prod.scope: ")
    assert "TF_TEST_UNSET_SCOPE" in line and "not set" in line
    assert server.counts["token"] == 0


def test_missing_env_source_exits_2(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(profile_yaml(server, secrets_inline=False))
    env = secret_env(server)
    del env["TS_PASSWORD"]
    result = run_cli("token", "prod", "-c", str(path), env=env)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("tokenflow: error: ") and "TS_PASSWORD" in line and "not set" in line
    assert server.counts["token"] == 0


def test_missing_secret_file_exits_2(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(profile_yaml(server, extra_profile={"password": "{file: no-such-secret}"}))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 2
    assert "no-such-secret" in one_line(result.stderr)


def test_malformed_yaml_exits_2_with_file_line_col(write_config: WriteConfig) -> None:
    path = write_config("version: 1\nservers:\n  ts:\n    token_url: 'https://x.example/token\n")
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 2
    assert re.fullmatch(rf"tokenflow: error: {re.escape(str(path))}:\d+:\d+: YAML syntax error: .+",
                        one_line(result.stderr))


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["token", "--bogus"]])
def test_bad_usage_exits_2(argv: list[str]) -> None:
    assert run_cli(*argv).returncode == 2


BROKEN_STORE = '''
import contextlib
from tokenflow import hookimpl

class BrokenStore:
    def load(self, key):
        raise RuntimeError("store exploded while loading " + key)
    def save(self, key, token):
        pass
    def delete(self, key):
        pass
    def lock(self, key):
        return contextlib.nullcontext()

@hookimpl
def tokenflow_register_stores(register):
    register("broken", lambda options, context: BrokenStore())
'''


def test_a_bug_exits_3_and_writes_a_private_traceback(
    server: EmbeddedServer, write_config: WriteConfig, tmp_path: Path, cache_dir: Path
) -> None:
    (tmp_path / "tf_broken_store.py").write_text(BROKEN_STORE)
    path = write_config(profile_yaml(server, store="broken"))
    env = {"PYTHONPATH": str(tmp_path), "TOKENFLOW_PLUGINS": "tf_broken_store"}
    result = run_cli("token", "prod", "-c", str(path), env=env)
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert "bug" in line and "RuntimeError" in line
    match = re.search(r"traceback written to (\S+)$", line)
    assert match is not None, line
    crash = Path(match[1])
    assert crash.parent == cache_dir / "crash"
    assert stat.S_IMODE(crash.stat().st_mode) == 0o600
    text = crash.read_text()
    assert text.startswith("Traceback (most recent call last):")
    assert "RuntimeError: store exploded while loading" in text
    assert "tf_broken_store.py" in text


def test_sigint_during_exec_exits_130(config: Path) -> None:
    child = "import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenflow", "exec", "prod", "-c", str(config), "--",
         sys.executable, "-c", child],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"  # the child runs: tokenflow waits for it
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert err == "tokenflow: interrupted\n"


def test_sigint_during_a_slow_token_request_exits_130(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig, cache_dir: Path
) -> None:
    slow = tokenflow_server_factory(latency=3.0)
    path = write_config(profile_yaml(slow))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenflow", "token", "prod", "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while slow.counts["token"] == 0:  # wait until the request is at the server
            assert time.monotonic() < deadline and proc.poll() is None, "no request arrived"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert out == "" and err == "tokenflow: interrupted\n"
    assert token_files(cache_dir) == []


# -- config discovery ----------------------------------------------------------------------------
def listed(result: CliResult) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [row[0] for row in table(result.stdout)[1:]]


def test_config_discovery_order(server: EmbeddedServer, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "tokenflow.yaml").write_text(profile_yaml(server, name="from_cwd"))
    env_file = tmp_path / "env.yaml"
    env_file.write_text(profile_yaml(server, name="from_env"))
    flag_file = tmp_path / "flag.yaml"
    flag_file.write_text(profile_yaml(server, name="from_flag"))
    user_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "tokenflow"
    user_dir.mkdir(parents=True)
    (user_dir / "mine.yaml").write_text(profile_yaml(server, name="from_user_dir"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    env = {"TOKENFLOW_CONFIG": str(env_file)}
    assert listed(run_cli("profiles", "-c", str(flag_file), env=env, cwd=cwd)) == ["from_flag"]
    assert listed(run_cli("profiles", env=env, cwd=cwd)) == ["from_env"]
    assert listed(run_cli("profiles", cwd=cwd)) == ["from_cwd"]
    assert listed(run_cli("profiles", cwd=elsewhere)) == ["from_user_dir"]
    # TOKENFLOW_CONFIG holds several paths joined by the OS path separator, merged
    extra = tmp_path / "extra.yaml"
    extra.write_text("version: 1\nprofiles:\n  from_extra:\n    extends: from_env\n")
    both = {"TOKENFLOW_CONFIG": os.pathsep.join([str(env_file), str(extra)])}
    assert listed(run_cli("profiles", env=both, cwd=elsewhere)) == ["from_env", "from_extra"]
    # and a token really comes from the discovered file
    fetched = run_cli("token", cwd=cwd)
    assert fetched.returncode == 0, fetched.stderr
    assert server.is_valid_access_token(fetched.stdout.strip())


def test_no_config_anywhere_exits_2(tmp_path: Path) -> None:
    result = run_cli("profiles", cwd=tmp_path)
    assert result.returncode == 2
    assert "no config found" in one_line(result.stderr)


def test_warnings_reach_stderr_as_one_tokenflow_line(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    """A damaged cache file is moved aside with a warning the user sees, in the CLI's style."""
    path = write_config(profile_yaml(server))
    first = run_cli("token", "prod", "-c", str(path))
    (entry,) = token_files(cache_dir)
    entry.write_text("{ damaged")
    again = run_cli("token", "prod", "-c", str(path))
    assert again.returncode == 0 and again.stdout == first.stdout  # Spring hands the same token
    lines = again.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenflow: warning: cached token "), again.stderr
    assert "moved it to" in lines[0]


# -- global options before or after the command (issue 9, 14) ------------------------------------
def test_global_options_work_before_the_command(
    server: EmbeddedServer, config: Path, tmp_path: Path
) -> None:
    """``tokenflow -c other.yaml token p`` must read other.yaml, not ./tokenflow.yaml."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    decoy = EmbeddedServer()
    with decoy:
        (cwd / "tokenflow.yaml").write_text(profile_yaml(decoy))
        result = run_cli("-c", str(config), "token", "prod", cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert server.is_valid_access_token(result.stdout.strip())
        assert decoy.counts["token"] == 0
    missing = run_cli("-c", str(tmp_path / "nonexistent.yaml"), "validate")
    assert missing.returncode == 2 and "nonexistent.yaml" in missing.stdout
    shown = run_cli("-v", "exec", "prod", "-c", str(config), "--",
                    sys.executable, "-c", SHOW_ENV, "TOKENFLOW_ACCESS_TOKEN", "0")
    assert shown.returncode == 0, shown.stderr
    assert server.is_valid_access_token(shown.stdout.strip())
    assert "tokenflow" in shown.stderr  # -v before the command logs


def test_config_options_before_and_after_the_command_add_up(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    first = write_config(profile_yaml(server, name="one"), name="one.yaml")
    second = write_config(profile_yaml(server, name="two").replace("servers:\n  ts:", "servers:\n  ts2:")
                          .replace("clients:\n  app:", "clients:\n  app2:")
                          .replace("server: \"ts\"", "server: \"ts2\"")
                          .replace("client: \"app\"", "client: \"app2\""), name="two.yaml")
    result = run_cli("-c", str(first), "profiles", "--format", "json", "-c", str(second))
    assert result.returncode == 0, result.stderr
    assert [p["name"] for p in json.loads(result.stdout)["profiles"]] == ["one", "two"]


# -- exit codes of ordinary failures (issue 9, 13 and 17) ----------------------------------------
def test_exec_of_a_file_without_execute_permission_exits_126(config: Path, tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_cli("exec", "prod", "-c", str(config), "--", str(script))
    assert result.returncode == 126
    line = one_line(result.stderr)
    assert line.startswith("tokenflow: error: cannot run ") and "ermission denied" in line
    directory = run_cli("exec", "prod", "-c", str(config), "--", str(tmp_path))
    assert directory.returncode == 126, directory.stderr


@pytest.mark.parametrize("name", ["A=B", "", "A\x01=", "=A"])
def test_exec_env_var_that_cannot_be_a_variable_is_a_usage_error(config: Path, name: str) -> None:
    result = run_cli("exec", "prod", "-c", str(config), "--env-var", name, "--", "true")
    assert result.returncode == 2, result.stderr
    assert "not an environment variable name" in result.stderr
    assert "internal error" not in result.stderr


def test_exec_env_var_with_nul_is_a_usage_error(config: Path) -> None:
    """A NUL cannot even be passed in argv; ``--env-var=`` (empty) is the nearest case."""
    result = run_cli("exec", "prod", "-c", str(config), "--env-var=", "--", "true")
    assert result.returncode == 2 and "not an environment variable name" in result.stderr


@pytest.mark.parametrize("path", ["cached", "full"])
def test_a_reader_that_left_is_not_an_error(config: Path, path: str) -> None:
    """``tokenflow token p | true``: no BrokenPipeError traceback, on either path."""
    assert get_token(config).returncode == 0  # the cache is warm: the next run takes the fast path
    extra = ["--force-refresh"] if path == "full" else []
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before tokenflow writes
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tokenflow", "token", "prod", "-c", str(config), *extra],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 0


@pytest.mark.parametrize("path", ["cached", "full"])
@pytest.mark.parametrize("stdout", ["full-disk", "closed"])
def test_output_that_cannot_be_written_is_an_error_not_a_bug(
    config: Path, path: str, stdout: str
) -> None:
    assert get_token(config).returncode == 0
    extra = ["--force-refresh"] if path == "full" else []
    argv = [sys.executable, "-m", "tokenflow", "token", "prod", "-c", str(config), *extra]
    if stdout == "full-disk":
        with open("/dev/full", "w") as full:
            done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    else:
        done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *argv], stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("tokenflow: error: ") and "standard output" in line


def test_an_absurd_cached_expiry_is_damage_not_a_crash(config: Path, cache_dir: Path) -> None:
    """A token cached with an expiry of 1e300 s (a doctored file) made status exit 3 and the
    cached path print a raw traceback (issue 9, 13). It is a damaged entry: moved aside with one
    warning, and every command goes on with a new token."""
    assert get_token(config).returncode == 0
    for argv in (["token", "prod", "-f", "json"], ["token", "prod", "-f", "env"], ["status"],
                 ["status", "--format", "json"]):
        (entry,) = token_files(cache_dir)
        rewrite_expiry(entry, expires_in=1e300, lifetime=2e300)
        result = run_cli(*argv, "-c", str(config))
        assert result.returncode == 0, (argv, result.stderr)
        assert "Traceback" not in result.stderr
        if argv[0] == "token":  # moved aside by the lock holder, a new token fetched and printed
            assert "was damaged (expires_at is not a time between 1970 and 9999)" in result.stderr
            assert "9999" not in result.stdout and result.stdout.strip()
        else:  # status reads without the lock: the entry counts as absent, nothing is moved
            assert "absent" in result.stdout and "9999" not in result.stdout
            assert get_token(config).returncode == 0
        for moved in cache_dir.glob("tokens/*.corrupt-*"):
            moved.unlink()


def test_help_documents_every_exit_code() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    codes = re.findall(r"^  (\d+)\s+\S", result.stdout, re.M)
    assert codes == ["0", "1", "2", "3", "4", "130"]
    assert re.search(r"^  4\s+network failure", result.stdout, re.M)


def test_tls_failure_exits_4(write_config: WriteConfig) -> None:
    """A server whose certificate is not trusted never answered: a network failure."""
    import ssl

    import trustme

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)  # a CA the client does not trust
    with EmbeddedServer(ssl_context=context) as tls_server:
        path = write_config(profile_yaml(tls_server))
        result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 4, result.stderr
    assert "TLS" in one_line(result.stderr)


# -- messages that help (issue 9, 16) ------------------------------------------------------------
def test_unknown_profile_suggests_the_closest_name(config: Path) -> None:
    result = run_cli("token", "prdo", "-c", str(config))
    assert result.returncode == 2
    assert one_line(result.stderr) == ("tokenflow: error: unknown profile 'prdo'; did you mean "
                                       "'prod'? (profiles: prod)")


def test_a_thousand_profiles_are_never_listed_whole(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = profile_yaml(server) + "".join(f"  team{i:04d}:\n    extends: prod\n" for i in range(1000))
    path = write_config(text)
    for argv in (["token", "team0500x"], ["logout"], ["status", "nope"]):
        result = run_cli(*argv, "-c", str(path))
        assert result.returncode == 2, result.stderr
        line = one_line(result.stderr)
        assert len(line) < 300, line
        assert "more; see `tokenflow profiles`" in line
    assert "did you mean 'team0500'" in run_cli("token", "team0500x", "-c", str(path)).stderr


def test_an_unknown_tokenflow_profile_says_where_the_name_came_from(config: Path) -> None:
    result = run_cli("token", "-c", str(config), env={"TOKENFLOW_PROFILE": "prdo"})
    assert result.returncode == 2
    assert one_line(result.stderr) == ("tokenflow: error: unknown profile 'prdo' (from "
                                       "$TOKENFLOW_PROFILE); did you mean 'prod'? (profiles: prod)")


def test_unknown_command_suggests_the_closest(config: Path) -> None:
    result = run_cli("tokn", "prod")
    assert result.returncode == 2
    assert "unknown command 'tokn'; did you mean 'token'?" in result.stderr
    before = run_cli("-c", str(config), "stauts")
    assert before.returncode == 2 and "did you mean 'status'?" in before.stderr


def test_unknown_key_suggests_the_closest(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(profile_yaml(server, extra_profile={"scoep": "read"}))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "unknown key 'scoep'; did you mean 'scope'" in result.stdout


def test_a_failed_revocation_names_the_endpoint_and_its_answer(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    base = server.token_url.split("/api/")[0].split("/oauth/")[0]
    path = write_config(profile_yaml(server, extra_server={"revoke_url": f"{base}/no-such/{{token}}"}))
    token = run_cli("token", "prod", "-c", str(path)).stdout.strip()
    result = run_cli("logout", "prod", "--revoke", "-c", str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"revocation endpoint {base}/no-such/{{token}} answered HTTP 404" in line, line
    assert "token request refused" not in line and token not in line
    assert token_files(cache_dir) == []  # logged out all the same


# -- machine-readable output and $TOKENFLOW_PROFILE (issue 9, 19) ---------------------------------
def test_status_profiles_validate_plugins_format_json(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(two_profiles(server))
    token = run_cli("token", "prod", "-c", str(path)).stdout.strip()

    status = json.loads(run_cli("status", "-c", str(path), "--format", "json").stdout)
    rows = {r["profile"]: r for r in status["profiles"]}
    assert set(rows["prod"]) == {"profile", "state", "expires_at", "expires_in", "refresh_token",
                                 "fingerprint", "store", "scope", "error"}
    assert rows["prod"]["state"] == "fresh" and ISO_Z.match(rows["prod"]["expires_at"])
    assert rows["prod"]["fingerprint"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert rows["prod"]["refresh_token"] is True and rows["prod"]["error"] is None
    assert rows["other"]["state"] == "absent" and rows["other"]["expires_at"] is None

    listed = run_cli("profiles", "--format", "json", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"})
    profiles = json.loads(listed.stdout)
    assert profiles["default"] == "other"
    assert profiles["profiles"][0] == {"name": "other", "server": "ts", "grant": "password",
                                       "store": "file", "description": "", "default": True}

    valid = json.loads(run_cli("validate", str(path), "--format", "json").stdout)
    assert valid == {"ok": True, "files": [str(path)], "profiles": ["other", "prod"], "errors": []}
    broken = write_config(profile_yaml(server, extra_server={"dialect": "nosuch"}), name="bad.yaml")
    invalid = run_cli("validate", "--format", "json", str(broken))
    assert invalid.returncode == 2
    report = json.loads(invalid.stdout)
    assert report["ok"] is False
    (error,) = report["errors"]
    assert error["file"] == str(broken) and error["path"] == "$.servers.ts.dialect"
    assert error["line"] > 0 and error["column"] > 0 and "nosuch" in error["message"]

    plugins = json.loads(run_cli("plugins", "--format", "json",
                                 env={"TOKENFLOW_DISABLE_PLUGINS": "tokenflow.keyring"}).stdout)
    by_name = {p["name"]: p for p in plugins["plugins"]}
    assert by_name["tokenflow.file_store"]["registers"] == ["store file"]
    assert by_name["tokenflow.file_store"]["required"] is True
    assert by_name["tokenflow.keyring"]["blocked"] is True


def test_logout_and_exec_take_the_profile_from_the_environment(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    path = write_config(two_profiles(server))
    env = {"TOKENFLOW_PROFILE": "other"}
    shown = run_cli("exec", "-c", str(path), "--", sys.executable, "-c", SHOW_ENV,
                    "TOKENFLOW_ACCESS_TOKEN", "0", env=env)
    assert shown.returncode == 0, shown.stderr
    assert issued(server, shown.stdout.strip())[1] == "read"
    assert len(token_files(cache_dir)) == 1
    out = run_cli("logout", "-c", str(path), env=env)
    assert out.returncode == 0 and out.stderr == "tokenflow: other: removed\n"
    assert token_files(cache_dir) == []


@pytest.mark.parametrize("command", ["token", "validate", "profiles", "status", "logout", "exec",
                                     "schema", "plugins", "demo", "completion"])
def test_every_command_help_describes_it_with_an_example(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    usage, description = result.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: tokenflow {command}")
    assert len(description.split()) >= 8, description  # a sentence, not a word
    examples = result.stdout.split("examples:\n", 1)[1]
    assert f"tokenflow {command}" in examples


# -- shell completion (issue 9, 20) --------------------------------------------------------------
def _complete_in_bash(script: Path, words: list[str], cwd: Path) -> list[str]:
    """COMPREPLY after the completion function ran for *words* (the last one being typed)."""
    bash_words = " ".join(shlex.quote(w) for w in words)
    program = (f"source {shlex.quote(str(script))} && COMP_WORDS=({bash_words}) && "
               f"COMP_CWORD={len(words) - 1} && _shtab_tokenflow && printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", program], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completion_completes_commands_options_and_profile_names(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    assert (Path(sys.executable).parent / "tokenflow").exists()  # the console script completes
    result = run_cli("completion", "bash")
    assert result.returncode == 0, result.stderr
    script = tmp_path / "tokenflow.bash"
    script.write_text(result.stdout)
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "tokenflow.yaml").write_text(two_profiles(server))
    assert _complete_in_bash(script, ["tokenflow", "tok"], cwd) == ["token"]
    assert _complete_in_bash(script, ["tokenflow", "token", "pr"], cwd) == ["prod"]
    assert sorted(_complete_in_bash(script, ["tokenflow", "logout", ""], cwd)) == ["other", "prod"]
    assert "--force-refresh" in _complete_in_bash(script, ["tokenflow", "token", "--f"], cwd)
    assert _complete_in_bash(script, ["tokenflow", "token", "-f", "ex"], cwd) == ["exec-credential"]
    # the -c given so far decides which profiles are offered
    other = tmp_path / "other.yaml"
    other.write_text(profile_yaml(server, name="elsewhere"))
    assert _complete_in_bash(script, ["tokenflow", "-c", str(other), "token", ""], cwd) == ["elsewhere"]
    assert _complete_in_bash(script, ["tokenflow", "exec", "--config", str(other), ""], cwd) == [
        "elsewhere"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts(shell: str, server: EmbeddedServer, tmp_path: Path) -> None:
    result = run_cli("completion", shell)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    option = "-l format" if shell == "fish" else "--format"
    for word in ("token", "validate", "completion", option, "force-refresh", "exec-credential",
                 "tokenflow profiles --names"):
        assert word in text, word
    if shell == "fish":
        assert "(__tokenflow_profiles)" in text
    else:
        assert text.startswith("#compdef tokenflow")
    binary = shutil.which(shell)
    if binary is None:
        return  # the shell is not installed here: the text checks above are all we can do
    script = tmp_path / f"tokenflow.{shell}"
    script.write_text(text)
    check = subprocess.run([binary, "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    if shell == "fish":
        cwd = tmp_path / "work"
        cwd.mkdir()
        (cwd / "tokenflow.yaml").write_text(two_profiles(server))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

        def complete(line: str) -> list[str]:
            program = f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}"
            done = subprocess.run([binary, "--no-config", "-c", program], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return [row.split("\t")[0] for row in done.stdout.splitlines()]

        assert complete("tokenflow tok") == ["token"]
        assert complete("tokenflow -c tokenflow.yaml st") == ["status"]
        assert complete("tokenflow logout ") == ["other", "prod"]
        (tmp_path / "other.yaml").write_text(profile_yaml(server, name="elsewhere"))
        assert complete(f"tokenflow -c {tmp_path / 'other.yaml'} status ") == ["elsewhere"]
        assert "--force-refresh" in complete("tokenflow token --f")


def test_profiles_names_lists_one_name_per_line(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(two_profiles(server))
    assert run_cli("profiles", "--names", "-c", str(path)).stdout == "other\nprod\n"


def test_completion_is_not_loaded_on_the_cached_path() -> None:
    """shtab is imported by `tokenflow completion` only."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tokenflow", "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "shtab" not in done.stderr and "tokenflow.cli.completion" not in done.stderr


# -- validate reports every error at once (issue 9, 15) ------------------------------------------
def test_validate_reports_semantic_errors_beside_schema_errors(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = (profile_yaml(server, extra_server={"dialect": "nosuch", "retries": "many"},
                         extra_profile={"bogus": 1, "store": "nostore"})
            + "  other:\n    server: nowhere\n    client: app\n    grant: telepathy\n    timeout: x\n")
    path = write_config(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    out = result.stdout
    for needle in ("$.servers.ts.retries: 'many' is not of type",  # schema
                   "$.profiles.prod.bogus: unknown key 'bogus'",  # schema
                   "$.profiles.other.timeout: unknown key 'timeout'",  # schema
                   "unknown dialect 'nosuch'",  # semantic, in an entry with a schema error
                   "unknown store 'nostore'",  # semantic, in a profile with a schema error
                   "unknown server 'nowhere'", "unknown grant 'telepathy'"):
        assert needle in out, (needle, out)
    assert f"{len(out.splitlines())} error(s)" in result.stderr


def test_validate_keeps_checking_after_a_top_level_error(
    server: EmbeddedServer, write_config: WriteConfig
) -> None:
    text = profile_yaml(server, extra_server={"dialect": "nosuch"}).replace("version: 1", "version: 2")
    result = run_cli("validate", str(write_config(text + "extra: 1\n")))
    assert result.returncode == 2
    assert "$.version" in result.stdout and "unknown dialect 'nosuch'" in result.stdout


# -- feedback during slow work (issue 9, 18) -----------------------------------------------------
def _stderr_on_a_terminal(
    argv: list[str], deadline: float = 90.0, *, stdin_too: bool = False,
    interrupt_after: bytes | None = None,
) -> tuple[int, str, bytes]:
    """Run the CLI with stderr (and with *stdin_too* stdin) on a pseudo-terminal; (exit code,
    stdout, what the terminal got). *interrupt_after*: send SIGINT once that text appeared."""
    import fcntl
    import select
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))  # 200 columns
    env = {**os.environ, "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "tokenflow", *argv],
                            stdin=slave if stdin_too else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    received = b""
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            received += chunk
            if interrupt_after is not None and interrupt_after in received:
                proc.send_signal(signal.SIGINT)
                interrupt_after = None
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    return code, out, received


def test_a_slow_request_shows_one_updating_line_on_a_terminal(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    slow = tokenflow_server_factory(latency=2.0)
    slow.script(error_response_503())
    path = write_config(profile_yaml(slow, extra_server={"retries": 2}))
    code, out, terminal = _stderr_on_a_terminal(["token", "prod", "-c", str(path)])
    assert code == 0, terminal
    assert slow.is_valid_access_token(out.strip())
    text = terminal.decode()
    assert "\r\x1b[Ktokenflow: waiting for the token endpoint at 127.0.0.1 (profile prod)" in text
    assert "retry 1 of 2 (HTTP 503)" in text
    assert text.endswith("\r\x1b[K")  # erased when done; nothing else was written
    assert "\n" not in text.replace("\r\n", "")  # one line, rewritten in place


def test_the_progress_line_counts_down_to_the_next_try(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    from tokenflow.testing import ScriptedResponse

    slow = tokenflow_server_factory(latency=1.2)
    slow.script(ScriptedResponse(503, {"Content-Type": "text/plain", "Retry-After": "3"}, b"busy"))
    path = write_config(profile_yaml(slow, extra_server={"retries": 2}))
    code, out, terminal = _stderr_on_a_terminal(["token", "prod", "-c", str(path)])
    assert code == 0, terminal
    assert slow.is_valid_access_token(out.strip())
    text = terminal.decode()
    # the server asked for 3 s: the line says when the next try comes, and counts down
    assert "retry 1 of 2 (HTTP 503), next try in 3 s" in text or \
        "retry 1 of 2 (HTTP 503), next try in 2 s" in text, text
    assert "next try in 1 s" in text, text


def test_no_progress_line_without_a_terminal(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    slow = tokenflow_server_factory(latency=2.0)
    path = write_config(profile_yaml(slow))
    result = run_cli("token", "prod", "-c", str(path))
    assert result.returncode == 0 and result.stderr == ""


def test_a_failure_after_a_slow_wait_erases_the_line_before_the_error(
    tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    slow = tokenflow_server_factory(latency=2.0)
    path = write_config(profile_yaml(slow, extra_profile={"password": "wrong"}))
    code, _out, terminal = _stderr_on_a_terminal(["token", "prod", "-c", str(path)])
    assert code == 1
    text = terminal.decode()
    assert "waiting for the token endpoint" in text
    assert re.search(r"\r\x1b\[Ktokenflow: error: profile 'prod': .*invalid_grant", text), text


def error_response_503() -> object:
    from tokenflow.testing import ScriptedResponse

    return ScriptedResponse(503, {"Content-Type": "text/plain"}, b"busy")


def test_ctrl_c_at_a_prompt_ends_its_line(server: EmbeddedServer, write_config: WriteConfig) -> None:
    path = write_config(profile_yaml(server, extra_profile={"password": "{prompt: Password}"}))
    code, _out, terminal = _stderr_on_a_terminal(
        ["token", "prod", "-c", str(path)], stdin_too=True, interrupt_after=b"Password for prod: ")
    assert code == 130
    assert b"Password for prod: \r\ntokenflow: interrupted\r\n" in terminal, terminal
    assert server.counts["token"] == 0
