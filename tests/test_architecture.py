"""The architecture holds: import-linter's contracts (pyproject.toml) pass, and catch a breach.

ARCHITECTURE.md draws the layers; ``lint-imports`` checks them in CI. These tests run it on the
real tree, then on a copy with an upward import planted inside a function (where a check of
``sys.modules`` after import would miss it), and check the fast path's stdlib-only rule by
reading every import statement, nested ones included.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(where)},
    )


def test_the_import_contracts_are_kept() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("tokenflow/tokens.py", "import tokenflow.engine.session",
     "Layers: imports point down"),
    ("tokenflow/engine/session.py", "from tokenflow.builtins import file_store",
     "The core never imports a built-in plugin"),
    ("tokenflow/builtins/env_source.py", "from tokenflow.config import loader",
     "Built-in plugins import only the contracts"),
    ("tokenflow/cli/fast/index.py", "import urllib3",
     "The CLI's cached path and its building blocks import only the standard library"),
])
def test_an_upward_import_inside_a_function_breaks_a_contract(
    tmp_path: Path, module: str, planted: str, contract: str
) -> None:
    shutil.copytree(ROOT / "tokenflow", tmp_path / "tokenflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8")
                      + f"\n\ndef _planted() -> None:\n    {planted}  # noqa\n", encoding="utf-8")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout


FAST_PATH = [*sorted((ROOT / "tokenflow" / "cli" / "fast").glob("*.py")),
             *sorted((ROOT / "tokenflow" / "base").glob("*.py"))]
# the user's directories come from platformdirs on Windows only (see pyproject's contract)
ALLOWED = {("locations.py", "platformdirs")}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in *path* names, at any depth (functions included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pytest.fail(f"{path.name}:{node.lineno}: use absolute imports on the fast path")
            found.append((node.lineno, node.module or ""))
    return found


@pytest.mark.parametrize("path", FAST_PATH, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_fast_path_imports_only_the_standard_library_and_its_own_modules(path: Path) -> None:
    for line, name in imports_of(path):
        top = name.split(".")[0]
        own = name == "tokenflow.base" or name.startswith(("tokenflow.base.", "tokenflow.cli.fast"))
        assert top in sys.stdlib_module_names or own or top == "__future__" \
            or (path.name, top) in ALLOWED, f"{path.name}:{line} imports {name}"


def test_the_stdlib_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f() -> None:\n    import urllib3\n", encoding="utf-8")
    assert imports_of(sample) == [(1, "os"), (4, "urllib3")]
