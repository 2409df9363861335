"""The JSON Schema of profile files and how its errors read.

``schemas/tokenflow.schema.json`` is the base (editors use it); the plugins add their parts at
run time: each grant's profile keys (:func:`document_schema`, what files are checked against),
and the names and option schemas of stores, secret sources and dialects (:func:`full_schema`,
what ``tokenflow schema`` prints). Every violation becomes a located, readable issue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tokenflow.config import quickcheck
from tokenflow.config.yamldoc import Document, JsonPath
from tokenflow.errors import ConfigIssue
from tokenflow.plugins.host import PluginHost

__all__ = ["describe", "document_schema", "full_schema", "load_schema", "schema_issues"]

# -- schema -------------------------------------------------------------------------------------
@cache
def load_schema() -> dict[str, Any]:
    """The base JSON Schema: packaged in the wheel, or read from the source checkout."""
    packaged = resources.files("tokenflow").joinpath("tokenflow.schema.json")
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:
        text = (Path(__file__).parents[2] / "schemas" / "tokenflow.schema.json").read_text(
            encoding="utf-8"
        )
    schema: dict[str, Any] = json.loads(text)
    return schema


def document_schema(host: PluginHost) -> dict[str, Any]:
    """The schema each file is checked against: the base with every grant's profile keys.

    A key of any registered grant is allowed in any profile (``tv: {extends: me, grant:
    device_code}`` inherits ``me``'s ``redirect_uri``); whether the profile's own grant has what
    it needs is checked after ``extends`` is resolved.
    """
    schema: dict[str, Any] = json.loads(json.dumps(load_schema()))
    properties = schema["$defs"]["profile"]["properties"]
    for name, entry in sorted(host.grants.items()):
        for key, spec in ((entry.options_schema or {}).get("properties") or {}).items():
            if key not in properties:
                properties[key] = {**spec, "description": spec.get(
                    "description", f"Used by the {name} grant.")}
    return schema


def full_schema(host: PluginHost) -> dict[str, Any]:
    """The schema with the plugins' parts: what ``tokenflow schema`` prints for editors."""
    schema = document_schema(host)
    defs = schema["$defs"]
    store_options = [
        {"type": "object", "additionalProperties": False, "required": [name],
         "properties": {name: {"description": f"Options of the {name} store.",
                               **(entry.options_schema or {})}}}
        for name, entry in sorted(host.stores.items())
    ]
    defs["profile"]["properties"]["store"]["oneOf"] = [
        {"enum": sorted(host.stores)}, *store_options,
    ]
    source_options = [
        {"type": "object", "additionalProperties": False, "required": [name],
         "properties": {name: {"description": f"Options of the {name} secret source.",
                               **(entry.options_schema or {})}}}
        for name, entry in sorted(host.sources.items())
    ]
    defs["secret"]["oneOf"] = [{"type": "string"}, *source_options]
    defs["server"]["properties"]["dialect"]["enum"] = sorted(host.dialects)
    defs["profile"]["properties"]["grant"]["enum"] = sorted(host.grants)
    return schema


@cache
def _validator_class() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator


def schema_issues(doc: Document, data: Any, schema: Mapping[str, Any],
                   base: JsonPath = ()) -> Iterator[tuple[JsonPath, ConfigIssue]]:
    """Every schema violation in *data* (at *base* in *doc*) with its JSON path."""
    if quickcheck.conforms(data, schema):
        return  # certainly valid: jsonschema (the slowest import of a renewal) is not needed
    validator = _validator_class()(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path: JsonPath = (*base, *error.absolute_path)
        if "propertyNames" in error.relative_schema_path and isinstance(error.instance, str):
            path = (*path, error.instance)  # a bad name: point at that key, not at its mapping
            yield path, doc.issue(path, f"invalid name: {error.message[:200]}", key=True)
            continue
        yield path, describe(doc, error, base)


def describe(doc: Document, error: Any, base: JsonPath) -> ConfigIssue:
    """One jsonschema error as a located issue, with a message a person can act on."""
    path: JsonPath = (*base, *error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            from tokenflow.errors import did_you_mean

            hint = did_you_mean(str(extra[0]), allowed, noun="allowed", limit=len(allowed))
            return doc.issue((*path, extra[0]), f"unknown key {extra[0]!r}{hint}", key=True)
    if validator == "required":
        return doc.issue(path, error.message, key=True)
    if validator == "oneOf" and error.schema.get("description"):
        return doc.issue(path, f"expected {error.schema['description'][0].lower()}"
                               f"{error.schema['description'][1:]}")
    if validator == "anyOf" and all(set(option) == {"required"} for option in error.validator_value):
        choices = " or ".join(name for option in error.validator_value for name in option["required"])
        return doc.issue(path, f"needs {choices}", key=True)
    if validator == "pattern" and path and path[-1] == "token_url":
        return doc.issue(path, f"{error.instance!r} is not an absolute http(s) URL")
    message = error.message
    if len(message) > 200:
        message = message[:200] + "…"
    return doc.issue(path, message)
