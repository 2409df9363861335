"""Load profile files into a validated :class:`~tokenflow.config.model.Config`.

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

The steps live in their own modules: :mod:`~tokenflow.config.yamldoc` (1),
:mod:`~tokenflow.config.expand` (2), :mod:`~tokenflow.config.schema` (3),
:mod:`~tokenflow.config.assembly` (4, 5) and :mod:`~tokenflow.config.build` (6, 7); this module
reads the files and runs them in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenflow.base import locations
from tokenflow.base.files import file_stamp
from tokenflow.config.assembly import Assembly
from tokenflow.config.build import ModelBuilder
from tokenflow.config.model import Config
from tokenflow.config.yamldoc import MAX_FILE_BYTES, Document, parse_document
from tokenflow.errors import ConfigError, ConfigIssue
from tokenflow.plugins.host import PluginHost

__all__ = ["config_from_data", "read_config"]


def _read(path: Path, issues: list[ConfigIssue]) -> str | None:
    """The text of one config file: a regular file of at most :data:`MAX_FILE_BYTES`.

    Any cloned repository's ``./tokenflow.yaml`` is read automatically, so a FIFO, a device
    (``/dev/zero``) or a huge file is refused at once rather than waited on or read whole.
    """
    from tokenflow.base import boundedread

    try:
        text = boundedread.read_limited(str(path), MAX_FILE_BYTES).decode("utf-8")
        return text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads lines
    except boundedread.NotRegularFile as exc:
        issues.append(ConfigIssue(str(path), 0, 0, "",
                                  f"cannot read: it is {exc.kind}, not a regular file"))
    except boundedread.FileTooLarge:
        issues.append(ConfigIssue(str(path), 0, 0, "",
                                  f"file is over {MAX_FILE_BYTES >> 20} MiB; refusing to read it"))
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
    asm = Assembly(plugins, list(parse_issues))
    for doc in docs:
        asm.add_document(doc, env)
    cache = cache_dir if cache_dir is not None else Path(locations.cache_dir())
    return ModelBuilder(asm, env).build(files, cache)


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
    stamps = {os.path.abspath(path): file_stamp(str(path)) for path in files}
    for path in files:
        text = _read(path, issues)
        if text is None:
            continue
        doc, found = parse_document(text, str(path), path.resolve().parent)
        issues.extend(found)
        if doc.data is not None:  # duplicate keys and bad values still let the rest be checked
            docs.append(doc)
    config = _assemble(docs, issues, files, plugins, environ,
                       Path(cache_dir) if cache_dir is not None else None)
    return dataclasses.replace(config, file_stamps=stamps)


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
