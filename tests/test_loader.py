"""The profile format (DESIGN.md sections 1 and 7) through ``load_config`` and
``config_from_mapping``: extends, ``${VAR}``, secret sources, directory configs, every error at
its FILE:LINE:COL, plugin parts, insecure URLs, cache keys and the default profile."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import profile_yaml, run_cli

from tokenflow import ConfigError, config_from_mapping, load_config
from tokenflow.config.model import Config
from tokenflow.errors import ConfigIssue
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.plugins.host import PluginHost, build_plugin_host
from tokenflow.testing import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "profiles"

Write = Callable[..., Path]

HEAD = """\
version: 1
servers:
  s:
    token_url: https://idp.example/api/oauth/token
clients:
  c:
    client_id: app
profiles:
"""


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """``write(text, name="tokenflow.yaml", where="cfg") -> Path``, text dedented."""

    def write(text: str, name: str = "tokenflow.yaml", where: str = "cfg") -> Path:
        path = tmp_path / where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def issues_of(path: Path, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return info.value.issues


def where(issues: list[ConfigIssue]) -> list[tuple[int, int, str]]:
    return [(i.line, i.column, i.path) for i in issues]


# -- the example profiles -----------------------------------------------------------------------
def test_example_teamserver_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMSERVER_USER", "alice")
    monkeypatch.setenv("TEAMSERVER_PASSWORD", "wonderland")
    monkeypatch.setenv("TEAMSERVER_CLIENT_SECRET", "s3cret")
    config = load_config(EXAMPLES / "teamserver.yaml")
    assert sorted(config.profiles) == ["prod", "staging"]
    assert config.abstract_profiles == {"teamserver"}
    prod, staging = config.profiles["prod"], config.profiles["staging"]
    assert prod.server.token_url == "https://teamserver.example.com/api/oauth/token"
    assert staging.server.token_url == "https://teamserver-staging.example.com/api/oauth/token"
    for profile in (prod, staging):
        assert profile.server.dialect == "teamserver"
        assert profile.grant == "password"
        assert profile.scope == "read write"
        assert profile.refresh_margin == 120  # inherited from the abstract base
        assert profile.extends == ("teamserver",)
        assert profile.client.client_id == "6a2a39ba-9688-493d-b348-187468f599ae"
        assert profile.username is not None and profile.username.kind == "env"
        assert profile.username.options == "TEAMSERVER_USER"
    assert prod.server.revoke_url == "https://teamserver.example.com/api/revoketoken/{token}"
    assert (prod.server.timeout, prod.server.retries) == (10, 2)
    assert prod.description == "Team Server production"
    with pytest.raises(ConfigError, match="abstract"):
        config.session("teamserver")
    assert config.session("prod").cache_key != config.session("staging").cache_key


def test_example_rfc6749_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_config(EXAMPLES / "rfc6749.yaml").profiles["reporting"]
    assert profile.server.token_url == "https://login.example.com/oauth2/token"  # the default
    monkeypatch.setenv("CORP_IDP_URL", "https://idp.corp.example")
    config = load_config(EXAMPLES / "rfc6749.yaml")
    profile = config.profiles["reporting"]
    assert profile.server.token_url == "https://idp.corp.example/oauth2/token"
    assert profile.server.revoke_url == "https://idp.corp.example/oauth2/revoke"
    assert "CORP_IDP_URL" in config.env_used
    assert (profile.server.dialect, profile.server.client_auth) == ("rfc6749", "basic")
    assert profile.grant == "client_credentials"
    assert profile.scope == "reports.read reports.write"
    assert profile.default_lifetime == 900
    secret = profile.client.client_secret
    assert secret is not None and secret.kind == "file"
    assert secret.options == "~/.config/tokenflow/reporting-app.secret"


def test_example_directory_loads_as_one_config() -> None:
    config = load_config(EXAMPLES)
    assert sorted(config.profiles) == ["prod", "reporting", "staging"]
    assert [p.name for p in config.files] == ["rfc6749.yaml", "teamserver.yaml"]


# -- extends ------------------------------------------------------------------------------------
EXTENDS = HEAD + """\
  root:
    abstract: true
    description: the root
    client: c
    grant: password
    username: root-user
    password: root-pw
    scope: a
    refresh_margin: 10
    store: {file: {lock_timeout: 5}}
    params: {audience: api, resource: r}
  mid:
    extends: root
    server: s
    scope: [b, c]
  leaf:
    extends: mid
    username: leaf-user
    store: memory
    params: {resource: leaf}
"""


def test_extends_three_deep(write: Write) -> None:
    config = load_config(write(EXTENDS))
    assert sorted(config.profiles) == ["leaf", "mid"]  # "abstract" is not inherited
    leaf, mid = config.profiles["leaf"], config.profiles["mid"]
    assert leaf.extends == ("mid", "root") and mid.extends == ("root",)
    assert leaf.server.name == "s" and leaf.client.name == "c"  # from mid and root
    assert leaf.scope == "b c"  # the nearest definition wins
    assert leaf.refresh_margin == 10 and leaf.description == "the root"
    assert leaf.username is not None and leaf.username.options.reveal() == "leaf-user"
    assert mid.username is not None and mid.username.options.reveal() == "root-user"
    leaf_password = leaf.grant_options["password"]
    assert leaf_password is not None and leaf_password.options.reveal() == "root-pw"
    # a key is replaced whole, never merged: store and params come from one definition each
    assert leaf.store.name == "memory" and dict(leaf.store.options) == {}
    assert mid.store.name == "file" and dict(mid.store.options) == {"lock_timeout": 5}
    assert dict(leaf.params) == {"resource": "leaf"}
    assert dict(mid.params) == {"audience": "api", "resource": "r"}
    assert leaf.where.endswith("tokenflow.yaml:24")  # where the profile itself is defined


def test_abstract_profile_is_exempt_and_unusable(write: Write) -> None:
    config = load_config(write(EXTENDS))
    assert config.abstract_profiles == {"root"}
    with pytest.raises(ConfigError, match=r"profile 'root' is abstract .*cannot be used"):
        config.session("root")
    with pytest.raises(ConfigError, match="abstract"):
        config.profile("root")


def test_required_keys_are_checked_after_extends(write: Write) -> None:
    path = write(HEAD + """\
  base:
    client: c
  child:
    extends: base
    server: s
  cc:
    server: s
    client: c
    grant: password
""")
    found = issues_of(path)
    assert where(found) == [(9, 3, "$.profiles.base"), (11, 3, "$.profiles.child"),
                            (14, 3, "$.profiles.cc"), (14, 3, "$.profiles.cc")]
    messages = [i.message for i in found]
    assert messages[0] == "profile 'base' needs server, grant"
    assert messages[1] == "profile 'child' needs grant (after extends base)"
    assert sorted(messages[2:]) == ["the password grant needs password",
                                    "the password grant needs username"]


@pytest.mark.parametrize(("chain", "expected"), [
    ({"a": "b", "b": "c", "c": "a"}, "extends cycle: a -> b -> c -> a"),
    ({"a": "a"}, "extends cycle: a -> a"),
])
def test_extends_cycle_is_rejected_naming_the_chain(
    write: Write, chain: dict[str, str], expected: str
) -> None:
    body = "".join(f"  {name}:\n    extends: {parent}\n    server: s\n" for name, parent in chain.items())
    found = issues_of(write(HEAD + body))
    assert [i.message for i in found] == [expected]
    assert where(found) == [(10, 14, "$.profiles.a.extends")]


def test_extends_unknown_parent(write: Write) -> None:
    found = issues_of(write(HEAD + "  p:\n    extends: nobody\n"))
    assert [str(i).split(": ", 1)[1] for i in found] == [
        "$.profiles.p.extends: extends unknown profile 'nobody'; known: p"]
    assert where(found) == [(10, 14, "$.profiles.p.extends")]


# -- ${VAR} -------------------------------------------------------------------------------------
def test_variable_expansion(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_HOST", "idp.corp.example")
    monkeypatch.setenv("TF_AUD", "api")
    monkeypatch.setenv("TF_EMPTY", "")
    monkeypatch.setenv("TF_NESTED", "${TF_HOST}")
    monkeypatch.setenv("TF_KEY", "expanded-key")
    monkeypatch.delenv("TF_UNSET", raising=False)
    path = write("""\
        version: 1
        servers:
          s:
            token_url: https://${TF_HOST}:${TF_PORT:-8443}/token
        clients:
          c:
            client_id: ${TF_UNSET:-app}
        profiles:
          p:
            server: s
            client: c
            grant: client_credentials
            description: "costs $$5, not $${TF_HOST}; ${TF_NESTED}; [${TF_EMPTY:-x}]; [${TF_UNSET:-}]"
            params:
              ${TF_KEY}: ${TF_AUD}
              audience: ${TF_AUD:-other}
        """)
    config = load_config(path)
    profile = config.profiles["p"]
    assert profile.server.token_url == "https://idp.corp.example:8443/token"
    assert profile.client.client_id == "app"
    # $$ is a literal $, expansion is not recursive, a set-but-empty variable beats the default
    assert profile.description == "costs $5, not ${TF_HOST}; ${TF_HOST}; []; []"
    assert dict(profile.params) == {"${TF_KEY}": "api", "audience": "api"}  # never in keys
    assert {"TF_HOST", "TF_PORT", "TF_UNSET", "TF_AUD", "TF_NESTED", "TF_EMPTY"} <= config.env_used
    assert "TF_KEY" not in config.env_used


def test_variable_expansion_in_source_options(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_WHICH", "TS_USER")
    monkeypatch.setenv("TF_DIR", "secrets")
    monkeypatch.setenv("TF_SERVICE", "corp")
    path = write(HEAD + """\
  p:
    server: s
    client: c
    grant: password
    username: {env: "${TF_WHICH}"}
    password: {file: "${TF_DIR}/pw.txt"}
  q:
    extends: p
    username: {keyring: {service: "${TF_SERVICE}", username: "${TF_USER:-alice}"}}
    password: {command: [echo, "${TF_DIR}"]}
""")
    config = load_config(path)
    p, q = config.profiles["p"], config.profiles["q"]
    assert p.username is not None and (p.username.kind, p.username.options) == ("env", "TS_USER")
    p_password = p.grant_options["password"]
    assert (p_password.kind, p_password.options) == ("file", "secrets/pw.txt")
    assert q.username is not None and q.username.options == {"service": "corp", "username": "alice"}
    assert q.grant_options["password"].options == ["echo", "secrets"]


def test_unset_variable_is_an_error_at_its_place(write: Write) -> None:
    path = write(HEAD + """\
  p:
    server: s
    client: c
    grant: password
    username: {env: "${TF_UNSET_A}"}
    password: "pre-${TF_UNSET_B}-post"
""")
    found = [str(i) for i in issues_of(path) if "is not set" in i.message]
    assert found == [
        f"{path}:13:21: $.profiles.p.username.env: environment variable TF_UNSET_A is not set "
        "(use ${TF_UNSET_A:-default} for a default)",
        f"{path}:14:15: $.profiles.p.password: environment variable TF_UNSET_B is not set "
        "(use ${TF_UNSET_B:-default} for a default)",
    ]


def test_malformed_variable_reference(write: Write) -> None:
    found = issues_of(write(HEAD + "  p:\n    description: price ${ 5\n"))
    bad = [i for i in found if i.path == "$.profiles.p.description"]
    assert [(i.line, i.column) for i in bad] == [(10, 18)]
    assert "write '$$' for a literal '$'" in bad[0].message


# -- secret sources -----------------------------------------------------------------------------
def test_secret_sources_env_file_and_literal_reach_the_server(
    tokenflow_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tokenflow_server
    cfg = tmp_path / "cfg"
    (cfg / "secrets").mkdir(parents=True)
    (cfg / "secrets" / "pw.txt").write_text(server.default_account.password + "\n")
    monkeypatch.setenv("TF_CLIENT_SECRET", server.default_client.secret)
    path = cfg / "tokenflow.yaml"
    path.write_text(profile_yaml(server, store="memory", extra_profile={
        "username": server.default_account.username,
        "password": "{file: secrets/pw.txt}",
    }).replace(f'"{server.default_client.secret}"', "{env: TF_CLIENT_SECRET}"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths are relative to the file, not the cwd
    profile = load_config(path).profiles["prod"]
    assert profile.client.client_secret is not None and profile.client.client_secret.kind == "env"
    assert profile.username is not None and profile.username.kind == "literal"
    assert profile.grant_options["password"] is not None and profile.grant_options["password"].base_dir == cfg
    token = load_config(path).session("prod").token()
    assert server.is_valid_access_token(token.access_token)
    assert server.counts["password"] == 1
    assert "wonderland" not in repr(profile) and "wonderland" not in repr(profile.grant_options["password"])


def test_file_source_is_relative_to_the_file_that_defines_it(
    tokenflow_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child profile in another directory inherits a {file:} secret relative to the parent's file."""
    server = tokenflow_server
    base = tmp_path / "base"
    base.mkdir()
    (base / "pw.txt").write_text(server.default_account.password)
    (base / "base.yaml").write_text(profile_yaml(server, store="memory", name="parent", extra_profile={
        "abstract": True, "password": "{file: pw.txt}"}))
    child_dir = tmp_path / "child"
    child_dir.mkdir()
    (child_dir / "pw.txt").write_text("the wrong password")
    (child_dir / "child.yaml").write_text("version: 1\nprofiles:\n  child: {extends: parent}\n")
    monkeypatch.chdir(child_dir)
    config = load_config(base / "base.yaml", child_dir / "child.yaml")
    child = config.profiles["child"]
    assert child.grant_options["password"] is not None and child.grant_options["password"].base_dir == base
    assert server.is_valid_access_token(config.session("child").token().access_token)


def test_missing_secret_file_is_a_config_error_naming_the_path(
    tokenflow_server: EmbeddedServer, write: Write
) -> None:
    path = write(profile_yaml(tokenflow_server, store="memory",
                              extra_profile={"password": "{file: nowhere/pw.txt}"}))
    session = load_config(path).session("prod")
    with pytest.raises(ConfigError, match=re.escape(str(path.parent / "nowhere" / "pw.txt"))):
        session.token()
    assert tokenflow_server.counts["token"] == 0


# -- directory configs --------------------------------------------------------------------------
def test_directory_config_is_merged_in_sorted_order(write: Write) -> None:
    write(HEAD + "  base: {abstract: true, server: s, client: c}\n", name="10-base.yaml")
    write("version: 1\nprofiles:\n  p: {extends: base, grant: client_credentials}\n", name="20-p.yml")
    write("version: 1\nprofiles:\n  early: {extends: p}\n", name="05-early.yaml")
    write("this: [is not, read\n", name="notes.txt")
    write("profiles: {}\n", name="30.yaml.orig")
    config = load_config(write("version: 1\n", name="99-only-version.yaml").parent)
    assert [f.name for f in config.files] == ["05-early.yaml", "10-base.yaml", "20-p.yml",
                                              "99-only-version.yaml"]
    assert sorted(config.profiles) == ["early", "p"]
    assert config.profiles["early"].extends == ("p", "base")


def test_empty_file_is_an_error(write: Write) -> None:
    path = write("", name="empty.yaml")
    found = issues_of(path)
    assert [str(i) for i in found] == [f"{path}:1:1: $: the file is empty; expected 'version: 1'"]


def test_name_defined_in_two_files_names_both_places(write: Write) -> None:
    first = write(HEAD + "  p: {server: s, client: c, grant: client_credentials}\n", name="a.yaml")
    second = write("""\
        version: 1
        servers:
          s: {token_url: "https://other.example/token"}
        profiles:
          q: {server: s, client: c, grant: client_credentials}
          p: {server: s, client: c, grant: client_credentials}
        """, name="b.yaml")
    found = issues_of(first.parent)
    assert [str(i) for i in found] == [
        f"{second}:3:3: $.servers.s: server 's' is already defined at {first}:3",
        f"{second}:6:3: $.profiles.p: profile 'p' is already defined at {first}:9",
    ]


def test_directory_without_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    found = issues_of(tmp_path)
    assert [i.message for i in found] == ["directory holds no *.yaml files"]


def test_missing_file(tmp_path: Path) -> None:
    found = issues_of(tmp_path / "missing.yaml")
    assert [str(i) for i in found] == [f"{tmp_path / 'missing.yaml'}: no such file or directory"]


# -- error positions ----------------------------------------------------------------------------
def test_duplicate_key_is_reported_at_the_second(write: Write) -> None:
    path = write(HEAD + """\
  p:
    server: s
    client: c
    grant: client_credentials
    client: d
""")
    found = issues_of(path)
    assert [str(i) for i in found] == [
        f"{path}:13:5: $.profiles.p.client: duplicate key 'client' (first defined at line 11)"]


BROKEN = """\
version: 1
servers:
  s:
    token_url: https://idp.example/token
    timeout: soon
    bogus: 1
  t:
    token_url: http://idp.example/token
    dialect: carrier-pigeon
clients:
  c:
    client_id: app
    client_secret: {vault: kv/app}
profiles:
  p:
    server: s
    client: c
    grant: password
    username: ${TF_TEST_UNSET}
    store: {file: {bogus: 1}}
  q:
    extends: nobody
  r:
    server: t
    server: s
"""


def test_every_error_of_a_file_is_reported_at_once_at_its_place(write: Write) -> None:
    path = write(BROKEN)
    found = issues_of(path)
    assert where(found) == [
        (5, 14, "$.servers.s.timeout"),
        (6, 5, "$.servers.s.bogus"),
        (8, 16, "$.servers.t.token_url"),
        (9, 14, "$.servers.t.dialect"),
        (13, 21, "$.clients.c.client_secret.vault"),
        (15, 3, "$.profiles.p"),
        (19, 15, "$.profiles.p.username"),
        (20, 20, "$.profiles.p.store.file.bogus"),
        (22, 14, "$.profiles.q.extends"),
        (23, 3, "$.profiles.r"),
        (25, 5, "$.profiles.r.server"),
    ]
    for issue in found:
        assert str(issue) == f"{path}:{issue.line}:{issue.column}: {issue.path}: {issue.message}"
    messages = [i.message for i in found]
    assert messages[0] == "'soon' is not of type 'number'"
    assert messages[1].startswith(
        "unknown key 'bogus'; allowed: allow_insecure_http, authorization_url, client_auth")
    assert "clear text" in messages[2]
    assert messages[3] == "unknown dialect 'carrier-pigeon'; known: rfc6749, teamserver"
    assert messages[4] == "unknown secret source 'vault'; known: command, env, file, keyring, prompt"
    assert messages[5] == "the password grant needs password"
    assert messages[6].startswith("environment variable TF_TEST_UNSET is not set")
    assert messages[7] == "unknown key 'bogus'; allowed: lock_timeout, path"
    assert messages[8].startswith("extends unknown profile 'nobody'")
    assert messages[9] == "profile 'r' needs client, grant"
    assert messages[10] == "duplicate key 'server' (first defined at line 24)"


def test_schema_errors_are_all_reported_even_after_a_root_error(write: Write) -> None:
    path = write("""\
        versio: 1
        servers:
          s:
            token_url: https://idp.example/token
            retries: many
        profiles:
          p:
            refresh_margin: -5
          bad name:
            server: s
        """)
    assert sorted(where(issues_of(path))) == [
        (1, 1, "$"),
        (1, 1, "$.versio"),
        (5, 14, "$.servers.s.retries"),
        (7, 3, "$.profiles.p"),  # needs server, client, grant: reported beside the schema errors
        (8, 21, "$.profiles.p.refresh_margin"),
        (9, 3, '$.profiles["bad name"]'),
        (9, 3, '$.profiles["bad name"]'),  # needs client, grant
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nservers: [a, b]\n", (2, 10, "$.servers", "is not of type 'object'")),
    ("version: 1\nprofiles:\n  p: {scope: [ok, 'two words']}\n",
     (3, 14, "$.profiles.p.scope", "expected scope to request")),
    ("version: 1\nprofiles:\n  p:\n    refresh_margin: .nan\n",
     (4, 21, "$.profiles.p.refresh_margin", "nan is not a finite number")),
    ("version: 1\nservers:\n  s: {token_url: 'https://h/t', timeout: .inf}\n",
     (3, 42, "$.servers.s.timeout", "inf is not a finite number")),
    ("version: 1\nprofiles:\n  p: {default_lifetime: -.inf}\n",
     (3, 25, "$.profiles.p.default_lifetime", "-inf is not a finite number")),
    ("version: 1\nservers:\n  s:\n    token_url: ftp://h/t\n",
     (4, 16, "$.servers.s.token_url", "'ftp://h/t' is not an absolute http(s) URL")),
    ("version: 1\nprofiles:\n  p:\n    description: a\x01b\n",
     (4, 19, "", "character U+0001 is not allowed")),
    ("version: 1\nprofiles:\n  p: [unclosed\n", (4, 1, "", "YAML syntax error")),
    ("- just\n- a list\n", (1, 1, "$", "the file must be a mapping")),
    ("version: 1\nprofiles: {p: {server: s}}\nprofiles: {}\n",
     (3, 1, "$.profiles", "duplicate key 'profiles' (first defined at line 2)")),
])
def test_error_positions(write: Write, text: str, expected: tuple[int, int, str, str]) -> None:
    path = write(text)
    found = issues_of(path)
    line, col, json_path, message = expected
    matching = [i for i in found if (i.line, i.column, i.path) == (line, col, json_path)]
    assert matching, [str(i) for i in found]
    assert message in matching[0].message


# -- plugins: dialects, stores, sources ---------------------------------------------------------
class ExtraPlugin:
    """A third-party plugin: a store with required options, a source and a dialect."""

    __name__ = "test-loader-plugin"

    @hookimpl
    def tokenflow_register_stores(self, register: Any) -> None:
        from tokenflow.builtins.memory_store import memory_store

        register("shared", memory_store, {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {"url": {"type": "string", "description": "Where."}}})

    @hookimpl
    def tokenflow_register_secret_sources(self, register: Any) -> None:
        register("vault", lambda options, context: "secret", {"type": "string", "minLength": 1})

    @hookimpl
    def tokenflow_register_dialects(self, register: Any) -> None:
        from tokenflow.builtins.rfc6749 import RFC6749Dialect

        register("custom", RFC6749Dialect())


@pytest.fixture(scope="module")
def extra_host() -> PluginHost:
    return build_plugin_host(extra_plugins=[ExtraPlugin()])


PLUGIN_PARTS = """\
version: 1
servers:
  s:
    token_url: https://idp.example/token
    dialect: %(dialect)s
clients:
  c:
    client_id: app
    client_secret: %(secret)s
profiles:
  p:
    server: s
    client: c
    grant: client_credentials
    store: %(store)s
"""


def test_unknown_plugin_parts_list_the_registered_names(write: Write, extra_host: PluginHost) -> None:
    path = write(PLUGIN_PARTS % {"dialect": "nope", "secret": "{nope: x}", "store": "nope"})
    found = issues_of(path, plugins=extra_host)
    assert [(i.line, i.column, i.message) for i in found] == [
        (5, 14, "unknown dialect 'nope'; known: custom, rfc6749, teamserver"),
        (9, 21, "unknown secret source 'nope'; known: command, env, file, keyring, prompt, vault"),
        (15, 12, "unknown store 'nope'; known: file, keyring, memory, redis, shared"),
    ]
    # the same file against the built-ins alone lists only those
    found = issues_of(path)
    assert found[0].message == "unknown dialect 'nope'; known: rfc6749, teamserver"
    assert found[2].message == "unknown store 'nope'; known: file, keyring, memory, redis"


def test_plugin_parts_are_accepted_and_their_options_validated(
    write: Write, extra_host: PluginHost
) -> None:
    good = write(PLUGIN_PARTS % {"dialect": "custom", "secret": "{vault: kv/app}",
                                 "store": "{shared: {url: 'https://cache'}}"})
    profile = load_config(good, plugins=extra_host).profiles["p"]
    assert (profile.server.dialect, profile.store.name) == ("custom", "shared")
    assert dict(profile.store.options) == {"url": "https://cache"}
    assert profile.client.client_secret is not None
    assert profile.client.client_secret.kind == "vault"
    bad = write(PLUGIN_PARTS % {"dialect": "custom", "secret": "{vault: ''}",
                                "store": "{shared: {uri: x}}"}, name="bad.yaml")
    assert [(i.line, i.column, i.path, i.message) for i in issues_of(bad, plugins=extra_host)] == [
        (9, 28, "$.clients.c.client_secret.vault", "'' should be non-empty"),
        (15, 13, "$.profiles.p.store.shared", "'url' is a required property"),
        (15, 22, "$.profiles.p.store.shared.uri", "unknown key 'uri'; did you mean 'url'? (allowed: url)"),
    ]


@pytest.mark.parametrize(("store", "expected"), [
    ("{file: {bogus: 1}}", (15, 20, "$.profiles.p.store.file.bogus",
                            "unknown key 'bogus'; allowed: lock_timeout, path")),
    ("{file: {lock_timeout: 0}}", (15, 34, "$.profiles.p.store.file.lock_timeout",
                                   "0 is less than or equal to the minimum of 0")),
    ("{memory: {x: 1}}", (15, 22, "$.profiles.p.store.memory.x", "unknown key 'x'")),
    ("{file: path}", (15, 19, "$.profiles.p.store.file", "'path' is not of type 'object'")),
    ("{a: 1, b: 2}", (15, 12, "$.profiles.p.store", "expected where tokens are kept")),
])
def test_store_options_are_validated_at_their_line(
    write: Write, store: str, expected: tuple[int, int, str, str]
) -> None:
    path = write(PLUGIN_PARTS % {"dialect": "rfc6749", "secret": "x", "store": store})
    found = issues_of(path)
    assert len(found) == 1, [str(i) for i in found]
    assert (found[0].line, found[0].column, found[0].path) == expected[:3]
    assert found[0].message.startswith(expected[3])


def test_store_forms(write: Write) -> None:
    config = load_config(write(HEAD + """\
  a: {server: s, client: c, grant: client_credentials}
  b: {server: s, client: c, grant: client_credentials, store: memory}
  d: {server: s, client: c, grant: client_credentials, store: {memory: }}
  e: {server: s, client: c, grant: client_credentials, store: {file: {path: tokens}}}
"""))
    stores = {name: (p.store.name, dict(p.store.options)) for name, p in config.profiles.items()}
    assert stores == {"a": ("file", {}), "b": ("memory", {}), "d": ("memory", {}),
                      "e": ("file", {"path": "tokens"})}


# -- required keys, grants ----------------------------------------------------------------------
def test_unknown_references_and_grant(write: Write) -> None:
    path = write(HEAD + "  p: {server: x, client: y, grant: implicit}\n")
    assert [(i.line, i.column, i.message) for i in issues_of(path)] == [
        (9, 15, "unknown server 'x'; known: s"),
        (9, 26, "unknown client 'y'; known: c"),
        (9, 36, "unknown grant 'implicit'; known: authorization_code, client_credentials, "
                     "device_code, password, refresh_token"),
    ]


def test_client_credentials_needs_no_user_and_public_clients_no_secret(write: Write) -> None:
    profile = load_config(write(HEAD + "  p: {server: s, client: c, grant: client_credentials}\n")
                          ).profiles["p"]
    assert profile.username is None and profile.grant_options == {}
    assert profile.client.client_secret is None
    assert (profile.refresh_margin, profile.default_lifetime) == (60, 3600)
    assert (profile.server.timeout, profile.server.retries, profile.server.verify) == (10, 2, True)


# -- insecure http ------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://idp.example/token", "HTTP://IDP.EXAMPLE/token", "http://10.0.0.1/token",
    "http://127.0.0.1.nip.example/token", "http://127.evil.example/token",
    "http://localhost.evil.example/token",
])
def test_http_to_a_remote_host_is_refused(write: Write, url: str) -> None:
    path = write(HEAD.replace("https://idp.example/api/oauth/token", url)
                 + "  p: {server: s, client: c, grant: client_credentials}\n")
    found = issues_of(path)
    assert [(i.line, i.column, i.path) for i in found] == [(4, 16, "$.servers.s.token_url")]
    assert "clear text" in found[0].message and "allow_insecure_http: true" in found[0].message
    allowed = write(HEAD.replace("https://idp.example/api/oauth/token", url).replace(
        "    token_url:", "    allow_insecure_http: true\n    token_url:")
        + "  p: {server: s, client: c, grant: client_credentials}\n", name="allowed.yaml")
    assert load_config(allowed).profiles["p"].server.allow_insecure_http is True


def test_http_revoke_url_to_a_remote_host_is_refused(write: Write) -> None:
    path = write(HEAD.replace("    token_url:", "    revoke_url: http://idp.example/revoke\n"
                                                 "    token_url:")
                 + "  p: {server: s, client: c, grant: client_credentials}\n")
    assert where(issues_of(path)) == [(4, 17, "$.servers.s.revoke_url")]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/token", "http://127.1.2.3/token", "http://localhost/token",
    "http://LOCALHOST:9/token", "http://[::1]:8080/token",
])
def test_http_to_loopback_is_allowed(write: Write, url: str) -> None:
    path = write(HEAD.replace("https://idp.example/api/oauth/token", url)
                 + "  p: {server: s, client: c, grant: client_credentials}\n")
    server = load_config(path).profiles["p"].server
    assert server.token_url == url and server.allow_insecure_http is False


# -- verify -------------------------------------------------------------------------------------
def test_verify_path_is_relative_to_the_file(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = HEAD.replace("    token_url:", "    verify: certs/ca.pem\n    token_url:") \
        + "  p: {server: s, client: c, grant: client_credentials}\n"
    path = write(text)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("in the cwd, not beside the file")
    found = issues_of(path)
    assert where(found) == [(4, 13, "$.servers.s.verify")]
    assert found[0].message == f"CA bundle {path.parent / 'certs' / 'ca.pem'} does not exist"
    (path.parent / "certs").mkdir()
    (path.parent / "certs" / "ca.pem").write_text("beside the file, but no certificate")
    found = issues_of(path)
    assert found[0].message == f"CA bundle {path.parent / 'certs' / 'ca.pem'} holds no PEM certificate"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(path.parent / "certs" / "ca.pem"))
    server = load_config(path).profiles["p"].server
    assert server.verify == str(path.parent / "certs" / "ca.pem")
    for value in ("false", "true"):
        other = write(text.replace("certs/ca.pem", value), name=f"{value}.yaml")
        assert load_config(other).profiles["p"].server.verify is (value == "true")


# -- scope and cache keys -----------------------------------------------------------------------
IDENTITY = """\
version: 1
servers:
  s: {token_url: "https://idp.example/token"}
  s2: {token_url: "https://idp2.example/token"}
clients:
  c: {client_id: app, client_secret: one}
  c2: {client_id: app, client_secret: two}
  c3: {client_id: other-app}
profiles:
  base: {abstract: true, server: s, client: c, grant: password, username: alice, password: pw1,
         scope: "read write", store: memory}
  a: {extends: base}
  same-identity: {extends: base, scope: [read, write], password: other-password, client: c2,
                  refresh_margin: 5, description: x, store: file}
  env-user: {extends: base, username: {env: TF_USER}}
  file-user: {extends: base, username: {file: user.txt}}
  other-user: {extends: base, username: bob}
  other-scope: {extends: base, scope: read}
  no-scope: {extends: base, scope: []}
  other-url: {extends: base, server: s2}
  other-client: {extends: base, client: c3}
  other-grant: {extends: base, grant: client_credentials}
  other-params: {extends: base, params: {audience: x}}
  command-user: {extends: base, username: {command: [echo, alice]}}
"""


def test_scope_string_or_list(write: Write) -> None:
    config = load_config(write(IDENTITY))
    assert config.profiles["a"].scope == "read write"
    assert config.profiles["same-identity"].scope == "read write"
    assert config.profiles["other-scope"].scope == "read"
    assert config.profiles["no-scope"].scope is None


def test_cache_key_depends_on_identity_only(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(IDENTITY)
    (path.parent / "user.txt").write_text("alice\n")
    monkeypatch.setenv("TF_USER", "alice")
    config = load_config(path)
    keys = {name: config.session(name).cache_key for name in config.profiles}
    # one identity: same URL, client id, grant, scope and username; nothing else counts
    # (not the name, password, client secret, store, margin, or where the username comes from)
    assert keys["same-identity"] == keys["a"]
    assert keys["env-user"] == keys["a"]
    assert keys["file-user"] == keys["a"]
    others = [k for name, k in keys.items() if name not in ("a", "same-identity", "env-user",
                                                            "file-user")]
    assert len(set(others)) == len(others) and keys["a"] not in others
    assert all(re.fullmatch(r"[0-9a-f]{16,64}", k) for k in keys.values())


def test_cache_key_never_depends_on_the_password(write: Write) -> None:
    keys = set()
    for password in ("pw1", "something-else", "{env: TF_PW}", "{command: [pass, show, x]}"):
        path = write(IDENTITY.replace("password: pw1", f"password: {password}"), name="k.yaml")
        config = load_config(path)
        key = config.session("a").cache_key
        keys.add(key)
        assert "pw1" not in key and "something-else" not in key
    assert len(keys) == 1
    different_user = load_config(write(IDENTITY.replace("username: alice", "username: carol"),
                                       name="u.yaml")).session("a").cache_key
    assert different_user not in keys


def test_cache_key_is_stable_across_loads(write: Write) -> None:
    path = write(IDENTITY)
    assert load_config(path).session("a").cache_key == load_config(path).session("a").cache_key


# -- the default profile ------------------------------------------------------------------------
def test_session_default_profile(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    one = load_config(write(HEAD + "  only: {server: s, client: c, grant: client_credentials}\n",
                            name="one.yaml"))
    assert one.session().profile.name == "only"
    assert one.session() is one.session("only")  # the cached, shared session
    many = load_config(write(EXTENDS, name="many.yaml"))
    with pytest.raises(ConfigError) as info:
        many.session()
    assert str(info.value).endswith("$TOKENFLOW_PROFILE is not set; profiles: leaf, mid")
    monkeypatch.setenv("TOKENFLOW_PROFILE", "mid")
    assert many.session().profile.name == "mid"
    assert one.session("only").profile.name == "only"  # an explicit name beats the variable
    monkeypatch.setenv("TOKENFLOW_PROFILE", "nope")
    with pytest.raises(ConfigError, match="unknown profile 'nope'; profiles: leaf, mid"):
        many.session()


# -- config_from_mapping ------------------------------------------------------------------------
def test_config_from_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_AUD", "api")
    data = {
        "version": 1,
        "servers": {"s": {"token_url": "https://idp.example/token"}},
        "clients": {"c": {"client_id": "app", "client_secret": {"file": "secret.txt"}}},
        "profiles": {"p": {"server": "s", "client": "c", "grant": "client_credentials",
                           "params": {"audience": "${TF_AUD}"}}},
    }
    config = config_from_mapping(data, source="app.yaml", base_dir=tmp_path, cache_dir=tmp_path / "c")
    assert isinstance(config.config, Config)
    profile = config.profiles["p"]
    assert dict(profile.params) == {"audience": "api"}
    assert profile.client.client_secret is not None
    assert profile.client.client_secret.base_dir == tmp_path
    assert config.cache_dir == tmp_path / "c"
    data["profiles"]["p"]["grant"] = "magic"  # type: ignore[index]
    data["servers"]["s"]["timeout"] = "soon"  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, source="app.yaml")
    assert sorted(str(i) for i in info.value.issues) == [  # no file, so no line numbers
        "app.yaml: $.profiles.p.grant: unknown grant 'magic'; known: authorization_code, "
        "client_credentials, device_code, password, refresh_token",
        "app.yaml: $.servers.s.timeout: 'soon' is not of type 'number'"]


# -- tokenflow validate -------------------------------------------------------------------------
def test_validate_prints_every_error_one_per_line(write: Write) -> None:
    path = write(BROKEN)
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 11
    positions = [re.match(rf"{re.escape(str(path))}:(\d+):(\d+): \$\S*: \S", line) for line in lines]
    assert all(positions), lines
    assert [(int(m[1]), int(m[2])) for m in positions if m] == [
        (5, 14), (6, 5), (8, 16), (9, 14), (13, 21), (15, 3), (19, 15), (20, 20), (22, 14),
        (23, 3), (25, 5)]
    assert result.stderr.strip() == "tokenflow: 11 error(s)"


def test_validate_good_file_and_directory(write: Write) -> None:
    path = write(EXTENDS)
    result = run_cli("validate", str(path))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "ok: 1 file(s), 2 profile(s): leaf, mid\n"
    result = run_cli("validate", str(EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 profile(s): prod, reporting, staging" in result.stdout
