"""The ``env`` secret source: ``{env: NAME}`` reads an environment variable."""

from __future__ import annotations

import os
from typing import Any

from tokenflow.errors import ConfigError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar, Watched
from tokenflow.plugins.hookspecs import hookimpl


def resolve_env(options: Any, context: PluginContext) -> str:
    value = os.environ.get(str(options))
    if value is None:
        raise ConfigError(
            f"profile {context.profile!r}: environment variable {options} is not set"
        )
    return value


def watch_env(options: Any, context: PluginContext) -> Watched:
    return Watched(env=(str(options),), verbatim=True)  # the value is the variable, as it is


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register(
        "env",
        resolve_env,
        {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
         "description": "Name of the environment variable that holds the value."},
        cache_key_safe=True,
        watch=watch_env,
    )
