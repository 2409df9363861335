"""The CLI's renewal path (tokenflow/cli/renewal.py), proven from the outside.

Every run is a real ``tokenflow`` process against the embedded server, with real files. Which
path a run took is read from the process's own ``sys.modules``, written by a small driver at
exit: the renewal path imports urllib3 but none of PyYAML, pluggy, jsonschema or the config
loader; the full path always imports PyYAML and the loader. The server's counters say how many
refresh requests were made. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import profile_yaml, secret_env

from tokenflow.base import cachefile
from tokenflow.testing import EmbeddedServer

WriteConfig = Callable[..., Path]
ServerFactory = Callable[..., EmbeddedServer]

# main() as the console script runs it, then the names of the modules it imported
DRIVER = """\
import json, logging, os, sys
if os.environ.get("RENEWAL_TEST_DEBUG"):
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
if os.environ.get("RENEWAL_TEST_DISK_FULL"):  # no full disk can be had here: its error, then
    import errno, tokenflow.base.files as files
    def disk_full(path, data, *, durable=True):
        raise OSError(errno.ENOSPC, "No space left on device")
    files.write_atomic = disk_full
from tokenflow.cli import main
code = main(sys.argv[1:])
with open(os.environ["RENEWAL_TEST_MODULES"], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""
PLAN_B = ("yaml", "pluggy", "jsonschema", "tokenflow.config.loader", "tokenflow.plugins.host")
FORMATS = ("raw", "json", "header", "env", "exec-credential")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    modules: set[str]

    def imported(self, name: str) -> bool:
        return any(m == name or m.startswith(name + ".") for m in self.modules)

    @property
    def renewal(self) -> bool:
        """Renewed without the config or the plugins (and with a request: urllib3)."""
        return self.imported("urllib3") and not any(self.imported(m) for m in PLAN_B)

    @property
    def full(self) -> bool:
        return self.imported("yaml") and self.imported("tokenflow.config.loader")


class Cli:
    def __init__(self, cwd: Path, cache: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.cache = cache
        self.env = env

    def start(self, *args: str, env: dict[str, str] | None = None,
              tag: str = "") -> tuple[subprocess.Popen[str], Path]:
        modules = self.cwd.parent / f"modules{tag}-{time.monotonic_ns()}.json"
        full_env = {**os.environ, **self.env, **(env or {}), "RENEWAL_TEST_MODULES": str(modules)}
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=full_env, cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc, modules

    @staticmethod
    def finish(proc: subprocess.Popen[str], modules: Path) -> Run:
        out, err = proc.communicate(timeout=120)
        names = set(json.loads(modules.read_text())) if modules.exists() else set()
        return Run(proc.returncode, out, err, names)

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return self.finish(*self.start(*args, env=env))

    def token_file(self) -> Path:
        (path,) = sorted((self.cache / "tokens").glob("*.json"))
        return path

    def token(self) -> dict[str, Any]:
        return cachefile.decode(self.token_file().read_bytes())

    def entries(self) -> list[Path]:
        return sorted((self.cache / "index").glob("*/p-*.json"))


@pytest.fixture
def server(tokenflow_server_factory: ServerFactory) -> EmbeddedServer:
    return tokenflow_server_factory(rotate_refresh_tokens=True)


def make_cli(tmp_path: Path, cache: Path, server: EmbeddedServer, write_config: WriteConfig,
             **options: Any) -> Cli:
    options.setdefault("secrets_inline", False)
    config = write_config(profile_yaml(server, **options))
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return Cli(cwd, cache, {**secret_env(server), "TOKENFLOW_CONFIG": str(config)})


@pytest.fixture
def cli(tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig) -> Cli:
    return make_cli(tmp_path, cache_dir, server, write_config, dialect="rfc6749")


def first_token(cli: Cli) -> Run:
    """The first run: a password grant on the full path, which writes the index."""
    run = cli.run("token", "prod")
    assert run.returncode == 0, run.stderr
    assert run.full
    return run


def age(cli: Cli, expires_in: float, lifetime: float = 3600.0) -> None:
    """Move the cached token's life on, as time passing would (the checksum stays valid)."""
    data = cli.token()
    data["expires_at"] = time.time() + expires_in
    data["obtained_at"] = data["expires_at"] - lifetime
    cli.token_file().write_bytes(cachefile.encode(data))


# -- the renewal path is taken, and does what the full path does ---------------------------------
@pytest.mark.parametrize(("dialect", "client_auth"),
                         [("rfc6749", "basic"), ("rfc6749", "body"), ("teamserver", "basic")])
def test_force_refresh_renews_without_config_or_plugins(
        tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig,
        dialect: str, client_auth: str) -> None:
    cli = make_cli(tmp_path, cache_dir, server, write_config, dialect=dialect,
                   client_auth=client_auth)
    first_token(cli)
    before = cli.token()
    server.reset_counts()
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0, run.stderr
    assert run.renewal, sorted(m for m in run.modules if m.split(".")[0] in ("yaml", "pluggy"))
    assert run.stderr == ""
    assert server.counts["refresh_token"] == 1 and server.counts["token"] == 1
    after = cli.token()
    assert run.stdout == after["access_token"] + "\n"
    assert after["access_token"] != before["access_token"]
    # rotated: the new refresh token is the one on disk, and the server honours it
    assert after["refresh_token"] != before["refresh_token"]
    assert server.is_valid_refresh_token(after["refresh_token"])
    assert not server.is_valid_refresh_token(before["refresh_token"])
    again = cli.run("token", "prod", "--force-refresh")
    assert again.returncode == 0 and again.renewal
    assert server.counts["refresh_token"] == 2


def test_a_token_inside_its_margin_is_renewed_by_the_renewal_path(cli: Cli,
                                                                  server: EmbeddedServer) -> None:
    first_token(cli)
    age(cli, expires_in=30)  # inside the default 60 s margin: the cached path declines
    server.reset_counts()
    run = cli.run("token", "prod")
    assert run.returncode == 0 and run.renewal, run.stderr
    assert server.counts["refresh_token"] == 1
    assert cli.token()["expires_at"] > time.time() + 3000
    # now fresh: the next call is a cache hit, with no request at all
    hit = cli.run("token", "prod")
    assert hit.stdout == run.stdout and not hit.imported("urllib3")
    assert server.counts["token"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_renewal_path_prints_what_the_full_path_prints(cli: Cli, fmt: str) -> None:
    first_token(cli)
    renewed = cli.run("token", "prod", "--force-refresh", "--format", fmt)
    assert renewed.returncode == 0 and renewed.renewal, renewed.stderr
    # -v sends the run to the full path, which serves the same (fresh) token from the cache
    full = cli.run("-v", "token", "prod", "-f", fmt)
    assert full.returncode == 0 and full.full
    if fmt in ("json", "exec-credential"):
        ours, theirs = json.loads(renewed.stdout), json.loads(full.stdout)
        for document in (ours, theirs):
            document.pop("expires_in", None)  # counts down between the two runs
        assert ours == theirs
    else:
        assert renewed.stdout == full.stdout


def test_tokenflow_profile_and_global_config_options_take_the_renewal_path(
        cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    config = cli.env.pop("TOKENFLOW_CONFIG")
    # the index is per config source list: the first run with -c writes its own
    assert cli.run("-c", config, "token", "prod").returncode == 0
    run = cli.run("-c", config, "token", "--force-refresh", env={"TOKENFLOW_PROFILE": "prod"})
    assert run.returncode == 0 and run.renewal, run.stderr
    assert run.stdout == cli.token()["access_token"] + "\n"


def test_verbose_takes_the_full_path(cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    run = cli.run("token", "prod", "--force-refresh", "-v")
    assert run.returncode == 0 and run.full


# -- two at once -----------------------------------------------------------------------------------
def test_two_concurrent_renewals_make_one_request(
        tmp_path: Path, cache_dir: Path, tokenflow_server_factory: ServerFactory,
        write_config: WriteConfig) -> None:
    # the server's latency keeps the first refresh in flight while the second process arrives
    server = tokenflow_server_factory(rotate_refresh_tokens=True, latency=0.5)
    cli = make_cli(tmp_path, cache_dir, server, write_config, dialect="rfc6749")
    first_token(cli)
    age(cli, expires_in=30)
    server.reset_counts()
    started = [cli.start("token", "prod", tag=str(i)) for i in range(2)]
    runs = [cli.finish(*pair) for pair in started]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert server.counts["refresh_token"] == 1
    assert runs[0].stdout == runs[1].stdout == cli.token()["access_token"] + "\n"
    assert not any(r.full for r in runs)


# -- handing over to the full path -------------------------------------------------------------------
def test_a_refused_refresh_falls_back_to_the_full_path(cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    server.revoke_refresh_tokens()
    server.reset_counts()
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.full, run.stderr
    # the renewal path's refused try, handed over: the full path does not ask again, it signs in
    assert server.counts["refresh_token"] == 1 and server.counts["password"] == 1
    assert run.stdout == cli.token()["access_token"] + "\n"


def test_no_refresh_token_falls_back_to_the_grant(cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    data = cli.token()
    data.pop("refresh_token")
    cli.token_file().write_bytes(cachefile.encode(data))
    server.reset_counts()
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.full, run.stderr
    assert server.counts["refresh_token"] == 0 and server.counts["password"] == 1


def test_a_server_error_is_reported_like_the_full_path_without_asking_again(
        cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    server.fail_next(1, status=503)  # retries: 0 in the test config
    alone = cli.run("-v", "token", "prod", "--force-refresh")  # the full path by itself
    server.fail_next(1, status=503)
    server.reset_counts()
    run = cli.run("token", "prod", "--force-refresh")
    assert run.full and run.returncode == alone.returncode == 1
    error = [line for line in alone.stderr.splitlines() if line.startswith("tokenflow: error:")]
    assert run.stderr.splitlines() == error  # the same one line, nothing else
    assert server.counts["token"] == 1  # handed over with its failure: not asked again


def test_a_server_error_with_a_still_valid_token_serves_it_like_the_full_path(
        cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    age(cli, expires_in=30)  # inside the margin, still valid
    held = cli.token()["access_token"]
    server.fail_next(1, status=503)
    server.reset_counts()
    run = cli.run("token", "prod")
    assert run.returncode == 0 and run.full
    assert run.stdout == held + "\n"  # the stale token, as the full path serves it
    assert "tokenflow: warning:" in run.stderr and "503" in run.stderr
    assert server.counts["token"] == 1


def test_a_literal_secret_in_the_yaml_keeps_the_full_path(
        tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig) -> None:
    cli = make_cli(tmp_path, cache_dir, server, write_config, dialect="rfc6749",
                   secrets_inline=True)
    first_token(cli)
    entry = json.loads(cli.entries()[0].read_text())
    assert entry["renew"] is None
    assert server.default_client.secret not in cli.entries()[0].read_text()
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.full


def test_the_record_holds_no_secret(cli: Cli, server: EmbeddedServer) -> None:
    first_token(cli)
    text = cli.entries()[0].read_text()
    record = json.loads(text)["renew"]
    assert record["client_secret"] == {"env": "TS_CLIENT_SECRET"}
    token = cli.token()
    for secret in (server.default_client.secret, server.default_account.password,
                   token["access_token"], token["refresh_token"]):
        assert secret not in text


def test_a_client_secret_from_a_file_is_read_when_renewing(
        tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(server.default_client.secret + "\n")
    config = write_config(profile_yaml(server, dialect="rfc6749").replace(
        json.dumps(server.default_client.secret), f"{{file: {secret_file}}}"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cli = Cli(cwd, cache_dir, {"TOKENFLOW_CONFIG": str(config)})
    first_token(cli)
    assert json.loads(cli.entries()[0].read_text())["renew"]["client_secret"] == {
        "file": str(secret_file)}
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.renewal, run.stderr
    # a secret that changed is read afresh: a wrong one is refused, and reported as the full
    # path reports it, after one request (asking again would only be refused again)
    secret_file.write_text("not the secret\n")
    alone = cli.run("-v", "token", "prod", "--force-refresh")  # the full path by itself
    server.reset_counts()
    refused = cli.run("token", "prod", "--force-refresh")
    assert refused.returncode == alone.returncode == 1 and refused.renewal
    error = [line for line in alone.stderr.splitlines() if line.startswith("tokenflow: error:")]
    assert refused.stderr.splitlines() == error and "invalid_client" in error[0]
    assert "not the secret" not in refused.stderr
    assert server.counts["token"] == 1


def test_a_third_party_plugin_keeps_the_full_path(
        tmp_path: Path, cli: Cli, server: EmbeddedServer) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    seen = tmp_path / "events.txt"
    (plugins / "tf_renewal_observer.py").write_text(
        "from tokenflow.plugins import hookimpl\n"
        "@hookimpl\n"
        "def tokenflow_event(event):\n"
        f"    with open({str(seen)!r}, 'a') as out:\n"
        "        out.write(event.kind.value + '\\n')\n")
    env = {"PYTHONPATH": str(plugins), "TOKENFLOW_PLUGINS": "tf_renewal_observer"}
    assert cli.run("token", "prod", env=env).returncode == 0
    assert all(json.loads(p.read_text())["renew"] is None for p in cli.entries())
    run = cli.run("token", "prod", "--force-refresh", env=env)
    assert run.returncode == 0 and run.full, run.stderr
    assert "refreshed" in seen.read_text().split()  # the observer saw the refresh


def test_a_third_party_plugin_that_observes_nothing_keeps_the_full_path_too(
        cli: Cli, server: EmbeddedServer) -> None:
    plugins = Path(__file__).resolve().parent / "plugins"
    env = {"PYTHONPATH": str(plugins), "TOKENFLOW_PLUGINS": "jwt_bearer_grant"}
    assert cli.run("token", "prod", env=env).returncode == 0
    entries = [json.loads(p.read_text()) for p in cli.entries()]
    assert entries and all(e["renew"] is None for e in entries)  # indexed, but not renewable
    run = cli.run("token", "prod", "--force-refresh", env=env)
    assert run.returncode == 0 and run.full, run.stderr


def test_a_changed_config_keeps_the_full_path(cli: Cli, server: EmbeddedServer,
                                              write_config: WriteConfig) -> None:
    first_token(cli)
    config = Path(cli.env["TOKENFLOW_CONFIG"])
    config.write_text(config.read_text() + "# edited\n")
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.full
    again = cli.run("token", "prod", "--force-refresh")  # the full path wrote a new index
    assert again.returncode == 0 and again.renewal


def test_a_tampered_record_is_ignored(cli: Cli, tokenflow_server_factory: ServerFactory) -> None:
    first_token(cli)
    elsewhere = tokenflow_server_factory()
    (path,) = cli.entries()
    entry = json.loads(path.read_text())
    entry["renew"]["token_url"] = elsewhere.token_url  # the MAC no longer matches
    path.write_text(json.dumps(entry))
    run = cli.run("token", "prod", "--force-refresh")
    assert run.returncode == 0 and run.full
    assert elsewhere.counts["token"] == 0


# -- secrets ------------------------------------------------------------------------------------------
def test_no_secret_in_stderr_or_debug_logs(
        tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig) -> None:
    # teamserver: the client secret and the refresh token travel in the URL, which urllib3
    # logs at DEBUG
    cli = make_cli(tmp_path, cache_dir, server, write_config, dialect="teamserver")
    first_token(cli)
    old = cli.token()
    run = cli.run("token", "prod", "--force-refresh", env={"RENEWAL_TEST_DEBUG": "1"})
    assert run.returncode == 0 and run.renewal, run.stderr
    assert "GET /" in run.stderr  # urllib3's request line was logged, scrubbed
    new = cli.token()
    for secret in (server.default_client.secret, old["refresh_token"], new["refresh_token"],
                   new["access_token"]):
        assert secret not in run.stderr


# -- on a terminal -------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_the_renewal_path_draws_the_waiting_line(
        tmp_path: Path, cache_dir: Path, tokenflow_server_factory: ServerFactory,
        write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cli import _stderr_on_a_terminal, error_response_503

    slow = tokenflow_server_factory(latency=2.0, rotate_refresh_tokens=True)
    cli = make_cli(tmp_path, cache_dir, slow, write_config, dialect="rfc6749",
                   extra_server={"retries": 2})
    first_token(cli)
    slow.script(error_response_503())
    slow.reset_counts()
    for name, value in cli.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # on the terminal too: which path ran
    code, out, terminal = _stderr_on_a_terminal(["token", "prod", "--force-refresh"])
    text = terminal.decode()
    assert code == 0, text
    assert out == cli.token()["access_token"] + "\n"
    assert "\r\x1b[Ktokenflow: waiting for the token endpoint at 127.0.0.1 (profile prod)" in text
    assert "retry 1 of 2 (HTTP 503)" in text
    imported = {line.rsplit("|", 1)[-1].strip() for line in text.splitlines()
                if "import time:" in line}
    assert "urllib3" in imported and "yaml" not in imported and "pluggy" not in imported
    assert slow.counts["refresh_token"] == 2  # the 503, then the retry: one renewal


def test_a_client_secret_is_recorded_only_as_a_source_that_reads_it_verbatim(
        tmp_path: Path) -> None:
    """The record names where the renewal path reads the client secret only when the source
    says its value *is* that variable or file (``Watched.verbatim``): the built-in env and
    file sources do; a source that transforms the value does not, and keeps the full path."""
    import tokenflow
    from tokenflow.cli.index_writer import _Compiler
    from tokenflow.plugins.contracts import PluginContext, SourceRegistrar, Watched
    from tokenflow.plugins.hookspecs import hookimpl
    from tokenflow.plugins.host import build_plugin_host

    def shout(options: Any, context: PluginContext) -> str:
        return os.environ[str(options)].upper()

    def watch(verbatim: bool) -> Callable[[Any, PluginContext], Watched]:
        return lambda options, context: Watched(env=(str(options),), verbatim=verbatim)

    class Sources:
        @hookimpl
        def tokenflow_register_secret_sources(self, register: SourceRegistrar) -> None:
            register("shout", shout, {"type": "string"}, cache_key_safe=True, watch=watch(False))
            register("claims_verbatim", shout, {"type": "string"}, cache_key_safe=True,
                     watch=watch(True))

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("s3cret\n")
    clients = {"shout": {"shout": "APP_SECRET"}, "verbatim": {"claims_verbatim": "APP_SECRET"},
               "env": {"env": "APP_SECRET"}, "file": {"file": str(secret_file)},
               "literal": "s3cret", "public": None}
    data = {
        "version": 1,
        "servers": {"s": {"token_url": "http://127.0.0.1:9/token"}},
        "clients": {name: {"client_id": "app", **({"client_secret": spec} if spec else {})}
                    for name, spec in clients.items()},
        "profiles": {name: {"server": "s", "client": name, "grant": "client_credentials",
                            "store": "memory"} for name in clients},
    }
    flow = tokenflow.config_from_mapping(data, plugins=build_plugin_host(extra_plugins=[Sources()]),
                                         cache_dir=tmp_path / "cache")
    compiler = _Compiler(flow, b"k" * 32)

    def recorded(name: str) -> object:
        profile = flow.config.profile(name)
        return compiler.secret_source(profile, profile.client.client_secret)

    assert recorded("shout") is False  # transforms the value: only the plugin can read it
    assert recorded("literal") is False  # the index never holds a secret
    assert recorded("verbatim") == {"env": "APP_SECRET"}  # its word is taken (a plugin's own)
    assert recorded("env") == {"env": "APP_SECRET"}
    assert recorded("file") == {"file": str(secret_file)}
    assert recorded("public") is None


# -- answers the renewal path gives itself: asking or waiting again would cost more ------------
@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_lock_held_too_long_is_reported_once_like_the_full_path(
        tmp_path: Path, cache_dir: Path, server: EmbeddedServer, write_config: WriteConfig) -> None:
    from tokenflow.base.flock import acquire_lock_file, release_lock_file

    cli = make_cli(tmp_path, cache_dir, server, write_config, dialect="rfc6749",
                   store="{file: {lock_timeout: 0.5}}")
    first_token(cli)
    fd = acquire_lock_file(f"{cli.token_file()}.lock", 5.0)  # another process, renewing
    assert fd is not None
    try:
        alone = cli.run("-v", "token", "prod", "--force-refresh")  # the full path by itself
        server.reset_counts()
        run = cli.run("token", "prod", "--force-refresh")
    finally:
        release_lock_file(fd)
    assert run.returncode == alone.returncode == 1
    # answered by the renewal path (before it needed urllib3): the full path did not wait again
    assert not any(run.imported(m) for m in PLAN_B)
    error = [line for line in alone.stderr.splitlines() if line.startswith("tokenflow: error:")]
    assert run.stderr.splitlines() == error and "held the lock" in error[0]
    assert server.counts["token"] == 0


def test_a_save_that_fails_after_the_server_answered_is_reported_without_asking_again(
        cli: Cli, server: EmbeddedServer) -> None:
    """The server has answered (and rotated the refresh token): handing over, the full path would
    send the spent refresh token again. The child's writes fail as on a full disk; the full path's
    store keeps its own reference to the real write, so a hand-over would succeed and show."""
    first_token(cli)
    server.reset_counts()
    run = cli.run("token", "prod", "--force-refresh", env={"RENEWAL_TEST_DISK_FULL": "1"})
    assert run.returncode == 1 and not run.full, run.stderr
    assert run.stderr.startswith("tokenflow: error: cannot write ")
    assert "No space left on device" in run.stderr and len(run.stderr.splitlines()) == 1
    assert server.counts["token"] == 1 and server.counts["refresh_token"] == 1


def test_a_subclass_must_claim_the_renewal_capabilities_itself(tmp_path: Path) -> None:
    """A plugin that subclasses a built-in dialect or the file store and changes its requests or
    its writes does not inherit the claim that the CLI may do them without it."""
    from tokenflow.builtins.file_store import FileStore
    from tokenflow.builtins.rfc6749 import RFC6749Dialect
    from tokenflow.cli.index_writer import _claimed

    class Signed(RFC6749Dialect):  # signs its requests: not the rfc6749 shape any more
        pass

    class Encrypting(FileStore):  # encrypts what it saves: not the cache-file format
        pass

    assert _claimed(RFC6749Dialect(), "request_shape") == "rfc6749"
    assert _claimed(Signed(), "request_shape") is None
    assert _claimed(FileStore(tmp_path), "fast_renewal_files") is not None
    assert _claimed(Encrypting(tmp_path), "fast_renewal_files") is None
