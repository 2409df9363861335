"""The ``prompt`` secret source: ``{prompt: LABEL}`` asks on the terminal, never echoing.

Only on a TTY: a script or CI job with no terminal gets a clear error instead of hanging.
"""

from __future__ import annotations

import sys
from typing import Any

from tokenflow.errors import CredentialError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar
from tokenflow.plugins.hookspecs import hookimpl


def resolve_prompt(options: Any, context: PluginContext) -> str:
    label = str(options)
    if not (sys.stdin is not None and sys.stdin.isatty()):
        raise CredentialError(
            f"profile {context.profile!r} needs {label!r} typed in, but there is no terminal; "
            "use an env, file, command or keyring source instead"
        )
    import getpass  # here, not at the top: every run registers this plugin, few resolve it

    try:
        return getpass.getpass(f"{label} for {context.profile}: ")
    except EOFError:
        raise CredentialError(f"profile {context.profile!r}: no input for {label!r}") from None


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register(
        "prompt",
        resolve_prompt,
        {"type": "string", "minLength": 1, "description": "Label shown when asking."},
    )
