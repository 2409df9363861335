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
        "heavy = [m for m in ('urllib3', 'yaml', 'jsonschema', 'pluggy', 'tokenflow.config.loader') "
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


def test_reprs_of_the_model_hide_headers_params_and_store_options(tmp_path: object) -> None:
    config = tokenflow.config_from_mapping(
        {
            "version": 1,
            "servers": {"s": {"token_url": "https://idp.example/token",
                              "headers": {"X-Api-Key": "header-secret-4711"}}},
            "clients": {"c": {"client_id": "app", "client_secret": "client-secret-4711"}},
            "profiles": {"p": {"server": "s", "client": "c", "grant": "password",
                               "username": "alice", "password": "password-4711",
                               "params": {"client_assertion": "assertion-secret-4711"},
                               "store": {"file": {"path": "tokens"}}}},
        },
        cache_dir=str(tmp_path),
    )
    text = repr(config.profiles) + repr(config.servers) + repr(config.clients)
    for secret in ("header-secret", "client-secret", "password-4711", "assertion-secret"):
        assert secret not in text
    assert "idp.example" in text  # the repr still says what it is
