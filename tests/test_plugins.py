"""The plugin system: hosts built per call, built-ins as plugins, $TOKENFLOW_PLUGINS,
$TOKENFLOW_DISABLE_PLUGINS, broken plugins, option schemas and the hook reference in the docs.

Plugin modules are real files written to a temporary directory and put on ``sys.path`` (or on
``PYTHONPATH`` for the CLI in a subprocess); entry points are real ``*.dist-info`` directories
that :mod:`importlib.metadata` finds on ``sys.path``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
from conftest import profile_yaml, run_cli

import tokenflow
from tokenflow.errors import ConfigError, PluginError
from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins import hookspecs
from tokenflow.plugins.contracts import PluginContext, TokenStore
from tokenflow.plugins.host import BUILTIN_PLUGINS, REQUIRED_PLUGINS, PluginHost, build_plugin_host
from tokenflow.testing import EmbeddedServer
from tokenflow.tokens import Token, fingerprint

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
EXAMPLE_PLUGIN = ROOT / "examples" / "tokenflow-example-plugin" / "src" / "tokenflow_example" / "plugin.py"

WritePlugin = Callable[[str], str]

# A complete third-party plugin: a store keeping tokens as JSON files in a directory (option
# `dir`), a secret source returning its option reversed, and an observer recording events.
JAR_PLUGIN = '''
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import tokenflow
from tokenflow.tokens import Token

EVENTS = []


class JarStore:
    def __init__(self, directory):
        self.directory = directory
        self.guard = threading.Lock()

    def load(self, key):
        path = self.directory / key
        if not path.exists():
            return None
        try:
            return Token.from_dict(json.loads(path.read_text()))
        except ValueError:
            return None

    def save(self, key, token):
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / key).write_text(json.dumps(token.to_dict()))

    def delete(self, key):
        (self.directory / key).unlink(missing_ok=True)

    @contextmanager
    def lock(self, key):
        with self.guard:
            yield


def jar_store(options, context):
    directory = Path(options["dir"])
    return JarStore(directory if directory.is_absolute() else context.base_dir / directory)


def reverse(options, context):
    return str(options)[::-1]


JAR_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["dir"],
              "properties": {"dir": {"type": "string", "minLength": 1,
                                     "description": "Directory of the jar."}}}


@tokenflow.hookimpl
def tokenflow_register_stores(register):
    register("jar", jar_store, JAR_SCHEMA)


@tokenflow.hookimpl
def tokenflow_register_secret_sources(register):
    register("reverse", reverse, {"type": "string", "minLength": 1,
                                  "description": "The secret, reversed."})


@tokenflow.hookimpl
def tokenflow_event(event):
    EVENTS.append(event)
    target = os.environ.get("JAR_EVENTS")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"kind": event.kind.value, "profile": event.profile,
                                     "fingerprint": event.fingerprint}) + "\\n")
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


@pytest.fixture
def write_plugin(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WritePlugin]:
    """``write_plugin(source) -> module name``: a plugin module importable from ``sys.path``."""
    names: list[str] = []

    def write(source: str) -> str:
        name = f"tfplugin_{uuid.uuid4().hex[:10]}"
        (plugin_dir / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(name)
        return name

    monkeypatch.syspath_prepend(str(plugin_dir))
    yield write
    for name in names:
        sys.modules.pop(name, None)


def plugin_env(plugin_dir: Path, *modules: str) -> dict[str, str]:
    """Environment for a CLI subprocess that loads *modules* from *plugin_dir*."""
    path = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "TOKENFLOW_PLUGINS": ",".join(modules)}


def context(tmp_path: Path) -> PluginContext:
    return PluginContext("prod", tmp_path, tmp_path / "cache")


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first *needle* in *text*."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def rows(table: str) -> dict[str, list[str]]:
    """``tokenflow plugins`` output as {plugin: [origin, registers]} (columns split on 2+ spaces)."""
    out: dict[str, list[str]] = {}
    for line in table.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0]] = cells[1:]
    return out


def jar_config(server: EmbeddedServer, write_config: Any, **keys: object) -> Path:
    path: Path = write_config(profile_yaml(
        server, store="{jar: {dir: jar}}", extra_profile={"password": "{reverse: dnalrednow}", **keys},
    ))
    return path


# -- the host ------------------------------------------------------------------------------------
def test_each_build_is_an_independent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    class Extra:
        __name__ = "extra-store"

        @tokenflow.hookimpl
        def tokenflow_register_stores(self, register: Any) -> None:
            register("extra", lambda options, context: None)

    one = build_plugin_host(extra_plugins=[Extra()])
    two = build_plugin_host()
    assert one is not two
    assert "extra" in one.stores
    assert "extra" not in two.stores
    # the environment is read at every build, not once per process
    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", "tokenflow.memory_store")
    three = build_plugin_host()
    assert "memory" not in three.stores
    assert "memory" in two.stores
    # no module keeps a plugin manager or host around
    for name, module in list(sys.modules.items()):
        if name == "tokenflow" or name.startswith("tokenflow."):
            for value in vars(module).values():
                assert not isinstance(value, pluggy.PluginManager | PluginHost), name


def test_configs_get_their_own_hosts(tokenflow_server: EmbeddedServer, write_config: Any) -> None:
    path = write_config(profile_yaml(tokenflow_server))
    assert tokenflow.load_config(path).plugins is not tokenflow.load_config(path).plugins


def test_builtins_register_through_the_hooks() -> None:
    host = build_plugin_host()
    assert {name: e.plugin for name, e in host.stores.items()} == {
        "memory": "tokenflow.memory_store", "file": "tokenflow.file_store",
        "keyring": "tokenflow.keyring", "redis": "tokenflow.redis_store"}
    assert {name: e.plugin for name, e in host.sources.items()} == {
        "env": "tokenflow.env_source", "file": "tokenflow.file_source",
        "command": "tokenflow.command_source", "keyring": "tokenflow.keyring",
        "prompt": "tokenflow.prompt_source"}
    assert {name: e.plugin for name, e in host.dialects.items()} == {
        "teamserver": "tokenflow.teamserver", "rfc6749": "tokenflow.rfc6749"}
    assert host.observer_plugins() == ["tokenflow.logging_sink"]
    # registered in BUILTIN_PLUGINS order, each as a module of hook implementations
    assert [info.name for info in host.plugins()] == list(BUILTIN_PLUGINS)
    assert list(host.stores) == ["memory", "file", "keyring", "redis"]
    for info in host.plugins():
        assert info.origin == "built-in"
        assert info.required == (info.name in REQUIRED_PLUGINS)
        module = importlib.import_module(BUILTIN_PLUGINS[info.name])
        hooks = [n for n in vars(module) if n.startswith("tokenflow_")]
        assert hooks, info.name
        assert all(hasattr(getattr(module, n), "tokenflow_impl") for n in hooks)
    assert set(BUILTIN_PLUGINS) >= REQUIRED_PLUGINS


def test_core_modules_import_no_builtin_plugin() -> None:
    code = (
        "import sys, tokenflow.engine.session, tokenflow.config.loader, tokenflow.plugins.host, "
        "tokenflow.config.model, tokenflow.transport, tokenflow.cli.app, tokenflow.cli.fast.index\n"
        "print(sorted(m for m in sys.modules if m.startswith('tokenflow.builtins.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cli_plugins_lists_every_builtin() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    host = build_plugin_host()
    for info in host.plugins():
        origin = "built-in, required" if info.name in REQUIRED_PLUGINS else "built-in"
        assert table[info.name] == [origin, ", ".join(info.registers)]
    assert table["tokenflow.keyring"] == ["built-in", "store keyring, secret source keyring"]
    assert table["tokenflow.logging_sink"] == ["built-in", "event observer"]
    assert table["tokenflow.rfc6749"] == ["built-in, required", "dialect rfc6749"]


# -- $TOKENFLOW_PLUGINS --------------------------------------------------------------------------
def test_env_plugin_store_source_and_observer_work_from_a_profile(
    tokenflow_server: EmbeddedServer, write_config: Any, write_plugin: WritePlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    path = jar_config(tokenflow_server, write_config)
    config = tokenflow.load_config(path)
    info = {i.name: i for i in config.plugins.plugins()}[name]
    assert info.origin == "$TOKENFLOW_PLUGINS"
    assert info.registers == ["store jar", "secret source reverse", "event observer"]
    assert config.plugins.observer_plugins() == ["tokenflow.logging_sink", name]

    session = config.session("prod")
    token = session.token()  # the password came from the plugin's source, reversed
    assert tokenflow_server.is_valid_access_token(token.access_token)
    saved = json.loads((path.parent / "jar" / session.cache_key).read_text())
    assert saved["access_token"] == token.access_token
    assert not (Path(os.environ["TOKENFLOW_CACHE_DIR"]) / "tokens").exists()

    events: list[TokenEvent] = sys.modules[name].EVENTS  # type: ignore[attr-defined]
    assert [e.kind for e in events] == [EventKind.FETCHED, EventKind.STORED]
    assert {e.profile for e in events} == {"prod"}
    assert {e.fingerprint for e in events} == {fingerprint(token.access_token)}
    assert token.access_token not in repr(events)

    # a second session reads the plugin's store: a cache hit, no request
    again = config.session("prod", interactive=False).token()
    assert again.access_token == token.access_token
    assert tokenflow_server.counts["token"] == 1
    assert events[-1].kind is EventKind.CACHE_HIT


def test_env_plugin_through_the_cli(
    tokenflow_server: EmbeddedServer, write_config: Any, write_plugin: WritePlugin,
    plugin_dir: Path, tmp_path: Path,
) -> None:
    name = write_plugin(JAR_PLUGIN)
    env = plugin_env(plugin_dir, name)
    listed = run_cli("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    assert rows(listed.stdout)[name] == [
        "$TOKENFLOW_PLUGINS", "store jar, secret source reverse, event observer"]

    path = jar_config(tokenflow_server, write_config)
    events = tmp_path / "events.jsonl"
    env["JAR_EVENTS"] = str(events)
    first = run_cli("token", "prod", "-c", str(path), env=env)
    assert first.returncode == 0, first.stderr
    access = first.stdout.strip()
    assert tokenflow_server.is_valid_access_token(access)
    second = run_cli("token", "prod", "-c", str(path), env=env)
    assert second.stdout.strip() == access
    assert tokenflow_server.counts["token"] == 1
    assert len(list((path.parent / "jar").iterdir())) == 1
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds == ["fetched", "stored", "cache_hit"]
    assert access not in events.read_text()


def test_disabled_env_plugin_is_not_loaded(write_plugin: WritePlugin,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", f" {name} ")
    host = build_plugin_host()
    assert "jar" not in host.stores
    assert name not in {i.name for i in host.plugins()}
    assert host.blocked() == [name]


def test_same_module_twice_is_loaded_once(write_plugin: WritePlugin,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", f"{name},{name},tokenflow.builtins.memory_store")
    host = build_plugin_host(extra_plugins=[importlib.import_module(name)])
    assert host.stores["jar"].plugin == name
    assert host.stores["memory"].plugin == "tokenflow.memory_store"


# -- $TOKENFLOW_DISABLE_PLUGINS ------------------------------------------------------------------
def test_disabling_the_keyring_plugin_removes_its_store(
    tokenflow_server: EmbeddedServer, write_config: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", "tokenflow.keyring")
    host = build_plugin_host()
    assert "keyring" not in host.stores
    assert "keyring" not in host.sources
    assert "tokenflow.keyring" not in {i.name for i in host.plugins()}

    text = profile_yaml(tokenflow_server, store="keyring")
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    line, col = position(text, '"keyring"')
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:{line}:{col}: $.profiles.prod.store: unknown store 'keyring'; known: file, memory, redis"]

    listed = run_cli("plugins")
    assert rows(listed.stdout)["tokenflow.keyring"] == ["blocked by $TOKENFLOW_DISABLE_PLUGINS", "-"]
    checked = run_cli("validate", str(path))
    assert checked.returncode == 2
    assert "unknown store 'keyring'; known: file, memory" in checked.stdout


@pytest.mark.parametrize("name", sorted(REQUIRED_PLUGINS))
def test_required_plugins_cannot_be_disabled(name: str, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", f"{name},tokenflow.memory_store")
    with caplog.at_level(logging.WARNING, logger="tokenflow.plugins"):
        host = build_plugin_host()
    assert "file" in host.stores
    assert "rfc6749" in host.dialects
    assert "memory" not in host.stores
    assert host.blocked() == ["tokenflow.memory_store"]
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin {name!r} cannot be disabled: tokenflow cannot run without it"]

    listed = run_cli("plugins")
    table = rows(listed.stdout)
    assert table[name][0] == "built-in, required"
    assert table["tokenflow.memory_store"] == ["blocked by $TOKENFLOW_DISABLE_PLUGINS", "-"]
    assert f"plugin {name!r} cannot be disabled" in listed.stderr


# -- broken plugins ------------------------------------------------------------------------------
def test_unknown_hook_is_rejected(write_plugin: WritePlugin, plugin_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin("""
        import tokenflow

        @tokenflow.hookimpl
        def tokenflow_bogus(event):
            pass
    """)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    with pytest.raises(PluginError, match=rf"plugin '{name}' is invalid: unknown hook 'tokenflow_bogus'"):
        build_plugin_host()
    result = run_cli("plugins", env=plugin_env(plugin_dir, name))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "unknown hook 'tokenflow_bogus'" in result.stderr


def test_hook_with_wrong_arguments_is_a_plugin_error(write_plugin: WritePlugin, plugin_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin("""
        import tokenflow

        @tokenflow.hookimpl
        def tokenflow_register_stores(registrar):
            pass
    """)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    with pytest.raises(PluginError) as caught:
        build_plugin_host()
    message = str(caught.value)
    assert f"plugin '{name}' is invalid" in message
    assert "tokenflow_register_stores" in message
    assert "registrar" in message
    result = run_cli("plugins", env=plugin_env(plugin_dir, name))
    assert result.returncode == 2, result.stderr  # a clear error, not "internal error" (3)
    assert "tokenflow_register_stores" in result.stderr


@pytest.mark.parametrize(("source", "error"), [
    ("raise RuntimeError('boom')", "RuntimeError: boom"),
    ("import tokenflow_no_such_dependency", "ModuleNotFoundError"),
])
def test_module_that_fails_to_import(source: str, error: str, write_plugin: WritePlugin,
                                     plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin(source)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    with pytest.raises(PluginError) as caught:
        build_plugin_host()
    assert f"cannot import plugin module '{name}' ($TOKENFLOW_PLUGINS)" in str(caught.value)
    assert error in str(caught.value)
    result = run_cli("plugins", env=plugin_env(plugin_dir, name))
    assert result.returncode == 2
    assert name in result.stderr


def test_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLOW_PLUGINS", "tokenflow_plugin_that_is_not_installed")
    with pytest.raises(PluginError, match="cannot import plugin module "
                                          "'tokenflow_plugin_that_is_not_installed'"):
        build_plugin_host()


def test_two_plugins_registering_one_store_name(write_plugin: WritePlugin,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    first = write_plugin(JAR_PLUGIN)
    second = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", f"{first},{second}")
    with pytest.raises(PluginError) as caught:
        build_plugin_host()
    assert str(caught.value) == f"store 'jar' is registered by both '{first}' and '{second}'"


@pytest.mark.parametrize(("hook", "name", "owner"), [
    ("tokenflow_register_stores", "file", "tokenflow.file_store"),
    ("tokenflow_register_secret_sources", "env", "tokenflow.env_source"),
    ("tokenflow_register_dialects", "teamserver", "tokenflow.teamserver"),
])
def test_a_plugin_cannot_take_a_builtin_name(hook: str, name: str, owner: str,
                                             write_plugin: WritePlugin,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_plugin(f"""
        import tokenflow

        @tokenflow.hookimpl
        def {hook}(register):
            register({name!r}, object())
    """)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", module)
    with pytest.raises(PluginError, match=rf"'{name}' is registered by both '{owner}' and '{module}'"):
        build_plugin_host()


def test_bad_names_and_failing_registration(write_plugin: WritePlugin,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bad_name = write_plugin("""
        import tokenflow

        @tokenflow.hookimpl
        def tokenflow_register_stores(register):
            register("two words", object())
    """)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", bad_name)
    with pytest.raises(PluginError, match=rf"plugin '{bad_name}' registered a store with a bad name"):
        build_plugin_host()
    failing = write_plugin("""
        import tokenflow

        @tokenflow.hookimpl
        def tokenflow_register_secret_sources(register):
            raise ValueError("no vault configured")
    """)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", failing)
    with pytest.raises(PluginError, match=rf"plugin '{failing}' failed while registering: "
                                          "ValueError: no vault configured"):
        build_plugin_host()


def test_observer_that_raises_is_logged_and_ignored(
    tokenflow_server: EmbeddedServer, write_config: Any, write_plugin: WritePlugin,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    broken = write_plugin("""
        import tokenflow

        @tokenflow.hookimpl
        def tokenflow_event(event):
            raise RuntimeError("sink is down")
    """)
    jar = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", f"{broken},{jar}")
    config = tokenflow.load_config(jar_config(tokenflow_server, write_config))
    with caplog.at_level(logging.WARNING, logger="tokenflow.plugins"):
        token = config.session("prod").token()
    assert tokenflow_server.is_valid_access_token(token.access_token)
    # the other observer still saw everything
    events = sys.modules[jar].EVENTS  # type: ignore[attr-defined]
    assert [e.kind for e in events] == [EventKind.FETCHED, EventKind.STORED]
    messages = [r.getMessage() for r in caplog.records if r.name == "tokenflow.plugins"]
    assert messages == [
        f"event observer of plugin {broken!r} raised RuntimeError: sink is down (ignored)"] * 2


# -- entry points --------------------------------------------------------------------------------
def make_distribution(site: Path, module: str, entry: str, *, target: str | None = None) -> None:
    """A minimal installed distribution with a ``tokenflow`` entry point, found on sys.path."""
    info = site / "fake_tokenflow_plugin-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-tokenflow-plugin\nVersion: 1.2.3\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[tokenflow]\n{entry} = {target or module}\n",
                                           encoding="utf-8")


def test_entry_point_plugins_are_loaded_and_can_be_disabled(
    write_plugin: WritePlugin, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = write_plugin(JAR_PLUGIN)
    make_distribution(plugin_dir, module, "jar")
    host = build_plugin_host()
    info = {i.name: i for i in host.plugins()}["jar"]
    assert info.origin == "entry point (fake-tokenflow-plugin 1.2.3)"
    assert host.stores["jar"].plugin == "jar"
    # listed in $TOKENFLOW_PLUGINS too: loaded once, under its entry point name
    monkeypatch.setenv("TOKENFLOW_PLUGINS", module)
    assert build_plugin_host().stores["jar"].plugin == "jar"

    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", "jar")
    monkeypatch.delenv("TOKENFLOW_PLUGINS")
    blocked = build_plugin_host()
    assert "jar" not in blocked.stores
    assert blocked.blocked() == ["jar"]


def test_entry_point_that_cannot_load(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(plugin_dir, "x", "ghost", target="tokenflow_ghost_module_xyz")
    monkeypatch.syspath_prepend(str(plugin_dir))
    with pytest.raises(
        PluginError,
        match=r"cannot load entry point 'ghost' \(tokenflow_ghost_module_xyz\) of fake-tokenflow-plugin"
              r".*ModuleNotFoundError: .*tokenflow_ghost_module_xyz.*TOKENFLOW_DISABLE_PLUGINS=ghost",
    ):
        build_plugin_host()
    monkeypatch.setenv("TOKENFLOW_DISABLE_PLUGINS", "ghost")  # the way out the message names
    assert "ghost" not in [p.name for p in build_plugin_host().plugins()]


# -- option schemas ------------------------------------------------------------------------------
BAD_OPTIONS = """\
version: 1
servers:
  ts:
    token_url: http://127.0.0.1:9/token
clients:
  app:
    client_id: app
profiles:
  one:
    server: ts
    client: app
    grant: client_credentials
    store:
      jar:
        dri: somewhere
  two:
    server: ts
    client: app
    grant: password
    username: alice
    password: {reverse: ""}
    store: {jar: {dir: 5}}
"""


def test_plugin_option_errors_are_located(write_plugin: WritePlugin, plugin_dir: Path,
                                          write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_plugin(JAR_PLUGIN)
    monkeypatch.setenv("TOKENFLOW_PLUGINS", name)
    path = write_config(BAD_OPTIONS)
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    issues = {str(i) for i in caught.value.issues}

    def at(needle: str) -> str:
        line, col = position(BAD_OPTIONS, needle)
        return f"{path}:{line}:{col}"

    assert f"{at('dri')}: $.profiles.one.store.jar.dri: unknown key 'dri'; allowed: dir" in issues
    assert f"{at('jar:')}: $.profiles.one.store.jar: 'dir' is a required property" in issues
    empty = at('""')
    assert f"{empty}: $.profiles.two.password.reverse: '' should be non-empty" in issues
    assert f"{at('5}')}: $.profiles.two.store.jar.dir: 5 is not of type 'string'" in issues
    assert len(issues) == 4

    result = run_cli("validate", str(path), env=plugin_env(plugin_dir, name))
    assert result.returncode == 2
    assert set(result.stdout.splitlines()) == issues


def test_unknown_store_and_source_list_the_known_ones(
    write_plugin: WritePlugin, write_config: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENFLOW_PLUGINS", write_plugin(JAR_PLUGIN))
    text = BAD_OPTIONS.replace("{jar: {dir: 5}}", "vault").replace('{reverse: ""}', "{vault: x}")
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        tokenflow.load_config(path)
    messages = [i.message for i in caught.value.issues]
    assert "unknown store 'vault'; known: file, jar, keyring, memory, redis" in messages
    assert ("unknown secret source 'vault'; known: command, env, file, keyring, prompt, reverse"
            in messages)


def test_schema_command_includes_plugin_options(write_plugin: WritePlugin, plugin_dir: Path) -> None:
    name = write_plugin(JAR_PLUGIN)
    result = run_cli("schema", env=plugin_env(plugin_dir, name))
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    store = schema["$defs"]["profile"]["properties"]["store"]["oneOf"]
    assert store[0] == {"enum": ["file", "jar", "keyring", "memory", "redis"]}
    jar = [s for s in store[1:] if s["required"] == ["jar"]]
    expected = importlib.import_module(name).JAR_SCHEMA
    assert {k: jar[0]["properties"]["jar"][k] for k in expected} == expected
    secret = schema["$defs"]["secret"]["oneOf"]
    reverse = [s for s in secret[1:] if s["required"] == ["reverse"]]
    assert reverse[0]["properties"]["reverse"]["description"] == "The secret, reversed."
    # without the plugin, its parts are gone
    plain = json.loads(run_cli("schema").stdout)
    assert plain["$defs"]["profile"]["properties"]["store"]["oneOf"][0] == {
        "enum": ["file", "keyring", "memory", "redis"]}


# -- the fast path and plugin sources ------------------------------------------------------------
def test_fast_path_notices_a_plugin_source_changing_the_user(
    tokenflow_server_factory: Any, write_config: Any, write_plugin: WritePlugin, plugin_dir: Path,
    tmp_path: Path,
) -> None:
    """A cache_key_safe plugin source puts the username's value in the cache key; the CLI's
    fast path cannot watch that value, so it must not answer for such a profile."""
    server = tokenflow_server_factory(accounts={"alice": "wonderland", "bob": "builder"})
    name = write_plugin("""
        from pathlib import Path
        import tokenflow

        def first_line(options, context):
            return Path(options).read_text().splitlines()[0]

        @tokenflow.hookimpl
        def tokenflow_register_secret_sources(register):
            register("line", first_line, {"type": "string"}, cache_key_safe=True)
    """)
    user, password = tmp_path / "user", tmp_path / "password"
    user.write_text("alice\n")
    password.write_text("wonderland\n")
    path = write_config(profile_yaml(server, extra_profile={
        "username": f"{{line: {json.dumps(str(user))}}}",
        "password": f"{{line: {json.dumps(str(password))}}}"}))
    env = plugin_env(plugin_dir, name)
    alice = run_cli("token", "prod", "-c", str(path), env=env)
    assert alice.returncode == 0, alice.stderr
    user.write_text("bob\n")
    password.write_text("builder\n")
    bob = run_cli("token", "prod", "-c", str(path), env=env)
    assert bob.returncode == 0, bob.stderr
    assert bob.stdout != alice.stdout
    assert [t.username for t in server.issued_tokens()] == ["alice", "bob"]


# -- the contracts -------------------------------------------------------------------------------
def test_builtin_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    host = build_plugin_host()
    for name in ("memory", "file"):
        store = host.store(name).factory({}, context(tmp_path))
        assert isinstance(store, TokenStore)
        token = Token("at", "Bearer", expires_at=2e9, obtained_at=2e9 - 3600)
        with store.lock("k"):
            store.save("k", token)
        assert store.load("k") == token
        store.delete("k")
        store.delete("k")
        assert store.load("k") is None


# -- the documentation ---------------------------------------------------------------------------
def hookspec_functions() -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if name.startswith("tokenflow_") and inspect.isfunction(fn)}


def test_every_hook_is_specified_and_documented() -> None:
    specs = hookspec_functions()
    assert set(specs) >= {"tokenflow_register_stores", "tokenflow_register_secret_sources",
                          "tokenflow_register_dialects", "tokenflow_event"}
    guide = GUIDE.read_text(encoding="utf-8")
    for name, fn in specs.items():
        assert hasattr(fn, "tokenflow_spec"), f"{name} is not marked @hookspec"
        doc = inspect.getdoc(fn) or ""
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, f"{name} does not document {param}"
            assert re.search(rf"^#+ .*`{name}\({param}\)`", guide, re.MULTILINE), (
                f"docs/plugins.md has no reference heading for {name}({param})")
        assert "thread" in doc.lower() or "thread" in (hookspecs.__doc__ or "").lower(), name


def test_guide_documents_events_environment_and_required_plugins() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for kind in EventKind:
        assert f"`{kind.value}`" in guide, kind
    for field in TokenEvent.__dataclass_fields__:
        assert f"`{field}`" in guide, field
    for name in (*REQUIRED_PLUGINS, "TOKENFLOW_PLUGINS", "TOKENFLOW_DISABLE_PLUGINS",
                 "tokenflow_server", "pytest11", "CredentialError", "ConfigError", "StorageError"):
        assert name in guide, name
    for name in BUILTIN_PLUGINS:
        assert f"`{name}`" in guide, name


def test_guide_quotes_the_example_plugin_module_verbatim() -> None:
    """The worked example must not drift from the package that is installed and tested."""
    source = EXAMPLE_PLUGIN.read_text(encoding="utf-8")
    assert f"```python\n{source}```" in GUIDE.read_text(encoding="utf-8")
