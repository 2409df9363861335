"""``tokenflow token ...`` is parsed by a parser holding only the ``token`` command (a renewal
need not build the other eight); whatever follows ``token``, the outcome is the full parser's."""

from __future__ import annotations

import contextlib
import io

import pytest

from tokenflow.cli.app import _parser

ARGVS = [
    ["token"], ["token", "prod"], ["token", "prod", "--force-refresh"],
    ["token", "-f", "json", "prod"], ["token", "--format=env"], ["token", "--force", "prod"],
    ["token", "-c", "a.yaml", "--config", "b", "prod", "-vv"], ["token", "validate"],
    ["token", "-f", "bogus"], ["token", "-f"], ["token", "prod", "extra"], ["token", "--bogus"],
    ["token", "--version"], ["token", "--help"], ["token", "-h"], ["token", "--", "prod"],
]


def outcome(only: str | None, argv: list[str]) -> tuple[object, str, str]:
    """The namespace (or the exit code), stdout and stderr of parsing *argv*."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(_parser(only).parse_args(argv))
        except SystemExit as exit_:
            result = ("exit", exit_.code)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_token_parser_parses_as_the_full_parser(argv: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # the same help layout for both
    assert outcome("token", argv) == outcome(None, argv)


def test_the_full_parser_still_has_every_command() -> None:
    result, _, err = outcome("token", ["validate"])
    assert result == ("exit", 2) and "invalid choice: 'validate'" in err
    assert outcome(None, ["validate", "x.yaml"])[0] == {
        "config": None, "verbose": 0, "command": "validate", "paths": ["x.yaml"], "format": "table"}
