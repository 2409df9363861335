"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value of a parsed document (never
in keys); an unset variable without a default is an error at its file, line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from tokenflow.config.yamldoc import Document, JsonPath
from tokenflow.errors import ConfigIssue

__all__ = ["expand"]

_VAR_RE = re.compile(
    r"\$(?:(?P<dollar>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\{))"
)


# -- ${VAR} expansion ---------------------------------------------------------------------------
def expand(
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
        return {k: expand(v, (*path, k), doc, environ, used, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, (*path, i), doc, environ, used, issues) for i, v in enumerate(value)]
    return value
