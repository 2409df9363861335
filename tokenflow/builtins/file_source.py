"""The ``file`` secret source: ``{file: PATH}`` reads a file's first line.

Relative paths are relative to the config file that names them. Only the first line is read
(its ``\n`` or ``\r\n`` removed; other whitespace is kept, since it may be part of a password),
at most 64 KiB, and only from a regular file: a FIFO, a device such as ``/dev/zero`` or a
directory is refused at once instead of hanging or filling memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenflow.base import boundedread
from tokenflow.base.boundedread import MAX_SECRET_BYTES, read_secret_file
from tokenflow.errors import ConfigError, CredentialError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar, Watched
from tokenflow.plugins.hookspecs import hookimpl

__all__ = ["MAX_SECRET_BYTES", "resolve_file", "secret_file_path", "tokenflow_register_secret_sources",
           "watch_file"]


def secret_file_path(options: Any, context: PluginContext) -> Path:
    path = Path(str(options)).expanduser()
    return path if path.is_absolute() else context.base_dir / path


def resolve_file(options: Any, context: PluginContext) -> str:
    path = secret_file_path(options, context)
    try:
        return read_secret_file(str(path))
    except FileNotFoundError:
        raise ConfigError(f"profile {context.profile!r}: secret file {path} does not exist") from None
    except (boundedread.NotRegularFile, boundedread.FileTooLarge) as exc:
        raise CredentialError(f"profile {context.profile!r}: secret file {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(
            f"profile {context.profile!r}: cannot read secret file {path}: {type(exc).__name__}"
        ) from None


def watch_file(options: Any, context: PluginContext) -> Watched:
    # the value is the file, as read_secret_file reads it
    return Watched(files=(str(secret_file_path(options, context)),), verbatim=True)


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register(
        "file",
        resolve_file,
        {"type": "string", "minLength": 1,
         "description": "Path of a file whose first line is the value (relative to the config)."},
        cache_key_safe=True,
        watch=watch_file,
    )
