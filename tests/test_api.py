"""The public names of ``import tokenflow``: lazily loaded, all resolvable, listed literally."""

from __future__ import annotations

import subprocess
import sys

import tokenflow


def test_all_lists_every_lazy_export_and_each_resolves() -> None:
    assert set(tokenflow.__all__) == set(tokenflow._EXPORTS) | {"__version__"}
    for name in tokenflow.__all__:
        assert getattr(tokenflow, name) is not None


def test_import_tokenflow_loads_nothing_heavy() -> None:
    code = (
        "import sys, tokenflow; "
        "heavy = [m for m in ('urllib3', 'yaml', 'jsonschema', 'pluggy', 'tokenflow.loader') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        tokenflow.no_such_name  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
