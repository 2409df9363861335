"""The loader's cheap schema check never accepts what jsonschema rejects.

:mod:`tokenflow.config.quickcheck` answers "certainly valid" so that a renewal from the CLI does
not import jsonschema. Here its three-way :func:`~tokenflow.config.quickcheck.verdict` is
compared with ``jsonschema.Draft202012Validator`` on generated input: whenever it is sure, it
must agree (a wrong "invalid" inside ``oneOf`` would turn into a wrong "valid"); "unsure" is
always allowed. The inputs are config documents generated from the project's own schemas (the
document schema with every grant's keys, the printed schema with the plugins' parts, and every
built-in plugin's option schema), mostly valid with random damage, and random schemas built from
the keywords the check models with random instances. Then the loader itself: valid files load
without importing jsonschema, invalid ones keep their ``FILE:LINE:COL`` messages.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenflow import ConfigError, load_config
from tokenflow.config import quickcheck
from tokenflow.config.schema import document_schema, full_schema
from tokenflow.plugins.host import build_plugin_host

ROOT = Path(__file__).resolve().parent.parent
HOST = build_plugin_host()
DOCUMENT_SCHEMA = document_schema(HOST)
FULL_SCHEMA = full_schema(HOST)
# what the loader checks on its own: store and source options, a grant's keys that are no secret
OPTION_SCHEMAS = [
    *(entry.options_schema for entry in HOST.stores.values() if entry.options_schema),
    *(entry.options_schema for entry in HOST.sources.values() if entry.options_schema),
    *(key_schema for entry in HOST.grants.values()
      for key, key_schema in (entry.options_schema or {}).get("properties", {}).items()
      if key not in entry.grant.secret_options),
]


def fuzz(max_examples: int) -> settings:
    """As in test_fuzz: modest counts, no deadline (the machine may be loaded)."""
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def jsonschema_valid(data: Any, schema: Any) -> bool:
    return bool(jsonschema.Draft202012Validator(schema).is_valid(data))


def assert_agrees(data: Any, schema: Any) -> bool | None:
    said = quickcheck.verdict(data, schema)
    if said is not None:
        assert said == jsonschema_valid(data, schema), (data, said)
    if quickcheck.conforms(data, schema):
        assert jsonschema_valid(data, schema)
    return said


# -- generated data -------------------------------------------------------------------------------
KEYS = st.sampled_from(["a", "b", "c", "version", "token_url", "env", "-bad", "x y", ""])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 700), st.sampled_from([0, 1, 1.0, 0.5, 2.0, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["https://idp.example/t", "http://127.0.0.1:1/t", "${URL}", "prod",
                     "basic", "body", "A_1", "a b", "file"]),
    # what YAML can produce but JSON cannot: the check must be unsure, never "valid"
    st.sampled_from([datetime.date(2024, 1, 2), b"raw", (1, 2)]),
)
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                   | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)


def near(schema: Any, root: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances shaped by *schema*: mostly what it asks for, now and then anything at all."""
    good = _shaped(schema, root, depth)
    return st.integers(0, 9).flatmap(lambda roll: ANY if roll == 0 else good)


def _shaped(schema: Any, root: Any, depth: int) -> st.SearchStrategy[Any]:
    if not isinstance(schema, dict) or depth > 8:
        return ANY
    if "$ref" in schema:
        return near(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, depth + 1)
    if "oneOf" in schema:
        return st.one_of([near(branch, root, depth + 1) for branch in schema["oneOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type", "object" if "properties" in schema else None)
    kind = kinds[0] if isinstance(kinds, list) else kinds
    if kind == "object":
        properties = schema.get("properties", {})
        required = [k for k in schema.get("required", []) if k in properties]
        optional = {k: near(v, root, depth + 1) for k, v in properties.items() if k not in required}
        fixed = st.fixed_dictionaries({k: near(properties[k], root, depth + 1) for k in required},
                                      optional=optional)
        extra_schema = schema.get("additionalProperties", True)
        names = schema.get("propertyNames", {})
        if isinstance(names, dict) and "$ref" in names:
            names = root["$defs"][names["$ref"].rsplit("/", 1)[1]]
        name_strategy = (st.from_regex(names["pattern"], fullmatch=True).filter(lambda s: len(s) < 100)
                         if isinstance(names, dict) and "pattern" in names else KEYS)
        extras = st.dictionaries(name_strategy, near(extra_schema, root, depth + 1), max_size=2)
        return st.tuples(fixed, extras).map(lambda pair: {**pair[1], **pair[0]})
    if kind == "array":
        return st.lists(near(schema.get("items", True), root, depth + 1), max_size=3)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"]) | st.text(max_size=4)
        return st.text(max_size=8) | st.just("")
    if kind in ("number", "integer"):
        return st.integers(-2, 700) | st.floats(-2, 700) | st.just(0)
    if kind == "boolean":
        return st.booleans()
    return ANY


@fuzz(250)
@given(data=st.data())
def test_config_documents_are_judged_as_jsonschema_judges_them(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from([DOCUMENT_SCHEMA, FULL_SCHEMA]))
    assert_agrees(data.draw(near(schema, schema)), schema)


@fuzz(200)
@given(data=st.data())
def test_plugin_options_are_judged_as_jsonschema_judges_them(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from(OPTION_SCHEMAS))
    assert_agrees(data.draw(near(schema, schema)), schema)


# random schemas from the modelled keywords, random instances
NUMBERS = st.integers(-2, 3) | st.sampled_from([0.5, 1.0, -0.0])
COUNTS = st.integers(0, 3)
TYPES = st.sampled_from(["object", "array", "string", "number", "integer", "boolean", "null"])
LEAVES = st.one_of(
    st.booleans(),
    TYPES.map(lambda t: {"type": t}),
    st.lists(TYPES, min_size=1, max_size=3).map(lambda ts: {"type": ts}),
    st.lists(SCALARS.filter(lambda v: not isinstance(v, datetime.date | bytes | tuple)),
             max_size=3).map(lambda vs: {"enum": vs}),
    SCALARS.filter(lambda v: not isinstance(v, datetime.date | bytes | tuple)).map(
        lambda v: {"const": v}),
    st.sampled_from(["^a", "b$", "^[a-c]*$", "\\S", "^$"]).map(lambda p: {"pattern": p}),
    st.tuples(st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
              NUMBERS).map(lambda kv: {kv[0]: kv[1]}),
    st.tuples(st.sampled_from(["minLength", "maxLength", "minProperties", "maxProperties",
                               "minItems", "maxItems"]), COUNTS).map(lambda kv: {kv[0]: kv[1]}),
    st.lists(KEYS, max_size=2).map(lambda ks: {"required": ks}),
    st.just({"$ref": "#/$defs/d"}),
    st.just({"description": "ignored"}),
)


def _merge(pair: tuple[Any, Any]) -> Any:
    one, two = pair
    return {**one, **two} if isinstance(one, dict) and isinstance(two, dict) else one


SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.dictionaries(KEYS, inner, max_size=3).map(lambda ps: {"properties": ps}),
    inner.map(lambda s: {"additionalProperties": s}),
    st.tuples(st.dictionaries(KEYS, inner, max_size=2), inner).map(
        lambda pa: {"properties": pa[0], "additionalProperties": pa[1]}),
    inner.map(lambda s: {"items": s}),
    st.lists(inner, min_size=1, max_size=3).map(lambda bs: {"oneOf": bs}),
    inner.map(lambda s: {"propertyNames": s}),
    st.tuples(inner, inner).map(_merge),
), max_leaves=6)


@fuzz(400)
@given(schema=SCHEMAS, definition=LEAVES.filter(lambda s: s != {"$ref": "#/$defs/d"}), data=ANY)
def test_random_schemas_are_judged_as_jsonschema_judges_them(
        schema: Any, definition: Any, data: Any) -> None:
    root = {"$defs": {"d": definition}, **schema} if isinstance(schema, dict) else schema
    assert_agrees(data, root)


# -- what it is sure of, and what it is not -----------------------------------------------------
VALID_DOCUMENT = {
    "version": 1,
    "servers": {"idp": {"token_url": "https://idp.example/token", "timeout": 5, "retries": 0,
                        "verify": True, "headers": {"X-Api": "k"}, "client_auth": "body"}},
    "clients": {"app": {"client_id": "id", "client_secret": {"env": "SECRET"}}},
    "profiles": {"prod": {"server": "idp", "client": "app", "grant": "password",
                          "username": "u", "password": {"command": ["pass", "show", "x"]},
                          "scope": ["a", "b"], "store": {"file": {"lock_timeout": 3}},
                          "refresh_margin": 60, "params": {"audience": "api"}}},
}


@pytest.mark.parametrize("schema", [DOCUMENT_SCHEMA, FULL_SCHEMA], ids=["document", "printed"])
def test_a_typical_document_is_certainly_valid(schema: Any) -> None:
    assert quickcheck.verdict(VALID_DOCUMENT, schema) is True
    assert jsonschema_valid(VALID_DOCUMENT, schema)


@pytest.mark.parametrize("damage", [
    {"version": 2},
    {"servers": {"idp": {"token_url": "ftp://x"}}},
    {"servers": {"bad name": {"token_url": "https://x"}}},
    {"servers": {"idp": {"token_url": "https://x", "retries": 11}}},
    {"servers": {"idp": {"token_url": "https://x", "timeout": 0}}},
    {"servers": {"idp": {"token_url": "https://x", "retries": True}}},
    {"clients": {"app": {"client_id": ""}}},
    {"clients": {"app": {"client_id": "id", "client_secret": {"env": "A", "file": "b"}}}},
    {"profiles": {"p": {"scope": ["has space"]}}},
    {"profiles": {"p": {"store": {}}}},
    {"profiles": {"p": {"unknown": 1}}},
    {"extra": 1},
])
def test_damaged_documents_are_certainly_invalid(damage: dict[str, Any]) -> None:
    document = {**VALID_DOCUMENT, **damage}
    assert quickcheck.verdict(document, DOCUMENT_SCHEMA) is False
    assert not jsonschema_valid(document, DOCUMENT_SCHEMA)


@pytest.mark.parametrize(("data", "schema"), [
    ({"a": 1}, {"patternProperties": {"^a": {"type": "string"}}}),  # a keyword it does not model
    ([1], {"prefixItems": [{"type": "string"}], "items": True}),
    ("x", {"$ref": "#/$defs/missing"}),
    ("x", {"$ref": "https://example.com/other"}),
    ("x", {"$schema": "http://json-schema.org/draft-07/schema#"}),
    ({"a": "y"}, {"properties": {"a": {"$id": "urn:other"}}}),  # a resource of its own
    (datetime.date(2024, 1, 2), {"type": "string"}),  # a YAML timestamp
    ({"a": [1]}, {"enum": [{"a": [1]}]}),  # containers in enum/const
    ("x", {"type": "strng"}),
    ("x", {"pattern": "("}),
    (1, {"$defs": {"loop": {"$ref": "#/$defs/loop"}}, "$ref": "#/$defs/loop"}),
])
def test_what_it_does_not_model_makes_it_unsure(data: Any, schema: Any) -> None:
    assert quickcheck.verdict(data, schema) is None
    assert not quickcheck.conforms(data, schema)


def test_true_is_not_one_and_integers_may_be_written_as_floats() -> None:
    assert quickcheck.verdict(True, {"const": 1}) is False
    assert quickcheck.verdict(1.0, {"const": 1}) is True
    assert quickcheck.verdict(2.0, {"type": "integer"}) is True
    assert quickcheck.verdict(True, {"type": "integer"}) is False
    assert quickcheck.verdict(True, {"minimum": 5}) is True  # bounds apply to numbers only
    for data, schema in [(True, {"const": 1}), (1.0, {"const": 1}), (2.0, {"type": "integer"}),
                         (True, {"minimum": 5})]:
        assert_agrees(data, schema)


# -- the loader -----------------------------------------------------------------------------------
def _load_in_child(path: Path) -> list[str]:
    """Load *path* in a fresh interpreter; what it printed: the outcome, then jsonschema's use."""
    code = (
        "import sys, tokenflow\n"
        "try:\n"
        f"    tokenflow.load_config({str(path)!r}); print('ok')\n"
        "except tokenflow.ConfigError as exc:\n"
        "    print(*exc.issues, sep='\\n')\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.splitlines()


def test_a_valid_config_loads_without_importing_jsonschema(tmp_path: Path) -> None:
    path = tmp_path / "tokenflow.yaml"
    path.write_text(json.dumps(VALID_DOCUMENT), encoding="utf-8")
    assert _load_in_child(path) == ["ok", "False"]
    for example in sorted((ROOT / "profiles").glob("*.yaml")):
        assert _load_in_child(example) == ["ok", "False"], example


def test_an_invalid_config_still_gets_jsonschema_messages_at_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nservers:\n  idp:\n    token_url: https://idp.example/t\n"
                    "    retries: 11\n", encoding="utf-8")
    lines = _load_in_child(path)
    assert lines[-1] == "True"
    assert lines[:-1] == [f"{path}:5:14: $.servers.idp.retries: 11 is greater than the maximum of 10"]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(i) for i in info.value.issues] == lines[:-1]


def test_invalid_plugin_options_are_reported_by_jsonschema(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nservers: {idp: {token_url: 'https://idp.example/t'}}\n"
        "clients: {app: {client_id: id, client_secret: {command: []}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [i.path for i in info.value.issues] == ["$.clients.app.client_secret.command"]
