"""The JSON Schema of profile files: valid draft 2020-12, documented, the one the loader uses, and
what ``tokenflow schema`` prints for editors (with the plugins' parts)."""

from __future__ import annotations

import json
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import run_cli

from tokenflow import ConfigError, load_config
from tokenflow.config.schema import full_schema, load_schema
from tokenflow.plugins.host import build_plugin_host

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "tokenflow.schema.json"
EXAMPLES = sorted((ROOT / "profiles").glob("*.yaml"))


def _properties(node: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """Every (where, name, subschema) under a ``properties`` keyword, recursively."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                yield f"{path}.properties", name, sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}.{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{index}]")


@pytest.fixture(scope="module")
def schema_text() -> str:
    return SCHEMA_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def printed() -> dict[str, Any]:
    """What ``tokenflow schema`` prints, parsed."""
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_schema_file_is_valid_draft_2020_12(schema_text: str) -> None:
    schema = json.loads(schema_text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


def test_every_property_has_a_description(schema_text: str) -> None:
    schema = json.loads(schema_text)
    found = list(_properties(schema))
    assert len(found) >= 28  # the walk reaches servers, clients, profiles and their keys
    missing = [f"{where}.{name}" for where, name, sub in found
               if not (isinstance(sub, dict) and str(sub.get("description", "")).strip())]
    assert missing == []


def test_every_key_the_loader_reads_is_in_the_schema(schema_text: str) -> None:
    defs = json.loads(schema_text)["$defs"]
    assert set(defs["server"]["properties"]) == {
        "token_url", "dialect", "client_auth", "revoke_url", "timeout", "retries", "verify",
        "allow_insecure_http", "headers", "issuer", "authorization_url", "device_authorization_url"}
    assert set(defs["client"]["properties"]) == {"client_id", "client_secret"}
    assert set(defs["profile"]["properties"]) == {
        "extends", "abstract", "description", "server", "client", "grant", "username",
        "password", "scope", "store", "refresh_margin", "default_lifetime", "params",
        "token_placement",
        # the interactive grants' keys (issue 10)
        "redirect_uri", "login_timeout", "browser", "authorize_params", "refresh_token"}


def test_the_schema_file_describes_every_builtin_grant_key_as_the_grant_does(
    schema_text: str,
) -> None:
    """Grants declare their profile keys; the file carries the built-in ones for editors."""
    profile = json.loads(schema_text)["$defs"]["profile"]["properties"]
    host = build_plugin_host()
    for name, entry in host.grants.items():
        for key, spec in (entry.options_schema or {}).get("properties", {}).items():
            assert key in profile, f"grant {name}: {key} missing from the schema file"
            assert {k: v for k, v in profile[key].items() if k != "description"} == \
                {k: v for k, v in spec.items() if k != "description"}, (name, key)


def test_loader_uses_the_schema_file(schema_text: str) -> None:
    assert load_schema() == json.loads(schema_text)


def test_wheel_packages_the_schema_file_the_loader_reads(schema_text: str) -> None:
    """The wheel carries ``schemas/tokenflow.schema.json`` as ``tokenflow/tokenflow.schema.json``,
    which is where :func:`load_schema` looks first; a stale copy in the package would win."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["schemas/tokenflow.schema.json"] == "tokenflow/tokenflow.schema.json"
    stale = ROOT / "tokenflow" / "tokenflow.schema.json"
    if stale.exists():
        assert stale.read_text(encoding="utf-8") == schema_text


def test_built_wheel_contains_the_same_schema(schema_text: str, tmp_path: Path) -> None:
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = Path(next(iter(builders.WheelBuilder(str(ROOT)).build(
        directory=str(tmp_path), versions=["standard"]))))
    with zipfile.ZipFile(wheel) as archive:
        packaged = archive.read("tokenflow/tokenflow.schema.json").decode("utf-8")
    assert json.loads(packaged) == json.loads(schema_text)


def test_printed_schema_is_a_valid_schema(printed: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed["properties"].keys() == load_schema()["properties"].keys()


def test_printed_schema_matches_the_library(printed: dict[str, Any]) -> None:
    assert printed == full_schema(build_plugin_host())


def test_printed_schema_has_store_parts(printed: dict[str, Any]) -> None:
    store = printed["$defs"]["profile"]["properties"]["store"]
    names, *options = store["oneOf"]
    assert names == {"enum": ["file", "keyring", "memory", "redis"]}
    by_name = {next(iter(o["properties"])): o for o in options}
    assert sorted(by_name) == ["file", "keyring", "memory", "redis"]
    for name, option in by_name.items():
        assert option["required"] == [name] and option["additionalProperties"] is False
    file_options = by_name["file"]["properties"]["file"]
    assert set(file_options["properties"]) == {"path", "lock_timeout"}
    assert file_options["additionalProperties"] is False
    assert set(by_name["keyring"]["properties"]["keyring"]["properties"]) == {"service"}
    assert by_name["memory"]["properties"]["memory"]["additionalProperties"] is False


def test_printed_schema_has_sources_and_dialects(printed: dict[str, Any]) -> None:
    defs = printed["$defs"]
    plain, *sources = defs["secret"]["oneOf"]
    assert plain == {"type": "string"}
    by_name = {next(iter(o["properties"])): o["properties"] for o in sources}
    assert sorted(by_name) == ["command", "env", "file", "keyring", "prompt"]
    assert by_name["env"]["env"]["type"] == "string"
    assert by_name["keyring"]["keyring"]["required"] == ["service"]
    assert defs["server"]["properties"]["dialect"]["enum"] == ["rfc6749", "teamserver"]
    assert defs["profile"]["properties"]["grant"]["enum"] == [
        "authorization_code", "client_credentials", "device_code", "password", "refresh_token"]


def test_printed_schema_documents_every_property(printed: dict[str, Any]) -> None:
    missing = [f"{where}.{name}" for where, name, sub in _properties(printed)
               if not (isinstance(sub, dict) and sub.get("description"))]
    assert missing == []


def test_plugin_parts_appear_in_the_full_schema() -> None:
    """A third-party plugin's store, source and dialect reach the schema editors use."""
    from tokenflow.builtins.memory_store import memory_store
    from tokenflow.plugins.hookspecs import hookimpl

    class Plugin:
        __name__ = "test-schema-plugin"

        @hookimpl
        def tokenflow_register_stores(self, register: Any) -> None:
            register("vault", memory_store, {"type": "object", "required": ["mount"],
                                             "properties": {"mount": {"type": "string",
                                                                      "description": "Mount."}}})

        @hookimpl
        def tokenflow_register_secret_sources(self, register: Any) -> None:
            register("vaultkv", lambda options, context: "x", {"type": "string"})

        @hookimpl
        def tokenflow_register_dialects(self, register: Any) -> None:
            from tokenflow.builtins.rfc6749 import RFC6749Dialect

            register("custom", RFC6749Dialect())

    schema = full_schema(build_plugin_host(extra_plugins=[Plugin()]))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    base = {"version": 1, "servers": {"s": {"token_url": "https://h/t", "dialect": "custom"}},
            "clients": {"c": {"client_id": "x", "client_secret": {"vaultkv": "path"}}},
            "profiles": {"p": {"server": "s", "client": "c", "grant": "client_credentials",
                               "store": {"vault": {"mount": "kv"}}}}}
    assert list(validator.iter_errors(base)) == []
    base["profiles"]["p"]["store"] = {"vault": {}}  # type: ignore[index]
    assert list(validator.iter_errors(base))  # the plugin's required option is enforced


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_printed_schema(printed: dict[str, Any], path: Path) -> None:
    """As an editor sees them: the raw YAML, before ``${VAR}`` expansion."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(printed).iter_errors(data)]
    assert errors == []
    assert path.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../schemas/tokenflow.schema.json")


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"teamserver.yaml", "rfc6749.yaml"}


def test_schema_rejects_what_the_loader_rejects(tmp_path: Path) -> None:
    """The schema is what the loader enforces: a violation of it is a ConfigError."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 2\nservers: {s: {token_url: 'https://h/t', retries: 11}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [f"{i.path}: {i.message}" for i in info.value.issues]
    assert any(m.startswith("$.version:") for m in messages)
    assert any(m.startswith("$.servers.s.retries:") for m in messages)
