"""The cheap entry-point scan says "none" only when importlib.metadata would find none.

Each case is a real directory of ``*.dist-info`` / ``*.egg-info`` folders (or a zip) used as the
search path, and :func:`~tokenflow.plugins.entry_scan.may_declare` is compared with what
``importlib.metadata.distributions(path=...)`` finds there (or raises) for the same group.
"""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tokenflow.plugins.entry_scan import may_declare

GROUP = "tokenflow"


@pytest.fixture(autouse=True)
def standard_meta_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter's own way of finding distributions, whatever the test run imported.

    The ``importlib_metadata`` backport (which keyring imports on Python < 3.12) appends its own
    finder and deletes ``find_distributions`` from the standard path finder; with it in place
    the scan rightly defers to importlib.metadata (a finder of its own has its own test).
    """
    from importlib.machinery import PathFinder

    def find_distributions(*args: Any, **kwargs: Any) -> Any:  # as Python 3.11 defines it
        return importlib.metadata.MetadataPathFinder.find_distributions(*args, **kwargs)

    monkeypatch.setattr(PathFinder, "find_distributions", staticmethod(find_distributions),
                        raising=False)
    kept = [finder for finder in sys.meta_path
            if getattr(finder, "find_distributions", None) is None]
    monkeypatch.setattr(sys, "meta_path", [*kept, PathFinder])


def importlib_finds(site: Path, group: str = GROUP) -> bool:
    return any(ep.group == group
               for dist in importlib.metadata.distributions(path=[str(site)])
               for ep in dist.entry_points)


def distribution(site: Path, folder: str, entry_points: str | bytes | None) -> None:
    info = site / folder
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: d\nVersion: 1\n", encoding="utf-8")
    if isinstance(entry_points, bytes):
        (info / "entry_points.txt").write_bytes(entry_points)
    elif entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


@pytest.mark.parametrize(("folder", "text", "declared"), [
    ("plug-1.0.dist-info", "[tokenflow]\njar = plug.jar\n", True),
    ("plug-1.0.dist-info", "# comment\n\n  [tokenflow]  \n  jar = plug.jar\n", True),
    ("Plug-1.0.DIST-INFO", "[tokenflow]\njar = plug.jar\n", True),  # any case, as importlib
    ("plug.egg-info", "[tokenflow]\njar = plug.jar\n", True),
    ("plug-1.0.dist-info", "[[tokenflow]]\njar = plug.jar\n", True),  # importlib strips every []
    ("plug-1.0.dist-info", "[console_scripts]\nplug = plug:main\n", False),
    ("plug-1.0.dist-info", "[pytest11]\ntokenflow = tokenflow.testing.pytest_plugin\n", False),
    ("plug-1.0.dist-info", "[ tokenflow ]\njar = plug.jar\n", False),  # not the same name
    ("plug-1.0.dist-info", "[tokenflow.extra]\njar = plug.jar\n", False),
    ("plug-1.0.dist-info", "#[tokenflow]\n", False),
    ("plug-1.0.dist-info", None, False),
    ("plug-1.0", "[tokenflow]\njar = plug.jar\n", False),  # not a metadata folder
])
def test_agrees_with_importlib_metadata(tmp_path: Path, folder: str, text: str | None,
                                        declared: bool) -> None:
    distribution(tmp_path, folder, text)
    assert importlib_finds(tmp_path) is declared
    assert may_declare(GROUP, [str(tmp_path)]) is declared


def test_what_importlib_metadata_would_fail_on_is_left_to_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    distribution(broken, "bad-1.dist-info", "[console_scripts]\nno equals sign here\n")
    with pytest.raises(TypeError):  # importlib.metadata's Pair.parse
        importlib_finds(broken)
    assert may_declare(GROUP, [str(broken)]) is True
    undecodable = tmp_path / "undecodable"
    distribution(undecodable, "bad-1.dist-info", b"[console_scripts]\nx = \xff\n")
    with pytest.raises(UnicodeDecodeError):
        importlib_finds(undecodable)
    assert may_declare(GROUP, [str(undecodable)]) is True


def test_a_zip_or_an_egg_on_the_path_is_left_to_importlib_metadata(tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("plug-1.0.dist-info/entry_points.txt", "[tokenflow]\njar = plug.jar\n")
    assert importlib_finds(archive)
    assert may_declare(GROUP, [str(archive)]) is True
    egg = tmp_path / "plug-1.0.egg"
    egg.mkdir()
    assert may_declare(GROUP, [str(egg)]) is True


def test_missing_and_empty_directories_declare_nothing(tmp_path: Path) -> None:
    assert may_declare(GROUP, [str(tmp_path / "absent"), str(tmp_path)]) is False
    assert not importlib_finds(tmp_path / "absent")


def test_a_distribution_finder_on_the_meta_path_is_left_to_importlib_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Finder:
        """Serves distributions from elsewhere, as some import hooks do."""

        def find_spec(self, *args: object) -> None:
            return None

        def find_distributions(self, *args: object) -> list[importlib.metadata.Distribution]:
            return []

    assert may_declare(GROUP, [str(tmp_path)]) is False
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    assert may_declare(GROUP, [str(tmp_path)]) is True


def test_this_environment_declares_no_tokenflow_plugin_but_does_declare_pytest_plugins() -> None:
    assert may_declare(GROUP) is bool(importlib.metadata.entry_points(group=GROUP))
    assert may_declare("pytest11") is True  # tokenflow's own pytest plugin, at least
