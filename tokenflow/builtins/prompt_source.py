"""The ``prompt`` secret source: ``{prompt: LABEL}`` asks on the terminal, never echoing.

Only on a TTY: a script or CI job with no terminal gets a clear error instead of hanging.
An empty answer (Enter pressed by mistake) is asked again, a few times at most. Ctrl-C or
Ctrl-D at the prompt ends the prompt's line first, so what follows starts on a line of its own.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from tokenflow.errors import CredentialError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar
from tokenflow.plugins.hookspecs import hookimpl

MAX_ASKS = 3  # an empty answer is asked again; three empty answers are an answer


def _to_terminal(text: str) -> None:
    """Write *text* where getpass wrote the prompt: the terminal, else stderr."""
    try:
        with open("/dev/tty", "w", encoding="utf-8") as tty:
            tty.write(text)
            return
    except OSError:
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


def resolve_prompt(options: Any, context: PluginContext) -> str:
    label = str(options)
    if not (sys.stdin is not None and sys.stdin.isatty()):
        raise CredentialError(
            f"profile {context.profile!r} needs {label!r} typed in, but there is no terminal; "
            "use an env, file, command or keyring source instead"
        )
    import getpass  # here, not at the top: every run registers this plugin, few resolve it

    for _ in range(MAX_ASKS):
        try:
            answer = getpass.getpass(f"{label} for {context.profile}: ")
        except EOFError:
            _to_terminal("\n")
            raise CredentialError(f"profile {context.profile!r}: no input for {label!r}") from None
        except KeyboardInterrupt:
            _to_terminal("\n")  # getpass leaves the cursor after the prompt
            raise
        if answer:
            return answer
        _to_terminal(f"tokenflow: {label} cannot be empty; type it and press Enter "
                     "(Ctrl-C to stop)\n")
    raise CredentialError(f"profile {context.profile!r}: {label!r} was empty {MAX_ASKS} times")


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register(
        "prompt",
        resolve_prompt,
        {"type": "string", "minLength": 1, "description": "Label shown when asking."},
    )
