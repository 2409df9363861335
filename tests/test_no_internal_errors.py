"""Exit 3 ("internal error ... this is a bug") is for bugs only: a sweep of ordinary failures.

Every failure a user's machine can produce is made real (missing, unreadable, FIFO, device and
huge config files, bad YAML, YAML bombs, absurd numbers in config and in cached tokens, a
read-only cache, damaged token files, unset variables, a dead server port, hostile secret
sources) and the CLI's commands are run under each. None may exit 3 or print a traceback; each
failure says what is wrong on a ``tokenflow:`` line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CliResult, profile_yaml
from test_bounded_inputs import LAUGHS, fifo, run_limited

from tokenflow.base import cachefile
from tokenflow.testing import EmbeddedServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, devices, modes")

WriteConfig = Callable[..., Path]
COMMANDS = (("token", "prod", "-f", "json"), ("status",), ("logout", "prod"))


@dataclass
class World:
    server: EmbeddedServer
    tmp: Path
    cache: Path
    write_config: WriteConfig
    stack: ExitStack
    env: dict[str, str] = field(default_factory=dict)

    def config(self, **options: object) -> Path:
        return self.write_config(profile_yaml(self.server, **options))  # type: ignore[arg-type]

    def cached_token(self, config: Path) -> Path:
        """Fetch a token (which also writes the fast path's index); its file."""
        result = run_limited("token", "prod", "-c", str(config), env=self.env)
        assert result.returncode == 0, result
        (path,) = sorted((self.cache / "tokens").glob("*.json"))
        return path


def rewrite_token(path: Path, **changes: object) -> None:
    """Change fields of a cached token and re-seal it with a valid checksum."""
    entry = json.loads(path.read_bytes())
    entry["token"].update(changes)
    path.write_bytes(cachefile.encode(entry["token"]))


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Each scenario prepares the world and returns the config path the commands are run with.
def missing(w: World) -> Path:
    return w.tmp / "no-such-dir" / "tokenflow.yaml"


def empty_directory(w: World) -> Path:
    (w.tmp / "empty").mkdir()
    return w.tmp / "empty"


def unreadable(w: World) -> Path:
    path = w.config()
    path.chmod(0)
    return path


def fifo_config(w: World) -> Path:
    return w.stack.enter_context(fifo(w.tmp / "fifo.yaml"))


def dev_zero(w: World) -> Path:
    return Path("/dev/zero")


def huge(w: World) -> Path:
    path = w.tmp / "huge.yaml"
    path.write_text("version: 1\n" + "#\n" * 700_000)
    return path


def bad_yaml(w: World) -> Path:
    return w.write_config("version: 1\nservers: [unclosed\n  - {a: \n")


def binary(w: World) -> Path:
    path = w.tmp / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x00" * 100)
    return path


def laughs(w: World) -> Path:
    return w.write_config(LAUGHS)


def with_keys(w: World, profile: str = "", server: str = "") -> Path:
    """The standard config with raw YAML lines added to the profile and the server (raw, because
    1e300 in JSON style is a string to YAML 1.1: a float needs a dot)."""
    text = profile_yaml(w.server)
    text = text.replace("    grant:", f"    {profile}\n    grant:") if profile else text
    text = text.replace("    dialect:", f"    {server}\n    dialect:") if server else text
    return w.write_config(text)


def absurd_lifetime(w: World) -> Path:
    return with_keys(w, "default_lifetime: 1.0e+300")


def absurd_margin(w: World) -> Path:
    return with_keys(w, "refresh_margin: 1.0e+300")


def absurd_server_numbers(w: World) -> Path:
    return with_keys(w, server="timeout: 1.0e+300\n    retries: 1000000000")


def non_finite_numbers(w: World) -> Path:
    return with_keys(w, "default_lifetime: .nan\n    refresh_margin: .inf")


def tiny_numbers(w: World) -> Path:
    return with_keys(w, "default_lifetime: 1.0e-300\n    refresh_margin: -0.0", "timeout: 1.0e-300")


def unset_variable(w: World) -> Path:
    return w.config(extra_profile={"scope": "${TOKENFLOW_TEST_NEVER_SET}"})


def dead_server(w: World) -> Path:
    text = profile_yaml(w.server).replace(f":{w.server.port}/", f":{dead_port()}/")
    return w.write_config(text)


def lock_path_is_a_directory(w: World) -> Path:
    """The cache cannot take the lock file: what a read-only cache directory does (for root too)."""
    config = w.config()
    path = w.cached_token(config)
    lock = Path(f"{path}.lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()
    rewrite_token(path, expires_at=1.0, obtained_at=0.0)  # expired: the next call must lock
    return config


def read_only_cache(w: World) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only directories; lock_path_is_a_directory covers it")
    config = w.config()
    path = w.cached_token(config)
    rewrite_token(path, expires_at=1.0, obtained_at=0.0)
    Path(f"{path}.lock").unlink()
    path.parent.chmod(0o500)
    w.stack.callback(path.parent.chmod, 0o700)
    return config


def cache_dir_is_a_file(w: World) -> Path:
    blocker = w.tmp / "not-a-dir"
    blocker.write_text("x")
    w.env["TOKENFLOW_CACHE_DIR"] = str(blocker / "cache")
    return w.config()


def cache_dir_is_a_fifo(w: World) -> Path:
    w.env["TOKENFLOW_CACHE_DIR"] = str(w.stack.enter_context(fifo(w.tmp / "cache-fifo")))
    return w.config()


def garbage_token_file(w: World) -> Path:
    config = w.config()
    w.cached_token(config).write_bytes(b"\x00garbage{{{")
    return config


def token_field(**changes: object) -> Callable[[World], Path]:
    def scenario(w: World) -> Path:
        config = w.config()
        rewrite_token(w.cached_token(config), **changes)
        return config

    scenario.__name__ = "token_" + "_".join(f"{k}={v}" for k, v in changes.items())
    return scenario


def token_file_is_a_fifo(w: World) -> Path:
    config = w.config()
    path = w.cached_token(config)
    path.unlink()
    w.stack.enter_context(fifo(path))
    return config


def token_file_is_huge(w: World) -> Path:
    config = w.config()
    path = w.cached_token(config)
    with path.open("ab") as handle:
        handle.truncate(8 << 20)
    return config


def secret_file_fifo(w: World) -> Path:
    config = w.config(extra_profile={"password": "{file: pw}"})
    w.stack.enter_context(fifo(config.parent / "pw"))
    return config


def secret_file_dev_zero(w: World) -> Path:
    return w.config(extra_profile={"password": "{file: /dev/zero}"})


def secret_command_yes(w: World) -> Path:
    return w.config(extra_profile={"password": "{command: [yes]}"})


def secret_command_missing(w: World) -> Path:
    return w.config(extra_profile={"password": "{command: [tokenflow-test-no-such-program]}"})


SCENARIOS: list[Callable[[World], Path]] = [
    missing, empty_directory, unreadable, fifo_config, dev_zero, huge, bad_yaml, binary, laughs,
    absurd_lifetime, absurd_margin, absurd_server_numbers, non_finite_numbers, tiny_numbers,
    unset_variable,
    dead_server, lock_path_is_a_directory, read_only_cache, cache_dir_is_a_file,
    cache_dir_is_a_fifo, garbage_token_file,
    token_field(expires_at=1e308), token_field(expires_at=float("nan")),
    token_field(expires_at=float("inf"), obtained_at=float("-inf")),
    token_field(expires_at="soon"), token_field(expires_at=-1e308), token_field(access_token=""),
    token_field(token_type=None), token_field(scope=42),
    token_file_is_a_fifo, token_file_is_huge, secret_file_fifo, secret_file_dev_zero,
    secret_command_yes, secret_command_missing,
]


@pytest.fixture
def world(tokenflow_server: EmbeddedServer, tmp_path: Path, cache_dir: Path,
          write_config: WriteConfig) -> Iterator[World]:
    with ExitStack() as stack:
        yield World(tokenflow_server, tmp_path, cache_dir, write_config, stack)


def assert_not_a_bug(result: CliResult, argv: tuple[str, ...]) -> None:
    where = f"tokenflow {' '.join(argv)} -> exit {result.returncode}\n{result.stderr}"
    assert result.returncode != 3, where
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, where
    assert "Traceback" not in result.stdout, where
    if result.returncode != 0:
        # status reports a profile's error as a row of its table
        said = result.stderr if argv[0] != "status" else result.stderr + result.stdout
        assert said.startswith("tokenflow: ") or (argv[0] == "status" and " error " in said), where


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_no_ordinary_failure_is_an_internal_error(
    world: World, scenario: Callable[[World], Path]
) -> None:
    config = scenario(world)
    runs = [(*command, "-c", str(config)) for command in COMMANDS]
    runs += [("token", "prod", "--force-refresh", "-c", str(config)), ("validate", str(config))]
    for argv in runs:
        result = run_limited(*argv, env=world.env, timeout=120)
        assert_not_a_bug(result, argv)


def test_a_read_only_cache_is_a_storage_error_with_exit_1(world: World) -> None:
    config = lock_path_is_a_directory(world)
    for argv in (("token", "prod", "-c", str(config)), ("logout", "prod", "-c", str(config))):
        result = run_limited(*argv)
        assert result.returncode == 1, result
        # the file store names its lock file; any other store's OSError is named by the engine
        assert result.stderr.startswith("tokenflow: error: cannot open the lock file "), result
        assert result.stderr.rstrip().endswith(".json.lock: Is a directory"), result
        assert len(result.stderr.splitlines()) == 1, result


@pytest.mark.parametrize("key", ["default_lifetime", "refresh_margin"])
def test_absurd_durations_are_refused_at_load_with_their_location(world: World, key: str) -> None:
    config = with_keys(world, f"{key}: 1.0e+300")
    result = run_limited("validate", str(config))
    assert result.returncode == 2, result
    assert f": $.profiles.prod.{key}: 1e+300 is greater than the maximum of 31622400" in result.stdout
    result = run_limited("status", "-c", str(config))
    assert result.returncode == 2, result
    assert f"$.profiles.prod.{key}: 1e+300 is greater than the maximum" in result.stderr


@pytest.mark.parametrize("changes", [{"expires_at": 1e308}, {"expires_at": float("nan")}],
                         ids=["1e308", "nan"])
def test_a_cached_token_with_absurd_times_is_replaced(world: World, changes: dict[str, float]) -> None:
    config = world.config()
    path = world.cached_token(config)
    rewrite_token(path, **changes)
    for argv in (("status", "-c", str(config)), ("token", "prod", "-c", str(config))):
        result = run_limited(*argv)
        assert_not_a_bug(result, argv)
        assert result.returncode == 0, result
    assert world.server.counts["token"] == 2  # the damaged entry was replaced by a new grant
    assert list(path.parent.glob("*.corrupt-*")), "the damaged entry was not kept aside"
