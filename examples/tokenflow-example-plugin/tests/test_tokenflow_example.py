"""Tests of the example plugin against tokenflow's embedded OAuth server.

``tokenflow_server`` is a fixture of tokenflow's pytest plugin (entry point ``pytest11``): with
tokenflow installed, it is available to every test suite, no conftest needed. These tests expect
the plugin to be installed (``pip install -e .``), so that its entry point is what loads it, as it
will be for users.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from tokenflow_example.dotenv_source import parse_dotenv
from tokenflow_example.sqlite_store import SQLiteStore

import tokenflow
from tokenflow.plugins.host import build_plugin_host
from tokenflow.testing import EmbeddedServer


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOKENFLOW_EXAMPLE_EVENTS", str(tmp_path / "events.jsonl"))
    monkeypatch.delenv("TOKENFLOW_DISABLE_PLUGINS", raising=False)


def config_for(server: EmbeddedServer, base_dir: Path) -> tokenflow.Config:
    """A profile using the plugin's store and secret source for the embedded server."""
    (base_dir / ".env").write_text(
        f"export TS_PASSWORD='{server.default_account.password}'\n"
        f'CLIENT_SECRET="{server.default_client.secret}"  # the client\'s secret\n',
        encoding="utf-8",
    )
    data: dict[str, Any] = {
        "version": 1,
        "servers": {"ts": {"token_url": server.token_url, "dialect": "teamserver", "retries": 0}},
        "clients": {"app": {"client_id": server.default_client.client_id,
                            "client_secret": {"dotenv": {"path": ".env", "key": "CLIENT_SECRET"}}}},
        "profiles": {"prod": {
            "server": "ts", "client": "app", "grant": "password",
            "username": server.default_account.username,
            "password": {"dotenv": {"path": ".env", "key": "TS_PASSWORD"}},
            "store": {"sqlite": {"path": "tokens.sqlite3"}},
        }},
    }
    return tokenflow.config_from_mapping(data, source="test", base_dir=base_dir)


def test_the_entry_point_registers_everything() -> None:
    host = build_plugin_host()
    assert host.stores["sqlite"].plugin == "example"
    assert host.sources["dotenv"].plugin == "example"
    assert "example" in host.observer_plugins()


def test_token_is_fetched_once_and_kept_in_sqlite(
    tokenflow_server: EmbeddedServer, tmp_path: Path
) -> None:
    config = config_for(tokenflow_server, tmp_path)
    token = config.session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)

    # A new session (as another process would) finds the token in the database.
    again = config.session("prod", interactive=False).token()
    assert again.access_token == token.access_token
    assert tokenflow_server.counts["password"] == 1
    with sqlite3.connect(tmp_path / "tokens.sqlite3") as conn:
        (count,) = conn.execute("SELECT count(*) FROM tokens").fetchone()
    assert count == 1

    kinds = [json.loads(line)["kind"]
             for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds == ["fetched", "stored", "cache_hit"]
    text = (tmp_path / "events.jsonl").read_text()
    assert token.access_token not in text
    assert tokenflow_server.default_account.password not in text


def test_damaged_row_is_treated_as_absent(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.sqlite3")
    assert store.load("k") is None
    with store._connection() as conn:
        conn.execute("INSERT INTO tokens VALUES ('k', 'not json', 0)")
    assert store.load("k") is None
    store.delete("k")
    store.delete("k")  # deleting an absent key is fine
    assert store.keys() == []


def test_lock_serialises_threads(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.sqlite3")
    inside = 0
    overlaps: list[int] = []
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside
        for _ in range(20):
            with store.lock("key"):
                with guard:
                    inside += 1
                    overlaps.append(inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1


def test_dotenv_parsing() -> None:
    values = parse_dotenv(
        "# comment\n\nA=1\nexport B = two words \nC='lit\\n'\nD=\"esc\\n\\\"q\\\"\"\n"
        "E=x # note\nF='a#b' # note\nnot an assignment\nA=last\n"
    )
    assert values == {"A": "last", "B": "two words", "C": "lit\\n", "D": 'esc\n"q"', "E": "x",
                      "F": "a#b"}
