"""Where tokenflow keeps its cache and finds its config (DESIGN.md section 1).

``tokenflow.locations`` computes the user directories itself (platformdirs costs more to import
than a whole cache hit), so these tests hold it to platformdirs' answers on this platform.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs
import pytest
from conftest import run_cli

from tokenflow import ConfigError, load_config
from tokenflow.base import locations

CONFIG = """\
version: 1
servers:
  s-%(n)s: {token_url: "https://idp.example/token"}
clients:
  c-%(n)s: {client_id: app}
profiles:
  %(n)s: {server: s-%(n)s, client: c-%(n)s, grant: client_credentials}
"""

# values a user's environment may hold; platformdirs ignores the ones that are not absolute
XDG_VALUES = ["ABS", "", "   ", "relative/dir", " ABS"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $HOME with no tokenflow or XDG overrides: the platform defaults apply."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("TOKENFLOW_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


def _platformdirs() -> tuple[str, str]:
    return (platformdirs.user_cache_dir("tokenflow", appauthor=False),
            platformdirs.user_config_dir("tokenflow", appauthor=False))


def test_user_dirs_match_platformdirs_without_xdg(home: Path) -> None:
    assert (locations.cache_dir(), locations.config_dir()) == _platformdirs()
    if sys.platform != "win32":
        assert locations.cache_dir().startswith(str(home))
        assert locations.config_dir().startswith(str(home))


@pytest.mark.skipif(os.name != "posix" or sys.platform == "darwin", reason="XDG applies on Linux/BSD")
@pytest.mark.parametrize("value", XDG_VALUES)
def test_user_dirs_match_platformdirs_with_xdg(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    cache_value = value.replace("ABS", str(tmp_path / "xdg-cache"))
    config_value = value.replace("ABS", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", cache_value)
    monkeypatch.setenv("XDG_CONFIG_HOME", config_value)
    assert (locations.cache_dir(), locations.config_dir()) == _platformdirs()
    if value == "ABS":
        assert locations.cache_dir() == str(tmp_path / "xdg-cache" / "tokenflow")
        assert locations.config_dir() == str(tmp_path / "xdg-config" / "tokenflow")
    else:  # not an absolute path: the XDG spec says to ignore it
        assert locations.cache_dir() == str(home / ".cache" / "tokenflow")
        assert locations.config_dir() == str(home / ".config" / "tokenflow")


def test_cache_dir_override(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert locations.cache_dir() == str(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", "relative-cache")
    assert locations.cache_dir() == str(tmp_path / "relative-cache")  # made absolute at once
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", "")
    assert locations.cache_dir() == _platformdirs()[0]  # empty means unset


def test_loaded_config_uses_the_cache_dir(home: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(CONFIG % {"n": "p"})
    monkeypatch.setenv("TOKENFLOW_CACHE_DIR", str(tmp_path / "cache"))
    assert load_config(path).cache_dir == tmp_path / "cache"
    monkeypatch.delenv("TOKENFLOW_CACHE_DIR")
    assert load_config(path).cache_dir == Path(_platformdirs()[0])


# -- config discovery ---------------------------------------------------------------------------
@pytest.fixture
def everywhere(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A config at every place discovery looks, each with its own profile name."""
    user_dir = Path(locations.config_dir())
    user_dir.mkdir(parents=True)
    (user_dir / "user.yaml").write_text(CONFIG % {"n": "from-user-dir"})
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "tokenflow.yaml").write_text(CONFIG % {"n": "from-cwd"})
    env_a, env_b = tmp_path / "env-a.yaml", tmp_path / "env-b.yaml"
    env_a.write_text(CONFIG % {"n": "from-env-a"})
    env_b.write_text(CONFIG % {"n": "from-env-b"})
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(CONFIG % {"n": "from-explicit"})
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TOKENFLOW_CONFIG", f"{env_a}{os.pathsep}{os.pathsep}{env_b}")
    return {"user": user_dir, "cwd": cwd, "env_a": env_a, "env_b": env_b, "explicit": explicit}


def _profiles() -> list[str]:
    return sorted(load_config().profiles)


def test_discovery_order(everywhere: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = str(everywhere["explicit"])
    # 1. --config paths, as given, beat everything
    assert locations.config_sources([explicit, "other.yaml"]) == [explicit, "other.yaml"]
    assert sorted(load_config(explicit).profiles) == ["from-explicit"]
    # 2. $TOKENFLOW_CONFIG, split on the OS path separator, empty parts skipped
    assert locations.config_sources() == [str(everywhere["env_a"]), str(everywhere["env_b"])]
    assert _profiles() == ["from-env-a", "from-env-b"]
    monkeypatch.setenv("TOKENFLOW_CONFIG", "  ")  # blank is unset
    # 3. ./tokenflow.yaml in the working directory
    assert locations.config_sources() == ["tokenflow.yaml"]
    assert _profiles() == ["from-cwd"]
    (everywhere["cwd"] / "tokenflow.yaml").unlink()
    # 4. the user config directory (a directory config: every *.yaml in it)
    assert locations.config_sources() == [str(everywhere["user"])]
    assert _profiles() == ["from-user-dir"]


def test_no_config_anywhere(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert locations.config_sources() == []
    with pytest.raises(ConfigError, match="no config found") as info:
        load_config()
    assert locations.config_dir() in str(info.value)  # says where profiles may go


def test_tokenflow_yaml_must_be_a_file(home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tokenflow.yaml").mkdir()  # a directory of that name is not the cwd config
    monkeypatch.chdir(tmp_path)
    assert locations.config_sources() == []


def test_config_files_expands_directories(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    for name in ("b.yml", "a.yaml", "c.yaml.bak", "notes.txt", "C.yaml"):
        (conf / name).write_text("version: 1\n")
    (conf / "sub.yaml").mkdir()  # a directory, even with a YAML name, is skipped
    single = tmp_path / "single.yaml"
    missing = tmp_path / "missing.yaml"
    files = locations.config_files([str(conf), str(single), str(missing)])
    assert files == [str(conf / "C.yaml"), str(conf / "a.yaml"), str(conf / "b.yml"),
                     str(single), str(missing)]


def test_cli_discovers_cwd_config(home: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenflow.yaml").write_text(CONFIG % {"n": "found-in-cwd"})
    result = run_cli("profiles", cwd=tmp_path, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "found-in-cwd" in result.stdout
