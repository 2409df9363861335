"""YAML documents with positions: parse a config file into plain data and a map from JSON
paths to the line and column of each key and value (as cfn-lint does), so every later error
can point at its place. Duplicate keys are an error at the second one; anchors, aliases and
merge keys are bounded (a "billion laughs" document stops early with a located error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokenflow.errors import ConfigIssue

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_ALIASES", "MAX_YAML_NODES", "Document", "JsonPath",
           "parse_document", "path_text"]

JsonPath = tuple[str | int, ...]
MAX_FILE_BYTES = 4 * 1024 * 1024  # 10,000 profiles in one file are about 2 MB
# YAML aliases make a small file describe a huge value ("billion laughs": 9 anchors of 10 aliases
# each are 10^9 nodes in under 500 bytes), and merge keys (<<) copy mappings the same way. The
# builder counts every node it constructs (an alias is built each time it is used), each alias
# use (a merged mapping is one) and the pairs merge keys copy, and stops at these (a 1,000-profile
# config is about 15,000 nodes, and merges an anchor into each profile with 1,000 alias uses).
MAX_YAML_NODES = 500_000  # 10,000 profiles of a dozen keys are about 150,000
MAX_YAML_ALIASES = 10_000
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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


class _TooBig(Exception):
    """The document expands past :data:`MAX_YAML_NODES` or :data:`MAX_YAML_ALIASES`."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _Builder:
    """Turn a composed YAML node graph into plain data, recording positions.

    The composer resolves an alias to the very node its anchor names, so the graph can share
    nodes; building it expands every use. The builder counts what it builds and gives up at
    the limits, with an issue located at the node where the limit was crossed.
    """

    def __init__(self, doc: Document, loader: yaml.SafeLoader, issues: list[ConfigIssue]) -> None:
        self.doc = doc
        self.loader = loader
        self.issues = issues
        self.active: set[int] = set()
        self.seen: set[int] = set()  # nodes built once: meeting one again is an alias use
        self.nodes = 0
        self.aliases = 0
        self.expanding = 0  # > 0 while building the copy an alias (or a merged key) makes

    def _count(self, node: yaml.Node, path: JsonPath) -> bool:
        """One node built at *path*; True if it starts the expansion of an alias."""
        alias = id(node) in self.seen and not self.expanding
        if alias:
            self._count_alias(path)
        self.seen.add(id(node))
        self._add_nodes(1, path)
        return alias

    def _count_alias(self, path: JsonPath) -> None:
        self.aliases += 1
        if self.aliases > MAX_YAML_ALIASES:
            raise _TooBig(self.doc.issue(path, (
                f"more than {MAX_YAML_ALIASES:,} uses of YAML aliases (*name); "
                "refusing a document that expands this much")))

    def _add_nodes(self, count: int, path: JsonPath) -> None:
        self.nodes += count
        if self.nodes > MAX_YAML_NODES:
            raise _TooBig(self.doc.issue(path, (
                f"the document expands to more than {MAX_YAML_NODES:,} values (through YAML "
                "aliases or merge keys); refusing it")))

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.doc.values.setdefault(path, _mark(node))
        if id(node) in self.active:
            self.issues.append(self.doc.issue(path, "recursive YAML alias"))
            return None
        if len(path) > 50:
            self.issues.append(self.doc.issue(path, "nested too deeply"))
            return None
        alias = self._count(node, path)
        self.expanding += alias
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
            self.expanding -= alias

    def _merged_size(self, node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
        """How many pairs *node* holds once its merge keys are flattened, computed without
        flattening: PyYAML's flatten_mapping copies merged pairs without removing duplicates,
        so chained merges double at each level (``<<: [*a, *a]``) before anything is built."""
        if not isinstance(node, yaml.MappingNode) or depth > 50:
            return 0
        known = memo.get(id(node))
        if known is not None:
            return known
        memo[id(node)] = 0  # a merge cycle adds nothing (flatten_mapping reports it)
        total = 0
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                total += 1
                continue
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for sub in merged:
                total += self._merged_size(sub, memo, depth + 1)
                if total > MAX_YAML_NODES:
                    break
        memo[id(node)] = total
        return total

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        own = len(node.value)
        merges = [value for key, value in node.value if key.tag == "tag:yaml.org,2002:merge"]
        if merges:
            own -= len(merges)
            if not self.expanding:  # each mapping merged in is one alias use
                for value in merges:
                    for _ in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                        self._count_alias(path)
            # checked before flattening, which copies them all (building them counts them)
            if self.nodes + self._merged_size(node, {}) > MAX_YAML_NODES:
                self._add_nodes(MAX_YAML_NODES + 1, path)
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.YAMLError as exc:
            self.issues.append(self.doc.issue(path, f"bad merge key: {exc}"))
        merged = max(len(node.value) - own, 0)  # flatten_mapping puts the merged pairs first
        result: dict[str, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
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
            copied = index < merged  # a merged pair's value: part of that merge's alias use
            self.expanding += copied
            try:
                result[key] = self.build(value_node, child)
            finally:
                self.expanding -= copied
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
    """Parse YAML *text*; problems come back as issues, never as other exceptions.

    Bounded: text over :data:`MAX_FILE_BYTES` is refused before parsing, and building stops at
    :data:`MAX_YAML_NODES` values or :data:`MAX_YAML_ALIASES` alias uses.
    """
    doc = Document(source, base_dir)
    issues: list[ConfigIssue] = []
    if len(text) > MAX_FILE_BYTES:  # characters: at least as many bytes
        issues.append(ConfigIssue(source, 0, 0, "", f"file is over {MAX_FILE_BYTES >> 20} MiB"))
        return doc, issues
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
    except _TooBig as exc:
        doc.data = None
        issues.append(exc.issue)
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
