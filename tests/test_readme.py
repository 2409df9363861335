"""README.md keeps its promises: the commands it shows are the ones CI runs and the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tokenflow.cli import app as cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

# The commands DESIGN.md section 2 names (the design document is not shipped with the package).
DESIGN_COMMANDS = ("token", "validate", "profiles", "status", "logout", "exec", "schema",
                   "plugins", "demo", "completion", "login")


def section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match is not None, f"README.md has no '## {heading}' section"
    return match[1]


def sh_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```sh[ \t]*\n(.*?)^```", text, re.M | re.S)]


def quick_start() -> list[str]:
    blocks = sh_blocks(section(README.read_text(encoding="utf-8"), "Quick start"))
    assert len(blocks) >= 2, "Quick start should show the demo command, then the test command"
    return blocks


def test_quick_start_test_command_is_what_ci_runs() -> None:
    command = quick_start()[1]
    assert "\n" not in command, "the test command is one line"
    assert "pytest" in command
    ci_lines = CI.read_text(encoding="utf-8").splitlines()
    assert command in ci_lines, f"{command!r} is not a line of .ci/run"


def test_quick_start_demo_command_installs_and_runs_the_demo() -> None:
    command = quick_start()[0]
    install = re.search(r"\bpip install (?:-e )?['\"]?\.(?:\[\w+\])?['\"]?(?=\s|$)", command)
    assert install is not None, f"{command!r} does not install the package"
    demo = re.search(r"\btokenflow demo\b", command)
    assert demo is not None, f"{command!r} does not run tokenflow demo"
    assert install.start() < demo.start()


def test_design_commands_are_the_cli_commands() -> None:
    assert sorted(cli._COMMANDS) == sorted(DESIGN_COMMANDS)


@pytest.mark.parametrize(
    "command",
    DESIGN_COMMANDS,
)
def test_readme_names_every_command(command: str) -> None:
    text = README.read_text(encoding="utf-8")
    assert re.search(rf"\btokenflow {command}\b", text), f"README.md never shows `tokenflow {command}`"
