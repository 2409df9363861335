"""Assembling documents: merge the files of a config, report a name defined twice with both
places, validate each file against the schema, and resolve ``extends`` chains (memoised and
iterative, so 10,000 profiles stay linear; cycles reported).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenflow.config.expand import expand
from tokenflow.config.schema import document_schema, schema_issues
from tokenflow.config.yamldoc import Document
from tokenflow.errors import ConfigIssue
from tokenflow.plugins.host import PluginHost

__all__ = ["SECTIONS", "Assembly", "Entry", "known"]

SECTIONS = ("servers", "clients", "profiles")


def known(names: Mapping[str, Any]) -> str:
    return f"; known: {', '.join(sorted(names))}" if names else ""


# -- assembling ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Entry:
    """A server, client or profile as written, with the document that holds it."""

    name: str
    data: dict[str, Any]
    doc: Document
    # keys whose values failed the schema (already reported): left out of ``data``, and never
    # reported again as missing
    bad: frozenset[str] = frozenset()


@dataclass(slots=True)
class Assembly:
    host: PluginHost
    issues: list[ConfigIssue] = field(default_factory=list)
    sections: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {name: {} for name in SECTIONS}
    )
    # entries with schema errors: already reported, never built into the model, and
    # references to them are not errors; their well-formed keys are still cross-checked
    broken: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {name: {} for name in SECTIONS}
    )
    used_env: set[str] = field(default_factory=set)
    schema: dict[str, Any] | None = None

    def add_document(self, doc: Document, environ: Mapping[str, str]) -> None:
        if not isinstance(doc.data, dict):
            self.issues.append(doc.issue((), "the file must be a mapping with 'version: 1'"))
            return
        doc.data = expand(doc.data, (), doc, environ, self.used_env, self.issues)
        bad_keys: dict[tuple[str, str], set[str]] = {}
        if self.schema is None:
            self.schema = document_schema(self.host)
        for path, issue in schema_issues(doc, doc.data, self.schema):
            self.issues.append(issue)  # every schema error is reported, whatever comes first
            if len(path) >= 2 and path[0] in SECTIONS:
                bad = bad_keys.setdefault((str(path[0]), str(path[1])), set())
                if len(path) >= 3:
                    bad.add(str(path[2]))
        # the semantic checks still run on whatever is well-formed (validate reports every error
        # at once): a section that is not a mapping is skipped, a bad value is left out
        for section in SECTIONS:
            entries: Any = doc.data.get(section)
            if not isinstance(entries, dict):
                continue
            for name, data in entries.items():
                existing = self.sections[section].get(name) or self.broken[section].get(name)
                if existing is not None:
                    self.issues.append(doc.issue(
                        (section, name),
                        f"{section[:-1]} {name!r} is already defined at "
                        f"{existing.doc.location((section, name))}",
                        key=True,
                    ))
                    continue
                invalid = bad_keys.get((section, name))
                if not isinstance(data, dict):
                    self.broken[section][name] = Entry(name, {}, doc)  # nothing to check
                elif invalid is None:
                    self.sections[section][name] = Entry(name, data, doc)
                else:
                    clean = {k: v for k, v in data.items() if k not in invalid}
                    entry = Entry(name, clean, doc, frozenset(invalid))
                    self.broken[section][name] = self.sections[section][name] = entry

    # extends ------------------------------------------------------------------------------
    def resolve_profiles(self) -> dict[str, tuple[dict[str, tuple[Any, Entry]], tuple[str, ...]]]:
        """Each profile's keys after ``extends``: key -> (value, entry that set it)."""
        profiles = self.sections["profiles"]
        resolved: dict[str, tuple[dict[str, tuple[Any, Entry]], tuple[str, ...]]] = {}
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
                        f"extends unknown profile {parent!r}{known(profiles)}"))
                    failed.update(chain)
                    return
                current = parent
            for member in reversed(chain):
                entry = profiles[member]
                parent = entry.data.get("extends")
                merged: dict[str, tuple[Any, Entry]] = {}
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
