"""The ``keyring`` store and secret source (tokenflow/builtins/keyring_plugin.py).

With a real in-memory keyring backend they keep tokens and read passwords; with no usable backend,
or without the ``keyring`` package, they refuse with a clear error: never a crash, never a silent
fall back to plaintext files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.backends.null
import keyring.core
import keyring.errors
import pytest
from conftest import profile_yaml, run_cli

import tokenflow
from tokenflow.errors import CredentialError, StorageError
from tokenflow.plugins.contracts import PluginContext, TokenStore
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import EmbeddedServer
from tokenflow.tokens import Token

KEYRING_PASSWORD = "{keyring: {service: ts-test, username: alice}}"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend that keeps items in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.fail_with: Exception | None = None

    def get_password(self, service: str, username: str) -> str | None:
        if self.fail_with is not None:
            raise self.fail_with
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


# keyring registers every backend class for auto-detection; keep this one out of it so other
# tests in this process still get the machine's default backend.
keyring.backend.KeyringBackend._classes.discard(MemoryKeyring)


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``use_backend(backend)``: make *backend* keyring's current one for this test only."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)

    def use(backend: keyring.backend.KeyringBackend) -> keyring.backend.KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use


@pytest.fixture
def memory_keyring(use_backend: Any) -> MemoryKeyring:
    backend: MemoryKeyring = use_backend(MemoryKeyring())
    return backend


def context(tmp_path: Path) -> PluginContext:
    return PluginContext("prod", tmp_path, tmp_path / "cache")


def a_token(access: str = "access-token-1234567890") -> Token:
    return Token(access, "Bearer", expires_at=2_000_000_000.0, obtained_at=1_999_996_400.0,
                 refresh_token="refresh-token-0987654321", scope="read")


def token_files(cache_dir: Path) -> list[Path]:
    """Tokens in plaintext files (lock files hold no token)."""
    return sorted(p for p in cache_dir.rglob("*.json*") if not p.name.endswith(".lock"))


# -- with a working backend ----------------------------------------------------------------------
def test_store_saves_loads_and_deletes(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    store = build_plugin_host().store("keyring").factory({}, context(tmp_path))
    assert isinstance(store, TokenStore)
    assert store.load("k1") is None
    token = a_token()
    store.save("k1", token)
    assert json.loads(memory_keyring.items[("tokenflow", "k1")])["access_token"] == token.access_token
    assert store.load("k1") == token
    store.delete("k1")
    assert store.load("k1") is None
    store.delete("k1")  # absent: not an error
    assert memory_keyring.items == {}

    custom = build_plugin_host().store("keyring").factory({"service": "my-app"}, context(tmp_path))
    custom.save("k2", token)
    assert list(memory_keyring.items) == [("my-app", "k2")]


@pytest.mark.parametrize("damaged", ["not json", "[1, 2]", '{"access_token": 5}', "null", '"x"'])
def test_damaged_item_is_treated_as_absent(damaged: str, memory_keyring: MemoryKeyring,
                                           tmp_path: Path) -> None:
    store = build_plugin_host().store("keyring").factory({}, context(tmp_path))
    memory_keyring.items[("tokenflow", "k")] = damaged
    assert store.load("k") is None
    store.save("k", a_token())  # the next save replaces it
    assert store.load("k") == a_token()


def test_lock_serialises_refreshes_of_one_key(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    store = build_plugin_host().store("keyring").factory({}, context(tmp_path))
    order: list[str] = []

    def second() -> None:
        with store.lock("k"):
            order.append("second")

    with store.lock("k"):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.2)  # it must be waiting for us
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
    with store.lock("other"), store.lock("k"):  # other keys are independent
        pass


def test_source_reads_a_password(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    resolve = build_plugin_host().source("keyring").resolver
    memory_keyring.items[("ts", "alice")] = "wonderland"
    memory_keyring.items[("ts", "")] = "no-user"
    assert resolve({"service": "ts", "username": "alice"}, context(tmp_path)) == "wonderland"
    assert resolve({"service": "ts"}, context(tmp_path)) == "no-user"
    with pytest.raises(CredentialError) as caught:
        resolve({"service": "ts", "username": "bob"}, context(tmp_path))
    assert str(caught.value) == (
        "profile 'prod': no keyring item for service 'ts' and username 'bob'; "
        "add it with: keyring set ts bob")


def test_backend_failures_are_clear_errors(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    host = build_plugin_host()
    store = host.store("keyring").factory({}, context(tmp_path))
    memory_keyring.fail_with = keyring.errors.KeyringLocked("the collection is locked")
    with pytest.raises(StorageError, match=r"^keyring read failed: KeyringLocked$"):
        store.load("k")
    with pytest.raises(StorageError, match=r"^keyring write failed: KeyringLocked$"):
        store.save("k", a_token())
    with pytest.raises(StorageError, match=r"^keyring delete failed: KeyringLocked$"):
        store.delete("k")
    with pytest.raises(CredentialError, match="keyring lookup of 'ts' failed: KeyringLocked"):
        host.source("keyring").resolver({"service": "ts"}, context(tmp_path))


def test_profile_with_keyring_store_and_password(
    tokenflow_server: EmbeddedServer, memory_keyring: MemoryKeyring, write_config: Any,
    cache_dir: Path,
) -> None:
    memory_keyring.items[("ts-test", "alice")] = tokenflow_server.default_account.password
    path = write_config(profile_yaml(tokenflow_server, store="{keyring: {service: tf-tokens}}",
                                     extra_profile={"password": KEYRING_PASSWORD}))
    config = tokenflow.load_config(path)
    session = config.session("prod")
    token = session.token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    saved = json.loads(memory_keyring.items[("tf-tokens", session.cache_key)])
    assert saved["access_token"] == token.access_token
    assert token_files(cache_dir) == []  # nothing in plaintext files

    # another session finds it in the keyring
    assert config.session("prod", interactive=False).token() == token
    assert tokenflow_server.counts["token"] == 1
    assert session.logout() is True
    assert ("tf-tokens", session.cache_key) not in memory_keyring.items


# -- without a usable backend --------------------------------------------------------------------
@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring, keyring.backends.null.Keyring])
def test_no_usable_backend_in_process(backend: type[keyring.backend.KeyringBackend],
                                      use_backend: Any, tokenflow_server: EmbeddedServer,
                                      write_config: Any, cache_dir: Path, tmp_path: Path) -> None:
    use_backend(backend())
    host = build_plugin_host()
    with pytest.raises(StorageError, match=r"no usable OS keyring backend .*use the file store"):
        host.store("keyring").factory({}, context(tmp_path))
    with pytest.raises(CredentialError, match="no usable OS keyring backend"):
        host.source("keyring").resolver({"service": "ts"}, context(tmp_path))

    stored = tokenflow.load_config(write_config(profile_yaml(tokenflow_server, store="keyring")))
    with pytest.raises(StorageError, match="no usable OS keyring backend"):
        stored.session("prod").token()
    sourced = tokenflow.load_config(write_config(
        profile_yaml(tokenflow_server, extra_profile={"password": KEYRING_PASSWORD}), name="b.yaml"))
    with pytest.raises(CredentialError, match="no usable OS keyring backend"):
        sourced.session("prod").token()
    assert tokenflow_server.counts["token"] == 0
    assert token_files(cache_dir) == []


def test_no_usable_backend_through_the_cli(tokenflow_server: EmbeddedServer, write_config: Any,
                                           cache_dir: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    stored = write_config(profile_yaml(tokenflow_server, store="keyring"))
    result = run_cli("token", "prod", "-c", str(stored), env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("tokenflow: error: no usable OS keyring backend (keyring chose "
                                    "Keyring); install and unlock a keychain")
    assert result.stderr.count("\n") == 1

    sourced = write_config(profile_yaml(tokenflow_server, extra_profile={"password": KEYRING_PASSWORD}),
                           name="b.yaml")
    result = run_cli("token", "prod", "-c", str(sourced), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("tokenflow: error: no usable OS keyring backend")
    assert tokenflow_server.counts["token"] == 0
    assert token_files(cache_dir) == []


# -- without the keyring package -----------------------------------------------------------------
MISSING_KEYRING = """
import sys
sys.modules["keyring"] = None  # what an environment without the extra looks like
from tokenflow.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_package_names_the_extra(tokenflow_server: EmbeddedServer, write_config: Any,
                                         cache_dir: Path) -> None:
    stored = write_config(profile_yaml(tokenflow_server, store="keyring"))
    sourced = write_config(profile_yaml(tokenflow_server, extra_profile={"password": KEYRING_PASSWORD}),
                           name="b.yaml")
    extra = "the keyring store/source needs the optional extra: pip install 'tokenflow[keyring]'"
    for path in (stored, sourced):
        # validation does not need the package; using it does
        checked = subprocess.run([sys.executable, "-c", MISSING_KEYRING, "validate", str(path)],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        done = subprocess.run([sys.executable, "-c", MISSING_KEYRING, "token", "prod", "-c", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1
        assert done.stderr == f"tokenflow: error: {extra}\n"
    assert tokenflow_server.counts["token"] == 0
    assert token_files(cache_dir) == []
