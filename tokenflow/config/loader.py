"""Load profile files into a validated :class:`~tokenflow.profile.Config`.

The pipeline, each step collecting *every* problem before anything is raised (as
check-jsonschema does), each problem located as ``FILE:LINE:COL: $.json.path: message``:

1. parse YAML into plain data plus a map from JSON paths to node positions (as cfn-lint does),
   rejecting duplicate keys at the second one;
2. expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value (never in keys);
3. validate each file against ``schemas/tokenflow.schema.json``;
4. merge the files of a directory, reporting a name defined twice with both places;
5. resolve ``extends`` chains (memoised, so 1,000 profiles stay linear; cycles reported);
6. check what the schema cannot: required keys after ``extends``, references between
   servers, clients and profiles, and plugin parts (dialects, stores and secret sources, with
   the option schemas their plugins register);
7. build the frozen model.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tokenflow.base import locations
from tokenflow.config import quickcheck
from tokenflow.config.model import (
    DEFAULT_LIFETIME,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ClientSpec,
    Config,
    Profile,
    SecretSpec,
    ServerSpec,
    StoreSpec,
)
from tokenflow.errors import ConfigError, ConfigIssue
from tokenflow.plugins.host import PluginHost
from tokenflow.redact import Secret

__all__ = [
    "config_from_data",
    "document_schema",
    "full_schema",
    "load_schema",
    "path_text",
    "read_config",
]

JsonPath = tuple[str | int, ...]
SECTIONS = ("servers", "clients", "profiles")
MAX_FILE_BYTES = 4 * 1024 * 1024
_VAR_RE = re.compile(
    r"\$(?:(?P<dollar>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\{))"
)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|\[::1\]|::1)$", re.IGNORECASE)


def path_text(path: JsonPath) -> str:
    """``("profiles", "prod", "scope", 0)`` -> ``$.profiles.prod.scope[0]``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# -- parsing ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Document:
    """One parsed file: its data and where each key and value stands in it."""

    source: str
    base_dir: Path
    data: Any = None
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of *path*'s key or value, else of its nearest ancestor."""
        probe = path
        while True:
            table = (self.keys, self.values) if key else (self.values, self.keys)
            for positions in table:
                if probe in positions:
                    return positions[probe]
            if not probe:
                return (0, 0)
            probe = probe[:-1]

    def issue(self, path: JsonPath, message: str, *, key: bool = False) -> ConfigIssue:
        line, col = self.where(path, key=key)
        return ConfigIssue(self.source, line, col, path_text(path), message)

    def location(self, path: JsonPath) -> str:
        line, _ = self.where(path, key=True)
        return f"{self.source}:{line}" if line else self.source


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turn a composed YAML node tree into plain data, recording positions."""

    def __init__(self, doc: Document, loader: yaml.SafeLoader, issues: list[ConfigIssue]) -> None:
        self.doc = doc
        self.loader = loader
        self.issues = issues
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.doc.values.setdefault(path, _mark(node))
        if id(node) in self.active:
            self.issues.append(self.doc.issue(path, "recursive YAML alias"))
            return None
        if len(path) > 50:
            self.issues.append(self.doc.issue(path, "nested too deeply"))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            try:
                return self.loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                self.issues.append(self.doc.issue(path, f"bad value: {type(exc).__name__}"))
                return None
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.YAMLError as exc:
            self.issues.append(self.doc.issue(path, f"bad merge key: {exc}"))
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                self.issues.append(
                    ConfigIssue(self.doc.source, line, col, path_text(path), "keys must be strings")
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                line, col = _mark(key_node)
                first, _ = self.doc.keys[child]
                self.issues.append(
                    ConfigIssue(
                        self.doc.source, line, col, path_text(child),
                        f"duplicate key {key!r} (first defined at line {first})",
                    )
                )
                continue
            self.doc.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child)
        return result


def _reader_issue(exc: yaml.reader.ReaderError, text: str, source: str) -> ConfigIssue:
    at = exc.position
    line, col = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
    char = exc.character
    label = f"U+{char:04X}" if isinstance(char, int) else repr(char)
    return ConfigIssue(source, line, col, "", f"YAML syntax error: character {label} is not allowed")


# libyaml's parser (when PyYAML has it) is several times faster and keeps the same node marks
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_document(text: str, source: str, base_dir: Path) -> tuple[Document, list[ConfigIssue]]:
    """Parse YAML *text*; problems come back as issues, never as other exceptions."""
    doc = Document(source, base_dir)
    issues: list[ConfigIssue] = []
    try:
        loader = _YamlLoader(text)
    except yaml.reader.ReaderError as exc:  # e.g. a control character: the reader checks all text first
        issues.append(_reader_issue(exc, text, source))
        return doc, issues
    try:
        node = loader.get_single_node()
        if node is None:
            issues.append(ConfigIssue(source, 1, 1, "$", "the file is empty; expected 'version: 1'"))
            return doc, issues
        doc.data = _Builder(doc, loader, issues).build(node, ())
    except yaml.reader.ReaderError as exc:  # libyaml's reader checks as it goes
        issues.append(_reader_issue(exc, text, source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        issues.append(ConfigIssue(source, line, col, "", f"YAML syntax error: {problem}"))
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(source, 0, 0, "", f"YAML error: {exc}"))
    except RecursionError:
        issues.append(ConfigIssue(source, 0, 0, "", "YAML nested too deeply"))
    finally:
        loader.dispose()
    return doc, issues


# -- ${VAR} expansion ---------------------------------------------------------------------------
def _expand(
    value: Any,
    path: JsonPath,
    doc: Document,
    environ: Mapping[str, str],
    used: set[str],
    issues: list[ConfigIssue],
) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        # YAML's .nan and .inf pass every JSON Schema bound (NaN compares false), so refuse here
        issues.append(doc.issue(path, f"{value!r} is not a finite number"))
        return value
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match["dollar"]:
                return "$"
            if match["bad"]:
                issues.append(doc.issue(path, "'${' without a valid '${NAME}' or '${NAME:-default}'; "
                                              "write '$$' for a literal '$'"))
                return ""
            name = match["name"]
            used.add(name)
            if name in environ:
                return environ[name]
            if match["default"] is not None:
                return str(match["default"])
            issues.append(doc.issue(path, f"environment variable {name} is not set "
                                          f"(use ${{{name}:-default}} for a default)"))
            return ""

        return _VAR_RE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), doc, environ, used, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), doc, environ, used, issues) for i, v in enumerate(value)]
    return value


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


def _schema_issues(doc: Document, data: Any, schema: Mapping[str, Any],
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
        yield path, _describe(doc, error, base)


def _describe(doc: Document, error: Any, base: JsonPath) -> ConfigIssue:
    """One jsonschema error as a located issue, with a message a person can act on."""
    path: JsonPath = (*base, *error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            hint = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
            return doc.issue((*path, extra[0]), f"unknown key {extra[0]!r}{hint}", key=True)
    if validator == "required":
        return doc.issue(path, error.message, key=True)
    if validator == "oneOf" and error.schema.get("description"):
        return doc.issue(path, f"expected {error.schema['description'][0].lower()}"
                               f"{error.schema['description'][1:]}")
    if validator == "pattern" and path and path[-1] == "token_url":
        return doc.issue(path, f"{error.instance!r} is not an absolute http(s) URL")
    message = error.message
    if len(message) > 200:
        message = message[:200] + "…"
    return doc.issue(path, message)


# -- assembling ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Entry:
    """A server, client or profile as written, with the document that holds it."""

    name: str
    data: dict[str, Any]
    doc: Document


@dataclass(slots=True)
class _Assembly:
    host: PluginHost
    issues: list[ConfigIssue] = field(default_factory=list)
    sections: dict[str, dict[str, _Entry]] = field(
        default_factory=lambda: {name: {} for name in SECTIONS}
    )
    # entries with schema errors: already reported, and references to them are not errors
    broken: dict[str, dict[str, _Entry]] = field(
        default_factory=lambda: {name: {} for name in SECTIONS}
    )
    used_env: set[str] = field(default_factory=set)
    schema: dict[str, Any] | None = None

    def add_document(self, doc: Document, environ: Mapping[str, str]) -> None:
        if not isinstance(doc.data, dict):
            self.issues.append(doc.issue((), "the file must be a mapping with 'version: 1'"))
            return
        doc.data = _expand(doc.data, (), doc, environ, self.used_env, self.issues)
        broken_entries: set[tuple[str, str]] = set()
        shape_broken = False
        if self.schema is None:
            self.schema = document_schema(self.host)
        for path, issue in _schema_issues(doc, doc.data, self.schema):
            self.issues.append(issue)  # every schema error is reported, whatever comes first
            if len(path) < 2 or path[0] not in SECTIONS:
                shape_broken = True
            else:
                broken_entries.add((str(path[0]), str(path[1])))
        if shape_broken:
            return  # the file's shape is wrong: cross-checks would only add noise
        for section in SECTIONS:
            for name, data in (doc.data.get(section) or {}).items():
                existing = self.sections[section].get(name) or self.broken[section].get(name)
                if existing is not None:
                    self.issues.append(doc.issue(
                        (section, name),
                        f"{section[:-1]} {name!r} is already defined at "
                        f"{existing.doc.location((section, name))}",
                        key=True,
                    ))
                    continue
                target = self.broken if (section, name) in broken_entries else self.sections
                target[section][name] = _Entry(name, data, doc)

    # extends ------------------------------------------------------------------------------
    def resolve_profiles(self) -> dict[str, tuple[dict[str, tuple[Any, _Entry]], tuple[str, ...]]]:
        """Each profile's keys after ``extends``: key -> (value, entry that set it)."""
        profiles = self.sections["profiles"]
        resolved: dict[str, tuple[dict[str, tuple[Any, _Entry]], tuple[str, ...]]] = {}
        failed: set[str] = set()

        def resolve(name: str) -> None:
            # walk up the chain iteratively so a long chain cannot exhaust the stack
            chain: list[str] = []
            current: str | None = name
            while current is not None and current not in resolved:
                if current in failed or current in chain:
                    if current in chain:
                        cycle = " -> ".join([*chain[chain.index(current):], current])
                        self.issues.append(profiles[current].doc.issue(
                            ("profiles", current, "extends"), f"extends cycle: {cycle}"))
                    failed.update(chain)
                    return
                chain.append(current)
                parent = profiles[current].data.get("extends")
                if parent is not None and parent not in profiles:
                    if parent in self.broken["profiles"]:  # already reported
                        failed.update(chain)
                        return
                    self.issues.append(profiles[current].doc.issue(
                        ("profiles", current, "extends"),
                        f"extends unknown profile {parent!r}{_known(profiles)}"))
                    failed.update(chain)
                    return
                current = parent
            for member in reversed(chain):
                entry = profiles[member]
                parent = entry.data.get("extends")
                merged: dict[str, tuple[Any, _Entry]] = {}
                lineage: tuple[str, ...] = ()
                if parent is not None:
                    parent_keys, parent_lineage = resolved[parent]
                    merged.update((k, v) for k, v in parent_keys.items() if k != "abstract")
                    lineage = (parent, *parent_lineage)
                merged.update((k, (v, entry)) for k, v in entry.data.items() if k != "extends")
                resolved[member] = (merged, lineage)

        for name in profiles:
            if name not in resolved and name not in failed:
                resolve(name)
        return resolved


def _known(names: Mapping[str, Any]) -> str:
    return f"; known: {', '.join(sorted(names))}" if names else ""


def _ca_bundle_problem(bundle: Path) -> str | None:
    """Why *bundle* cannot serve as ``verify: PATH`` (found now, not at the first request)."""
    if not bundle.exists():
        return "does not exist"
    if bundle.is_dir():
        return "is a directory; give a PEM file of CA certificates"
    import ssl

    try:
        ssl.create_default_context(cafile=str(bundle))
    except (ssl.SSLError, ValueError):
        return "holds no PEM certificate"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    # the whole host must be loopback: "127.0.0.1.example.com" is a public name
    return bool(_LOOPBACK.fullmatch(host))


class _ModelBuilder:
    """Step 6 and 7: cross-checks and the frozen model."""

    def __init__(self, asm: _Assembly, environ: Mapping[str, str]) -> None:
        self.asm = asm
        self.host = asm.host
        self.environ = environ
        self.issues = asm.issues

    def server(self, entry: _Entry) -> ServerSpec | None:
        data, doc, base = entry.data, entry.doc, ("servers", entry.name)
        ok = True
        dialect = data.get("dialect", "rfc6749")
        if dialect not in self.host.dialects:
            self.issues.append(doc.issue((*base, "dialect"),
                                         f"unknown dialect {dialect!r}{_known(self.host.dialects)}"))
            ok = False
        insecure_ok = bool(data.get("allow_insecure_http", False))
        for key in ("token_url", "revoke_url"):
            url = data.get(key)
            if isinstance(url, str) and url.lower().startswith("http://") and not insecure_ok \
                    and not _is_loopback_url(url):
                self.issues.append(doc.issue((*base, key), (
                    "http:// to a host that is not loopback would send credentials and tokens in "
                    "clear text; use https:// or set allow_insecure_http: true")))
                ok = False
        verify: bool | str = data.get("verify", True)
        if isinstance(verify, str):
            bundle = Path(verify).expanduser()
            if not bundle.is_absolute():
                bundle = doc.base_dir / bundle
            problem = _ca_bundle_problem(bundle)
            if problem:
                self.issues.append(doc.issue((*base, "verify"), f"CA bundle {bundle} {problem}"))
                ok = False
            verify = str(bundle)
        if not ok:
            return None
        return ServerSpec(
            name=entry.name,
            token_url=data["token_url"],
            dialect=dialect,
            client_auth=data.get("client_auth", "basic"),
            revoke_url=data.get("revoke_url"),
            timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
            retries=int(data.get("retries", DEFAULT_RETRIES)),
            verify=verify,
            allow_insecure_http=insecure_ok,
            headers=dict(data.get("headers", {})),
        )

    def secret(self, value: Any, doc: Document, path: JsonPath) -> SecretSpec | None:
        where = doc.location(path)
        if isinstance(value, str):
            return SecretSpec("literal", Secret(value), doc.base_dir, where)
        if not isinstance(value, dict) or len(value) != 1:
            self.issues.append(doc.issue(path, "expected a string or one source mapping"))
            return None
        ((kind, options),) = value.items()
        entry = self.host.sources.get(kind)
        if entry is None:
            self.issues.append(doc.issue((*path, kind), f"unknown secret source {kind!r}"
                                                        f"{_known(self.host.sources)}", key=True))
            return None
        if entry.options_schema is not None:
            found = [i for _, i in _schema_issues(doc, options, entry.options_schema, (*path, kind))]
            if found:
                self.issues.extend(found)
                return None
        return SecretSpec(kind, options, doc.base_dir, where)

    def client(self, entry: _Entry) -> ClientSpec | None:
        data, doc = entry.data, entry.doc
        secret = None
        if "client_secret" in data:
            secret = self.secret(data["client_secret"], doc, ("clients", entry.name, "client_secret"))
            if secret is None:
                return None
        return ClientSpec(entry.name, data["client_id"], secret)

    def store(self, value: Any, entry: _Entry, path: JsonPath) -> StoreSpec | None:
        doc = entry.doc
        options: Any = {}
        if isinstance(value, str):
            name = value
        else:
            ((name, options),) = value.items()
            path = (*path, name)
        store = self.host.stores.get(name)
        if store is None:
            self.issues.append(doc.issue(path, f"unknown store {name!r}{_known(self.host.stores)}",
                                         key=not isinstance(value, str)))
            return None
        if options is None:
            options = {}
        if store.options_schema is not None:
            found = [i for _, i in _schema_issues(doc, options, store.options_schema, path)]
            if found:
                self.issues.extend(found)
                return None
        if not isinstance(options, dict):
            self.issues.append(doc.issue(path, "store options must be a mapping"))
            return None
        return StoreSpec(name, options, doc.base_dir)

    def profile(
        self,
        name: str,
        keys: Mapping[str, tuple[Any, _Entry]],
        lineage: tuple[str, ...],
        servers: Mapping[str, ServerSpec | None],
        clients: Mapping[str, ClientSpec | None],
    ) -> Profile | None:
        own = self.asm.sections["profiles"][name]

        def at(key: str) -> tuple[Document, JsonPath]:
            value_entry = keys[key][1] if key in keys else own
            return value_entry.doc, ("profiles", value_entry.name, key)

        missing = [k for k in ("server", "client", "grant") if k not in keys]
        if missing:
            via = f" (after extends {' -> '.join(lineage)})" if lineage else ""
            self.issues.append(own.doc.issue(
                ("profiles", name), f"profile {name!r} needs {', '.join(missing)}{via}", key=True))
            return None
        value: dict[str, Any] = {k: v for k, (v, _) in keys.items()}
        ok = True
        broken = self.asm.broken
        server = servers.get(value["server"])
        if value["server"] not in servers and value["server"] not in broken["servers"]:
            doc, path = at("server")
            self.issues.append(doc.issue(path, f"unknown server {value['server']!r}{_known(servers)}"))
            ok = False
        client = clients.get(value["client"])
        if value["client"] not in clients and value["client"] not in broken["clients"]:
            doc, path = at("client")
            self.issues.append(doc.issue(path, f"unknown client {value['client']!r}{_known(clients)}"))
            ok = False
        grant_options = self.grant_options(name, value, at, own)
        ok = ok and grant_options is not None
        store_spec: StoreSpec | None = StoreSpec("file", {}, own.doc.base_dir)
        if "store" in value:
            doc_entry = keys["store"][1]
            store_spec = self.store(value["store"], doc_entry, ("profiles", doc_entry.name, "store"))
            ok = ok and store_spec is not None
        if not ok or server is None or client is None or store_spec is None:
            return None
        scope = value.get("scope")
        if isinstance(scope, list):
            scope = " ".join(scope)
        return Profile(
            name=name,
            server=server,
            client=client,
            grant=value["grant"],
            grant_options=grant_options or {},
            scope=scope or None,
            store=store_spec,
            refresh_margin=float(value.get("refresh_margin", DEFAULT_REFRESH_MARGIN)),
            default_lifetime=float(value.get("default_lifetime", DEFAULT_LIFETIME)),
            params=dict(value.get("params", {})),
            description=str(value.get("description", "")),
            where=own.doc.location(("profiles", name)),
            extends=lineage,
        )

    def grant_options(
        self,
        name: str,
        value: Mapping[str, Any],
        at: Callable[[str], tuple[Document, JsonPath]],
        own: _Entry,
    ) -> dict[str, Any] | None:
        """The profile's keys that its grant declares, checked against the grant's schema."""
        grant = value["grant"]
        entry = self.host.grants.get(grant)
        if entry is None:
            doc, path = at("grant")
            self.issues.append(doc.issue(path, f"unknown grant {grant!r}{_known(self.host.grants)}"))
            return None
        schema = entry.options_schema or {}
        secret_keys = set(entry.grant.secret_options)
        options: dict[str, Any] = {}
        ok = True
        for key in schema.get("required", ()):
            if key not in value:
                self.issues.append(own.doc.issue(("profiles", name),
                                                 f"the {grant} grant needs {key}", key=True))
                ok = False
        for key, key_schema in (schema.get("properties") or {}).items():
            if key not in value:
                continue
            doc, path = at(key)
            if key in secret_keys:
                spec = self.secret(value[key], doc, path)
                ok = ok and spec is not None
                options[key] = spec
                continue
            found = [i for _, i in _schema_issues(doc, value[key], key_schema, path)]
            self.issues.extend(found)
            ok = ok and not found
            options[key] = value[key]
        return options if ok else None

    def build(self, files: tuple[Path, ...], cache_dir: Path) -> Config:
        sections = self.asm.sections
        servers = {name: self.server(e) for name, e in sections["servers"].items()}
        clients = {name: self.client(e) for name, e in sections["clients"].items()}
        profiles: dict[str, Profile] = {}
        abstract: set[str] = set()
        for name, (keys, lineage) in self.asm.resolve_profiles().items():
            if keys.get("abstract", (False, None))[0] is True:
                abstract.add(name)
                continue
            profile = self.profile(name, keys, lineage, servers, clients)
            if profile is not None:
                profiles[name] = profile
        if self.issues:
            raise ConfigError(_sorted(self.issues))
        return Config(
            profiles=profiles,
            abstract_profiles=frozenset(abstract),
            servers={k: v for k, v in servers.items() if v is not None},
            clients={k: v for k, v in clients.items() if v is not None},
            files=files,
            cache_dir=cache_dir,
            env_used=frozenset(self.asm.used_env),
        )


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.file, i.line, i.column))


def _read(path: Path, issues: list[ConfigIssue]) -> str | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            issues.append(ConfigIssue(str(path), 0, 0, "", f"file is over {MAX_FILE_BYTES} bytes"))
            return None
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(ConfigIssue(str(path), 0, 0, "", "no such file or directory"))
    except UnicodeDecodeError as exc:
        issues.append(ConfigIssue(str(path), 0, 0, "", f"not UTF-8 text (byte {exc.start})"))
    except OSError as exc:
        issues.append(ConfigIssue(str(path), 0, 0, "", f"cannot read: {exc.strerror or exc}"))
    return None


def _assemble(
    docs: Sequence[Document],
    parse_issues: list[ConfigIssue],
    files: tuple[Path, ...],
    plugins: PluginHost,
    environ: Mapping[str, str] | None,
    cache_dir: Path | None,
) -> Config:
    env = os.environ if environ is None else environ
    asm = _Assembly(plugins, list(parse_issues))
    for doc in docs:
        asm.add_document(doc, env)
    cache = cache_dir if cache_dir is not None else Path(locations.cache_dir())
    return _ModelBuilder(asm, env).build(files, cache)


def read_config(
    *paths: str | os.PathLike[str],
    plugins: PluginHost,
    environ: Mapping[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Load and validate config files or directories (default: the discovery order).

    Raises :class:`ConfigError` listing every problem found, each with file, line and column.
    """
    sources = locations.config_sources([os.fspath(p) for p in paths])
    if not sources:
        raise ConfigError(
            "no config found: pass --config PATH, set $TOKENFLOW_CONFIG, create ./tokenflow.yaml "
            f"or put profiles in {locations.config_dir()}"
        )
    issues: list[ConfigIssue] = []
    docs: list[Document] = []
    files = tuple(Path(f) for f in locations.config_files(sources))
    for source in sources:
        if Path(source).is_dir() and not any(f.parent == Path(source) for f in files):
            issues.append(ConfigIssue(source, 0, 0, "", "directory holds no *.yaml files"))
    for path in files:
        text = _read(path, issues)
        if text is None:
            continue
        doc, found = parse_document(text, str(path), path.resolve().parent)
        issues.extend(found)
        if doc.data is not None:  # duplicate keys and bad values still let the rest be checked
            docs.append(doc)
    return _assemble(docs, issues, files, plugins, environ,
                     Path(cache_dir) if cache_dir is not None else None)


def config_from_data(
    data: Mapping[str, Any],
    source: str = "<mapping>",
    *,
    plugins: PluginHost,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Build a Config from already-parsed data (for tools that embed tokenflow).

    Errors name *source* but have no line numbers, since there is no file.
    """
    plain = json.loads(json.dumps(data, default=str))
    doc = Document(source, Path(base_dir) if base_dir is not None else Path.cwd(), plain)
    return _assemble([doc], [], (), plugins, environ,
                     Path(cache_dir) if cache_dir is not None else None)

