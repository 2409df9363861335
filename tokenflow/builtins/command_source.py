"""The ``command`` secret source: ``{command: [argv...]}`` runs a program, takes stdout's first line.

For password managers (``pass show``, ``op read``, ``security find-generic-password -w``). The
argv list runs without a shell, so nothing is re-interpreted. A non-zero exit is a
CredentialError that shows the last line of stderr, never stdout (stdout is the secret).
"""

from __future__ import annotations

from typing import Any

from tokenflow.errors import CredentialError
from tokenflow.plugins.contracts import PluginContext, SourceRegistrar
from tokenflow.plugins.hookspecs import hookimpl
from tokenflow.redact import scrub

DEFAULT_TIMEOUT = 30.0

OPTIONS_SCHEMA = {
    "description": "argv list run without a shell, or {argv: [...], timeout: SECONDS}.",
    "oneOf": [
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["argv"],
            "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                         "description": "The program and its arguments, run without a shell."},
                "timeout": {"type": "number", "exclusiveMinimum": 0,
                            "description": "Seconds to wait for the program (default 30)."},
            },
        },
    ],
}


def resolve_command(options: Any, context: PluginContext) -> str:
    if isinstance(options, dict):
        argv = [str(a) for a in options["argv"]]
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    else:
        argv = [str(a) for a in options]
        timeout = DEFAULT_TIMEOUT
    name = argv[0]
    import subprocess  # here, not at the top: every run registers this plugin, few resolve it

    try:
        done = subprocess.run(
            argv,
            cwd=context.base_dir if context.base_dir.is_dir() else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialError(f"profile {context.profile!r}: command {name!r} not found") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"profile {context.profile!r}: command {name!r} did not finish in {timeout:g}s"
        ) from None
    except OSError as exc:
        raise CredentialError(
            f"profile {context.profile!r}: cannot run {name!r}: {exc.strerror or exc}"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = scrub(lines[-1].strip())[:200] if lines else "no message on stderr"
        raise CredentialError(
            f"profile {context.profile!r}: command {name!r} exited with {done.returncode}: {last}"
        )
    out = done.stdout.decode("utf-8", "replace").splitlines()
    if not out or not out[0]:
        raise CredentialError(f"profile {context.profile!r}: command {name!r} printed nothing")
    return out[0]


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    register("command", resolve_command, OPTIONS_SCHEMA)
