"""The CLI's cache-hit fast path (tokenflow/fastpath.py), proven from the outside.

Which path a run took is read from ``python -X importtime``: the fast path imports none of
urllib3, PyYAML, jsonschema, pluggy or importlib.metadata, the full path always imports PyYAML and
the loader. The server's request counts prove the fast path makes no request.

Every subprocess runs in a dedicated, unchanging working directory: ``python -m`` puts the
working directory on ``sys.path``, whose directories' mtimes are part of the index's validity.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import profile_yaml, secret_env

import tokenflow
from tokenflow.base import cachefile
from tokenflow.base.files import file_stamp
from tokenflow.builtins.file_store import FileStore
from tokenflow.cli.fast import index as fastpath
from tokenflow.testing import EmbeddedServer

WriteConfig = Callable[..., Path]
ServerFactory = Callable[..., EmbeddedServer]

HEAVY = ("urllib3", "yaml", "jsonschema", "pluggy", "importlib.metadata")
FORMATS = ("raw", "json", "header", "env", "exec-credential")


# -- running the CLI and telling the paths apart -------------------------------------------------
def _imported(stderr: str) -> tuple[set[str], str]:
    """Module names from ``-X importtime`` lines, and the rest of stderr."""
    modules: set[str] = set()
    rest: list[str] = []
    for line in stderr.splitlines(keepends=True):
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name != "imported package":
                modules.add(name)
        else:
            rest.append(line)
    return modules, "".join(rest)


@functools.cache
def _baseline() -> frozenset[str]:
    """What the interpreter imports by itself (site, .pth files): not tokenflow's doing."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                          capture_output=True, text=True, check=True)
    return frozenset(_imported(done.stderr)[0])


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    modules: set[str]  # imported by this run beyond the interpreter's own start-up

    def imported(self, name: str) -> bool:
        return any(m == name or m.startswith(name + ".") for m in self.modules)

    @property
    def fast(self) -> bool:
        return not any(self.imported(h) for h in HEAVY) and "tokenflow.config.loader" not in self.modules

    @property
    def full(self) -> bool:
        return self.imported("yaml") and "tokenflow.config.loader" in self.modules


class Cli:
    def __init__(self, cwd: Path, cache: Path) -> None:
        self.cwd = cwd
        self.cache = cache

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        full_env = {**os.environ, **(env or {})}
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "tokenflow", *args],
            env=full_env, cwd=self.cwd, capture_output=True, text=True, timeout=60, check=False,
        )
        modules, stderr = _imported(done.stderr)
        return Run(done.returncode, done.stdout, stderr, modules - _baseline())

    def indexes(self) -> dict[str, Any]:
        """Each index directory as one dict: the head, with its entries under "profiles"."""
        found = {}
        for head in sorted((self.cache / "index").glob("*/head.json")):
            index = json.loads(head.read_text())
            entries = [json.loads(p.read_text()) for p in head.parent.glob("p-*.json")]
            index["profiles"] = {e["profile"]: e for e in entries}
            found[head.parent.name] = index
        return found

    def fast(self, *args: str, env: dict[str, str] | None = None) -> Run:
        """Run expecting the fast path.

        Installing packages (for example another test building a virtual environment) changes
        the mtimes of directories holding distributions, which rightly invalidates the index;
        only then is the run retried (the full path just rewrote the index).
        """
        for _ in range(3):
            before = [i.get("plugin_dirs") for i in self.indexes().values()]
            run = self.run(*args, env=env)
            if run.fast:
                return run
            after = [i.get("plugin_dirs") for i in self.indexes().values()]
            if before == after:
                break
        heavy = sorted(m for m in run.modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
        raise AssertionError(f"full path taken (imported {heavy}); rc={run.returncode} {run.stderr}")


@pytest.fixture
def cli(tmp_path: Path, cache_dir: Path) -> Cli:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return Cli(cwd, cache_dir)


@pytest.fixture
def server(tokenflow_server: EmbeddedServer) -> EmbeddedServer:
    return tokenflow_server


@pytest.fixture
def config(server: EmbeddedServer, write_config: WriteConfig) -> Path:
    return write_config(profile_yaml(server))


def token_files(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").glob("*.json"))


def rewrite_expiry(path: Path, expires_in: float, lifetime: float) -> None:
    """Move a cached token's life on, as time passing would (the checksum stays valid)."""
    data = cachefile.decode(path.read_bytes())
    data["expires_at"] = time.time() + expires_in
    data["obtained_at"] = data["expires_at"] - lifetime
    path.write_bytes(cachefile.encode(data))


# -- the fast path itself ------------------------------------------------------------------------
def test_a_cache_hit_imports_nothing_heavy_and_makes_no_request(
    cli: Cli, server: EmbeddedServer, config: Path
) -> None:
    first = cli.run("token", "prod", "-c", str(config))
    assert first.returncode == 0, first.stderr
    assert first.full and first.imported("urllib3") and first.imported("pluggy")  # the probe works
    server.reset_counts()

    second = cli.fast("token", "prod", "-c", str(config))
    assert second.returncode == 0 and second.stderr == ""
    assert second.stdout == first.stdout
    assert "tokenflow.cli.fast.index" in second.modules
    assert "tokenflow.cli.app" not in second.modules  # the full command is not even imported
    assert server.counts["token"] == 0
    # nor the standard library's costly corners: each of these once crept in through a
    # module the fast path shares with the writers (pathlib ~4 ms, tempfile ~5 ms with shutil)
    slow = {"pathlib", "tempfile", "shutil", "random", "json", "hashlib", "hmac", "argparse"}
    assert not slow & second.modules, sorted(slow & second.modules)


def test_files_appearing_in_the_working_directory_keep_the_fast_path(
    cli: Cli, server: EmbeddedServer, config: Path
) -> None:
    """``python -m`` puts the working directory on sys.path; it holds no installed plugin."""
    assert cli.run("token", "prod", "-c", str(config)).returncode == 0
    (cli.cwd / "new-file.txt").write_text("x")
    (cli.cwd / "new-dir").mkdir()
    run = cli.fast("token", "prod", "-c", str(config))
    assert run.returncode == 0 and run.fast


def test_a_new_distribution_on_the_search_path_invalidates(
    cli: Cli, server: EmbeddedServer, config: Path, tmp_path: Path
) -> None:
    """An entry-point plugin arrives as a *.dist-info directory: the index must notice."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "placeholder-1.0.dist-info").mkdir()
    env = {"PYTHONPATH": str(site)}
    assert cli.run("token", "prod", "-c", str(config), env=env).returncode == 0
    assert cli.fast("token", "prod", "-c", str(config), env=env).fast
    (site / "newplugin-1.0.dist-info").mkdir()
    os.utime(site, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    assert cli.run("token", "prod", "-c", str(config), env=env).full


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_fast_path_prints_what_the_full_path_prints(
    cli: Cli, server: EmbeddedServer, config: Path, fmt: str
) -> None:
    fetched = cli.run("token", "prod", "-c", str(config), "--format", fmt)
    assert fetched.returncode == 0, fetched.stderr
    full = cli.run("token", "prod", "-c", str(config), "--format", fmt, "-v")  # -v: full path
    assert full.full and full.returncode == 0
    fast = cli.fast("token", "prod", "-c", str(config), "--format", fmt)
    assert server.counts["token"] == 1
    if fmt == "json":  # expires_in counts down between the runs
        full_data, fast_data, fetched_data = (json.loads(r.stdout) for r in (full, fast, fetched))
        assert abs(full_data.pop("expires_in") - fast_data.pop("expires_in")) <= 5
        fetched_data.pop("expires_in")
        assert full_data == fast_data == fetched_data
    else:
        assert full.stdout == fast.stdout == fetched.stdout


def test_the_only_profile_and_tokenflow_profile_on_the_fast_path(
    cli: Cli, server: EmbeddedServer, config: Path
) -> None:
    token = cli.run("token", "-c", str(config)).stdout
    assert cli.fast("token", "-c", str(config)).stdout == token
    assert cli.fast("token", "-c", str(config), env={"TOKENFLOW_PROFILE": "prod"}).stdout == token
    # $TOKENFLOW_PROFILE naming another profile is not answered with the only one
    other = cli.run("token", "-c", str(config), env={"TOKENFLOW_PROFILE": "staging"})
    assert other.returncode == 2 and other.full
    assert "unknown profile 'staging'" in other.stderr


# -- invalidation --------------------------------------------------------------------------------
def test_config_change_invalidates(cli: Cli, server: EmbeddedServer, config: Path) -> None:
    token = cli.run("token", "prod", "-c", str(config)).stdout
    cli.fast("token", "prod", "-c", str(config))
    with config.open("a") as handle:
        handle.write("# a comment changes the content, not the meaning\n")
    after = cli.run("token", "prod", "-c", str(config))
    assert after.full and after.stdout == token
    assert cli.fast("token", "prod", "-c", str(config)).stdout == token
    # a change of meaning: another scope is another token
    with config.open("a") as handle:
        handle.write("    scope: read\n")
    changed = cli.run("token", "prod", "-c", str(config))
    assert changed.full and changed.returncode == 0
    assert changed.stdout != token
    assert server.counts["password"] == 2


def test_a_variable_used_by_the_config_invalidates(
    cli: Cli, server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(profile_yaml(server, extra_profile={"scope": "${TF_TEST_SCOPE}"}))
    read = cli.run("token", "prod", "-c", str(path), env={"TF_TEST_SCOPE": "read"})
    assert read.returncode == 0, read.stderr
    cli.fast("token", "prod", "-c", str(path), env={"TF_TEST_SCOPE": "read"})
    write = cli.run("token", "prod", "-c", str(path), env={"TF_TEST_SCOPE": "write"})
    assert write.full and write.returncode == 0
    assert write.stdout != read.stdout
    scopes = {t.access_token: t.scope for t in server.issued_tokens()}
    assert scopes[write.stdout.strip()] == "write" and scopes[read.stdout.strip()] == "read"


def test_an_env_username_change_invalidates(
    cli: Cli, tokenflow_server_factory: ServerFactory, write_config: WriteConfig, cache_dir: Path
) -> None:
    server = tokenflow_server_factory(accounts={"alice": "pw-alice", "bob": "pw-bob"})
    path = write_config(profile_yaml(server, secrets_inline=False))
    alice = {**secret_env(server), "TS_USER": "alice", "TS_PASSWORD": "pw-alice"}
    bob = {**secret_env(server), "TS_USER": "bob", "TS_PASSWORD": "pw-bob"}
    first = cli.run("token", "prod", "-c", str(path), env=alice)
    assert first.returncode == 0, first.stderr
    cli.fast("token", "prod", "-c", str(path), env=alice)
    second = cli.run("token", "prod", "-c", str(path), env=bob)
    assert second.full and second.returncode == 0
    users = {t.access_token: t.username for t in server.issued_tokens()}
    assert users[first.stdout.strip()] == "alice" and users[second.stdout.strip()] == "bob"
    assert len(token_files(cache_dir)) == 2  # two identities, two token files
    assert cli.fast("token", "prod", "-c", str(path), env=bob).stdout == second.stdout


def test_tokenflow_profile_selects_another_profile(
    cli: Cli, server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(profile_yaml(server) + "  other:\n    extends: prod\n    scope: read\n")
    prod = cli.run("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "prod"}).stdout
    assert cli.fast("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "prod"}).stdout == prod
    other = cli.run("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"})
    assert other.returncode == 0 and other.stdout != prod
    assert {t.access_token: t.scope for t in server.issued_tokens()}[other.stdout.strip()] == "read"
    assert cli.fast("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "other"}).stdout == other.stdout
    assert cli.fast("token", "-c", str(path), env={"TOKENFLOW_PROFILE": "prod"}).stdout == prod
    # two profiles and no choice: the fast path does not guess, the full path says why
    neither = cli.run("token", "-c", str(path))
    assert neither.returncode == 2 and neither.full
    assert server.counts["password"] == 2


@pytest.mark.parametrize(
    ("expires_in", "lifetime", "refreshes"),
    [
        (120, 3600, False),  # outside the 60 s margin
        (30, 3600, True),  # inside it
        (-10, 3600, True),  # expired
        (58, 100, False),  # the margin is capped at half the 100 s lifetime: 50 s
        (40, 100, True),
    ],
)
def test_refresh_margin(
    cli: Cli, server: EmbeddedServer, config: Path, cache_dir: Path,
    expires_in: float, lifetime: float, refreshes: bool,
) -> None:
    old = cli.run("token", "prod", "-c", str(config)).stdout
    (entry,) = token_files(cache_dir)
    rewrite_expiry(entry, expires_in, lifetime)
    server.reset_counts()
    if not refreshes:
        assert cli.fast("token", "prod", "-c", str(config)).stdout == old
        assert server.counts["token"] == 0
        return
    run = cli.run("token", "prod", "-c", str(config))
    assert run.full and run.returncode == 0, run.stderr
    assert server.counts["token"] == server.counts["refresh_token"] == 1
    assert run.stdout != old and server.is_valid_access_token(run.stdout.strip())
    assert cli.fast("token", "prod", "-c", str(config)).stdout == run.stdout
    assert server.counts["token"] == 1


def test_a_corrupt_token_file_is_quarantined_by_the_full_path(
    cli: Cli, server: EmbeddedServer, config: Path, cache_dir: Path
) -> None:
    cli.run("token", "prod", "-c", str(config))
    (entry,) = token_files(cache_dir)
    entry.write_bytes(b'{"format": 1, "checksum": "sha256:00", "tok')
    run = cli.run("token", "prod", "-c", str(config))
    assert run.full and run.returncode == 0
    assert "damaged" in run.stderr
    assert server.counts["password"] == 2
    assert server.is_valid_access_token(run.stdout.strip())
    assert len(list(entry.parent.glob(f"{entry.name}.corrupt-*"))) == 1
    assert cli.fast("token", "prod", "-c", str(config)).stdout == run.stdout


def test_a_group_writable_token_file_is_refused(
    cli: Cli, server: EmbeddedServer, config: Path, cache_dir: Path
) -> None:
    cli.run("token", "prod", "-c", str(config))
    (entry,) = token_files(cache_dir)
    entry.chmod(0o660)
    server.reset_counts()
    run = cli.run("token", "prod", "-c", str(config))
    assert run.full and run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("tokenflow: error: refusing to read ") and "writable by group" in line
    assert server.counts["token"] == 0
    assert stat.S_IMODE(entry.stat().st_mode) == 0o660  # left for the user to inspect


def test_verbose_and_force_refresh_take_the_full_path(
    cli: Cli, server: EmbeddedServer, config: Path
) -> None:
    token = cli.run("token", "prod", "-c", str(config)).stdout
    verbose = cli.run("token", "prod", "-c", str(config), "-v")
    assert verbose.full and verbose.stdout == token
    assert server.counts["token"] == 1
    forced = cli.run("token", "prod", "-c", str(config), "--force-refresh")
    assert forced.full and forced.stdout != token
    assert server.counts["refresh_token"] == 1


# -- argument parsing ----------------------------------------------------------------------------
def test_global_options_before_the_command_take_the_fast_path(
    cli: Cli, server: EmbeddedServer, config: Path, write_config: WriteConfig
) -> None:
    """``tokenflow -c FILE token`` reads FILE on both paths, never ./tokenflow.yaml (issue 9, 14)."""
    (cli.cwd / "tokenflow.yaml").write_text(profile_yaml(server, name="decoy"))
    first = cli.run("-c", str(config), "token", "prod")
    assert first.returncode == 0 and first.full, first.stderr
    server.reset_counts()
    again = cli.fast("-c", str(config), "token", "prod", "--format", "header")
    assert again.stdout == f"Authorization: Bearer {first.stdout.strip()}\n"
    assert cli.fast(f"--config={config}", "token", "prod").stdout == first.stdout
    assert server.counts["token"] == 0
    # -v before the command still means "log": the full path, which logs
    verbose = cli.run("-v", "-c", str(config), "token", "prod")
    assert verbose.full and verbose.stdout == first.stdout and "tokenflow" in verbose.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["token"], (None, "raw", [])),
        (["token", "prod"], ("prod", "raw", [])),
        (["token", "prod", "--format", "json"], ("prod", "json", [])),
        (["token", "-f", "header", "prod"], ("prod", "header", [])),
        (["token", "--format=env"], (None, "env", [])),
        (["token", "--format", "raw", "--format", "exec-credential"], (None, "exec-credential", [])),
        (["token", "-c", "a.yaml", "--config", "b", "--config=c", "p"], ("p", "raw", ["a.yaml", "b", "c"])),
        # global options before the command too, adding up with those after it (issue 9, 14)
        (["-c", "x.yaml", "token"], (None, "raw", ["x.yaml"])),
        (["--config=a", "-c", "b", "token", "p", "-c", "c"], ("p", "raw", ["a", "b", "c"])),
        (["-c", "a", "token", "-f", "json", "--config", "b"], (None, "json", ["a", "b"])),
        # the sign-in flags matter only when a sign-in is needed, never on a cache hit
        (["token", "dev", "--interactive", "--no-browser"], ("dev", "raw", [])),
    ],
)
def test_parse_args_accepts(argv: list[str], expected: tuple[str | None, str, list[str]]) -> None:
    parsed = fastpath._parse_args(argv)
    assert parsed is not None and parsed[:3] == expected and parsed[3] is False


@pytest.mark.parametrize(
    "argv",
    [
        [], ["status"], ["-c", "x.yaml", "status"], ["-v", "token"], ["--verbose", "token", "p"],
        ["-c"], ["-c", "x"], ["--bogus", "token"], ["-h", "token"], ["--format", "json", "token"],
        ["token", "--force-refresh"], ["token", "-v"], ["token", "--conf", "x"],
        ["token", "-c", "-x"], ["token", "--force-refresh=1"], ["token", "p", "--", "q"],
        ["token", "--verbose"], ["token", "-h"], ["token", "--help"], ["token", "a", "b"],
        ["token", "--format"], ["token", "-c"], ["token", "--format", "yaml"],
        ["token", "--format=bogus"], ["token", "--"], ["token", "-fjson"],
    ],
)
def test_parse_args_leaves_everything_else_to_the_full_cli(argv: list[str]) -> None:
    assert fastpath._parse_args(argv) is None


# -- the index -----------------------------------------------------------------------------------
def test_index_paths_agree_with_the_full_path(
    cli: Cli, server: EmbeddedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, account = server.default_client, server.default_account
    command = json.dumps([sys.executable, "-c", f"print({account.username!r})"])
    text = f"""\
        version: 1
        servers:
          ts: {{token_url: "{server.token_url}", dialect: teamserver, retries: 0}}
        clients:
          app: {{client_id: "{client.client_id}", client_secret: "{client.secret}"}}
        profiles:
          base: {{abstract: true, server: ts, client: app, grant: password,
                 password: "{account.password}"}}
          prod: {{extends: base, username: {account.username}}}
          staging: {{extends: prod, scope: read}}
          twin: {{extends: prod}}
          from_file: {{extends: base, username: {{file: user.txt}}}}
          from_command: {{extends: base, username: {{command: {command}}}}}
          from_env: {{extends: base, username: {{env: TF_TEST_USER}}}}
          own_dir: {{extends: staging, store: {{file: {{path: my-tokens}}}}}}
          in_memory: {{extends: prod, store: memory}}
        """
    path = write_config(text)
    (path.parent / "user.txt").write_text(account.username + "\n")
    env = {"TF_TEST_USER": account.username}
    monkeypatch.setenv("TF_TEST_USER", account.username)

    first = cli.run("token", "prod", "-c", str(path), env=env)
    assert first.returncode == 0, first.stderr
    ((_name, index),) = cli.indexes().items()
    config = tokenflow.load_config(path)
    on_file = sorted(n for n, p in config.profiles.items() if p.store.name == "file")
    assert sorted(index["profiles"]) == on_file  # no abstract base, no memory store
    assert "in_memory" not in index["profiles"] and "base" not in index["profiles"]
    for name in on_file:
        session = config.session(name)
        assert isinstance(session.store, FileStore)
        assert index["profiles"][name]["token_path"] == str(session.store.path(session.cache_key)), name
    assert index["profiles"]["own_dir"]["token_path"].startswith(str(path.parent / "my-tokens"))
    # one identity, one token file: prod, twin, from_file, from_env share theirs
    shared = {index["profiles"][n]["token_path"] for n in ("prod", "twin", "from_file", "from_env")}
    assert len(shared) == 1

    for name in on_file:  # each profile's token lands where the index says, and is then fast
        run = cli.run("token", name, "-c", str(path), env=env)
        assert run.returncode == 0, (name, run.stderr)
        assert Path(index["profiles"][name]["token_path"]).is_file()
        assert cli.fast("token", name, "-c", str(path), env=env).stdout == run.stdout


def test_index_is_private_and_holds_no_secret(
    cli: Cli, server: EmbeddedServer, config: Path, cache_dir: Path
) -> None:
    assert cli.run("token", "prod", "-c", str(config)).returncode == 0
    files = sorted((cache_dir / "index").glob("*/*.json"))
    assert [f.name for f in files] == ["head.json", files[1].name] and files[1].name.startswith("p-")
    key = cache_dir / "index" / "key"
    for path in (*files, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (files[0].parent, files[0].parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    text = "".join(f.read_text() for f in files)
    (issued,) = server.issued_tokens()
    secrets = [server.default_account.password, server.default_client.secret,
               issued.access_token, issued.refresh_token]
    for secret in secrets:
        assert secret and secret not in text
    ((_name, index),) = cli.indexes().items()
    assert index["profiles"]["prod"]["token_path"] == str(token_files(cache_dir)[0])


# -- trusting the index (a second local user, a forged entry, secrets at rest) --------------------
def two_identities(cli: Cli, tokenflow_server_factory: ServerFactory,
                   write_config: WriteConfig) -> tuple[Path, str, str]:
    server = tokenflow_server_factory(accounts={"alice": "pw-alice", "bob": "pw-bob"})
    client = server.default_client
    path = write_config(f"""\
        version: 1
        servers: {{ts: {{token_url: "{server.token_url}", dialect: teamserver, retries: 0}}}}
        clients: {{app: {{client_id: "{client.client_id}", client_secret: "{client.secret}"}}}}
        profiles:
          alice: {{server: ts, client: app, grant: password, username: alice, password: pw-alice}}
          bob: {{server: ts, client: app, grant: password, username: bob, password: pw-bob}}
        """)
    alice = cli.run("token", "alice", "-c", str(path)).stdout
    bob = cli.run("token", "bob", "-c", str(path)).stdout
    assert alice and bob and alice != bob
    assert cli.fast("token", "alice", "-c", str(path)).stdout == alice
    return path, alice, bob


def test_a_forged_entry_mapping_a_profile_to_another_token_is_not_believed(
    cli: Cli, tokenflow_server_factory: ServerFactory, write_config: WriteConfig
) -> None:
    path, alice, _bob = two_identities(cli, tokenflow_server_factory, write_config)
    ((name, index),) = cli.indexes().items()
    folder = cli.cache / "index" / name
    alice_entry = next(folder / f for f in (p.name for p in folder.glob("p-*.json"))
                       if json.loads((folder / f).read_text())["profile"] == "alice")
    forged = json.loads(alice_entry.read_text())
    forged["token_path"] = index["profiles"]["bob"]["token_path"]  # the MAC no longer matches
    alice_entry.write_text(json.dumps(forged))
    run = cli.run("token", "alice", "-c", str(path))
    assert run.full and run.stdout == alice  # never bob's token
    # an entry copied whole from another profile carries a valid MAC but the wrong name
    bob_entry = next(folder / f for f in (p.name for p in folder.glob("p-*.json"))
                     if json.loads((folder / f).read_text())["profile"] == "bob")
    alice_entry.write_bytes(bob_entry.read_bytes())
    run = cli.run("token", "alice", "-c", str(path))
    assert run.full and run.stdout == alice


@pytest.mark.parametrize("where", ["index", "index-dir", "cache"])
def test_an_index_others_can_write_is_not_used(
    cli: Cli, tokenflow_server_factory: ServerFactory, write_config: WriteConfig, where: str
) -> None:
    path, _alice, _bob = two_identities(cli, tokenflow_server_factory, write_config)
    (folder,) = (cli.cache / "index").glob("*/")
    target = {"index": folder / "head.json", "index-dir": folder, "cache": cli.cache}[where]
    target.chmod(target.stat().st_mode | 0o022)
    try:
        run = cli.run("token", "alice", "-c", str(path))
        assert run.full, "a file or directory others can write was trusted"
    finally:
        target.chmod(target.stat().st_mode & ~0o022)


def test_index_keeps_only_keyed_digests_of_variables(
    cli: Cli, server: EmbeddedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    password = server.default_account.password
    path = write_config(profile_yaml(server, secrets_inline=False))
    env = {**secret_env(server), "TS_USER": server.default_account.username}
    assert cli.run("token", "prod", "-c", str(path), env=env).returncode == 0
    text = "".join(p.read_text() for p in (cli.cache / "index").glob("*/*.json"))
    for value in (password, server.default_client.secret):
        assert value not in text
        assert hashlib.sha256(value.encode()).hexdigest() not in text  # crackable offline
    key = (cli.cache / "index" / "key").read_bytes()
    assert len(key) == 32 and stat.S_IMODE((cli.cache / "index" / "key").stat().st_mode) == 0o600


def test_a_config_change_within_the_same_second_is_seen(
    cli: Cli, server: EmbeddedServer, config: Path
) -> None:
    before = cli.run("token", "prod", "-c", str(config))
    assert before.returncode == 0
    text = config.read_text()
    changed = text.replace("prod:", "qrod:", 1)  # same size: only the content differs
    assert len(changed) == len(text) and changed != text
    st = config.stat()
    config.write_text(changed)
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime a coarse clock would show
    run = cli.run("token", "prod", "-c", str(config))
    assert run.full and run.returncode == 2  # the profile is gone: the old index must not answer


def test_a_stamp_is_trusted_only_outside_the_racy_window(tmp_path: Path) -> None:
    path = tmp_path / "tokenflow.yaml"
    path.write_text("version: 1\n")
    stamp = file_stamp(str(path))
    assert stamp is not None
    recorded = {str(path): [stamp, "not-the-digest"]}
    mtime = stamp[1]
    # written long after the file's last change: the equal stamp is believed, nothing is hashed
    key = b"k" * 32
    assert fastpath.files_unchanged(key, recorded, mtime + 10 * 10**9)
    # written in the same second as the change: the stamp could hide an edit, so it is hashed
    assert not fastpath.files_unchanged(key, recorded, mtime + 10**8)
    good = {str(path): [stamp, fastpath.file_digest(key, str(path))]}
    assert fastpath.files_unchanged(key, good, mtime + 10**8)


@pytest.mark.parametrize(("key", "data"), [
    (b"\x0b" * 20, b"Hi There"),  # RFC 4231 test case 1
    (b"Jefe", b"what do ya want for nothing?"),  # test case 2
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),  # case 6
])
def test_keyed_digest_is_hmac_sha256(key: bytes, data: bytes) -> None:
    import hashlib
    import hmac

    from tokenflow.base.trust import keyed_digest

    assert keyed_digest(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()


def test_index_keeps_only_keyed_digests_of_files(
    cli: Cli, server: EmbeddedServer, write_config: WriteConfig
) -> None:
    """A username file and a config with a literal password are watched by content: the index
    must not hold their plain SHA-256, which would let a reader test guesses offline."""
    import hashlib

    path = write_config(profile_yaml(server, extra_profile={"username": "{file: user.txt}"}))
    (path.parent / "user.txt").write_text(server.default_account.username + "\n")
    assert cli.run("token", "prod", "-c", str(path)).returncode == 0
    text = "".join(p.read_text() for p in (cli.cache / "index").glob("*/*.json"))
    for watched in (path, path.parent / "user.txt"):
        assert hashlib.sha256(watched.read_bytes()).hexdigest() not in text, watched
    assert cli.fast("token", "prod", "-c", str(path)).returncode == 0


def test_an_index_is_not_written_from_a_config_that_changed_while_in_use(
    server: EmbeddedServer, write_config: WriteConfig, cache_dir: Path
) -> None:
    """The config was read, then edited while the request ran: the index must not tie the new
    file's content to what the old content said (the fast path would answer for the old)."""
    from tokenflow.cli.index_writer import write_index

    path = write_config(profile_yaml(server))
    flow = tokenflow.load_config(path)
    flow.session("prod").token()
    path.write_text(path.read_text().replace("scope:", "description: edited\n    scope:", 1))
    write_index(flow, [str(path)], served="prod")
    assert not list((cache_dir / "index").glob("*/head.json"))
    write_index(tokenflow.load_config(path), [str(path)], served="prod")  # read afresh: written
    assert list((cache_dir / "index").glob("*/head.json"))


@pytest.mark.parametrize("damage", ["no token_type", "a list as scope"])
def test_the_fast_path_refuses_a_cache_entry_the_full_path_would_refuse(
    cli: Cli, server: EmbeddedServer, config: Path, cache_dir: Path, damage: str
) -> None:
    first = cli.run("token", "prod", "-c", str(config), "-f", "json")
    assert first.returncode == 0
    (entry,) = token_files(cache_dir)
    data = cachefile.decode(entry.read_bytes())
    if damage == "no token_type":
        del data["token_type"]
    else:
        data["scope"] = ["read", "write"]
    entry.write_bytes(cachefile.encode(data))
    run = cli.run("token", "prod", "-c", str(config), "-f", "json")
    assert run.full and run.returncode == 0  # the full path judged it: damaged, a new grant
    assert len(list(entry.parent.glob(f"{entry.name}.corrupt-*"))) == 1
    printed = json.loads(run.stdout)
    assert printed["token_type"] == "Bearer" and isinstance(printed["scope"], str)
