"""The ``dotenv`` secret source: ``{dotenv: {path: FILE, key: NAME}}`` reads NAME from a .env file.

Profile usage::

    password: {dotenv: {path: .env, key: TS_PASSWORD}}        # path relative to the config file
    client_secret: {dotenv: {path: ~/.config/ts.env, key: CLIENT_SECRET}}

The file holds ``NAME=value`` lines; ``export NAME=value``, ``# comments``, blank lines,
``'single quoted'`` (literal) and ``"double quoted"`` (``\\n``, ``\\"``, ``\\\\`` escapes) values
are understood, and a comment after a value (``value  # comment``) is dropped. Other lines are
ignored.

The resolver gets its options exactly as written in the profile (after ``${VAR}`` expansion and
validation against :data:`OPTIONS_SCHEMA`). Its error messages name the file and the key, never
a value: tokenflow shows them to the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenflow.errors import ConfigError, CredentialError
from tokenflow.plugins.contracts import PluginContext

__all__ = ["OPTIONS_SCHEMA", "dotenv_path", "parse_dotenv", "resolve_dotenv"]

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path", "key"],
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "The .env file (relative paths are relative to the config file).",
        },
        "key": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "The variable whose value is the secret.",
        },
    },
}

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unescape(text: str) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_ESCAPES.get(following, "\\" + following))
        else:
            out.append(char)
    return "".join(out)


def _closing_quote(value: str) -> int:
    """Index of the ``"`` that closes a double-quoted *value* (skipping escapes), or -1."""
    index = 1
    while index < len(value):
        if value[index] == "\\":
            index += 2
        elif value[index] == '"':
            return index
        else:
            index += 1
    return -1


def parse_dotenv(text: str) -> dict[str, str]:
    """``NAME=value`` pairs of a .env file (the last assignment of a name wins)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            continue  # not an assignment
        value = value.strip()
        if value[:1] == "'" and "'" in value[1:]:
            value = value[1:value.index("'", 1)]  # literal; anything after it is a comment
        elif value[:1] == '"' and _closing_quote(value) > 0:
            value = _unescape(value[1:_closing_quote(value)])
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def dotenv_path(options: Any, context: PluginContext) -> Path:
    """The file *options* name, relative paths resolved against the config file's directory."""
    path = Path(str(options["path"])).expanduser()
    return path if path.is_absolute() else context.base_dir / path


def resolve_dotenv(options: Any, context: PluginContext) -> str:
    """The resolver: the value of ``options["key"]`` in the file ``options["path"]``."""
    path = dotenv_path(options, context)
    key = str(options["key"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        # a missing file is a configuration mistake: ConfigError (the CLI exits 2)
        raise ConfigError(f"profile {context.profile!r}: dotenv file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(
            f"profile {context.profile!r}: cannot read dotenv file {path}: {type(exc).__name__}"
        ) from None
    values = parse_dotenv(text)
    if key not in values:
        raise CredentialError(f"profile {context.profile!r}: {path} does not set {key}")
    return values[key]
