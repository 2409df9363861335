"""Property tests: the loader, the token response parser and the scrubber never fail unexpectedly.

* any text, or YAML built from random (and sometimes nearly valid) data, loads to a ``Config``
  or raises ``ConfigError``, never anything else;
* any status and body give a ``Token`` or a ``TokenRequestError``, and a ``Token`` always has a
  non-empty access token and ``expires_at > now``;
* ``scrub`` never raises and removes a remembered secret from any text that contains it.

Example counts are kept modest (about 1,800 examples in all) so the file runs in well under 30 s
on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import math
import re
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tokenflow import load_config, redact
from tokenflow.base.tokensyntax import b64token_problem
from tokenflow.config.model import Config
from tokenflow.errors import ConfigError, TokenRequestError
from tokenflow.plugins.host import PluginHost, build_plugin_host
from tokenflow.redact import MASK, printable, remember_secret, scrub
from tokenflow.tokens import MAX_SANE_LIFETIME, Token, parse_token_response


def fuzz(max_examples: int) -> settings:
    """Settings for one property: its example count, no deadline (the machine may be loaded)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def restore_remembered_secrets() -> Iterator[None]:
    """Random strings remembered as secrets here must not scrub other tests' messages.

    Snapshots every container, flag and compiled pattern of :mod:`tokenflow.redact` and puts
    them back afterwards (whatever the module's internal layout).
    """
    saved: dict[str, Any] = {}
    for name, value in vars(redact).items():
        if name.startswith("_") and not name.startswith("__") and isinstance(
            value, set | dict | list | re.Pattern | bool | type(None)
        ):
            saved[name] = value.copy() if isinstance(value, set | dict | list) else value
    yield
    for name, value in saved.items():
        current = getattr(redact, name)
        if isinstance(value, set | dict | list) and type(current) is type(value):
            current.clear()
            if isinstance(current, list):
                current.extend(value)
            else:
                current.update(value)
        else:
            setattr(redact, name, value)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return build_plugin_host()


# -- (a) the YAML loader ------------------------------------------------------------------------
def _load(text: str, host: PluginHost) -> Config | None:
    """Load *text* as a config file; ``None`` for a ConfigError. Any other exception fails."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenflow.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        (Path(tmp) / "ca.pem").write_text("not a certificate\n")
        try:
            config = load_config(path, plugins=host, cache_dir=Path(tmp) / "cache")
        except ConfigError as exc:
            assert exc.issues, "a ConfigError must carry at least one issue"
            for issue in exc.issues:
                assert issue.file == str(path)
                assert issue.line == 0 or issue.column >= 1  # 1-based, 0 only when unknown
                if issue.line:
                    assert str(issue).startswith(f"{path}:{issue.line}:{issue.column}: ")
            return None
    assert isinstance(config.config, Config)
    for profile in config.profiles.values():  # what the loader guarantees to the engine
        assert profile.grant in ("password", "client_credentials")
        if profile.grant == "password":
            assert profile.username is not None and profile.grant_options.get("password") is not None
        assert math.isfinite(profile.refresh_margin) and profile.refresh_margin >= 0
        assert math.isfinite(profile.default_lifetime) and profile.default_lifetime > 0
        assert math.isfinite(profile.server.timeout) and profile.server.timeout > 0
        assert profile.store.name in host.stores
        assert profile.server.dialect in host.dialects
    return config


YAML_ALPHABET = st.sampled_from([*"abcxyz019:-{}[]\n #&*!|>'\"%@`,?$.<=~\t",
    "version: 1\n", "profiles:\n", "  p:\n", "    server: s\n", "servers:\n", "  s:\n",
    "    token_url: https://h/t\n", "${X}", "$$", "${", "!!binary ", "!!python/name:os.system ",
    "<<: ", "&a ", "*a", "--- ", "\t", "\ufeff", "é", "\x00", "\x85", "\ud800",
])


@fuzz(200)
@given(text=st.text(max_size=300))
def test_loader_any_text(text: str, host: PluginHost) -> None:
    _load(text, host)


@fuzz(200)
@given(parts=st.lists(YAML_ALPHABET, max_size=60))
def test_loader_yaml_like_text(parts: list[str], host: PluginHost) -> None:
    _load("".join(parts), host)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["${TF_FUZZ_UNSET}", "${HOME:-x}", "$$", "${", "1e400", ".nan", "0x10"]),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from(["s", "t", "c", "d", "p", "q", "base", "bad name", "${TF_FUZZ_UNSET}", "", "x" * 101])
SECRETS = st.one_of(
    st.sampled_from([
        "literal", "", {"env": "TF_FUZZ_VAR"}, {"env": "${TF_FUZZ_UNSET:-NAME}"}, {"env": "bad name"},
        {"file": "pw.txt"}, {"file": ""}, {"command": ["echo", "x"]}, {"command": "echo"},
        {"command": []}, {"keyring": {"service": "s", "username": "u"}}, {"keyring": {}},
        {"keyring": "s"}, {"prompt": "Password"}, {"vault": "x"}, {"env": "A", "file": "b"}, {},
        None, 5, [],
    ]),
    JUNK,
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "token_url": st.sampled_from([
        "https://idp.example/token", "http://127.0.0.1:9/token", "http://localhost/t",
        "http://[::1]:8/t", "http://example.com/token", "ftp://x", "https://", "",
        "${TF_FUZZ_URL:-https://idp.example}/token", "${TF_FUZZ_UNSET}",
    ]),
    "dialect": st.sampled_from(["rfc6749", "teamserver", "nope", ""]),
    "client_auth": st.sampled_from(["basic", "body", "query"]),
    "revoke_url": st.sampled_from(["https://idp.example/revoke/{token}", "http://example.com/r", "x"]),
    "timeout": st.sampled_from([1, 0.5, 0, -1, 600, 601, "10", math.nan, math.inf]),
    "retries": st.sampled_from([0, 2, 10, 11, -1, 1.5, True]),
    "verify": st.sampled_from([True, False, "ca.pem", "missing.pem", "/nonexistent/ca.pem", ""]),
    "allow_insecure_http": st.sampled_from([True, False, "yes", None]),
    "headers": st.sampled_from([{"X-A": "b"}, {"X-A": 1}, {}, []]),
    "client_id": st.sampled_from(["app", "", 5, "${TF_FUZZ_UNSET:-app}"]),
    "client_secret": SECRETS,
    "extends": NAMES,
    "abstract": st.sampled_from([True, False, "true", None]),
    "description": st.text(max_size=10),
    "server": NAMES,
    "client": NAMES,
    "grant": st.sampled_from(["password", "client_credentials", "implicit", "", 1]),
    "username": SECRETS,
    "password": SECRETS,
    "scope": st.sampled_from(["read write", ["a", "b"], ["a b"], [], "", 5, [1]]),
    "store": st.sampled_from([
        "file", "memory", "keyring", "nostore", "", {"file": {"path": "tokens"}},
        {"file": {"bogus": 1}}, {"file": {"lock_timeout": 0}}, {"memory": None}, {"memory": {"x": 1}},
        {"keyring": {}}, {"nostore": {}}, {"file": "x"}, {"a": 1, "b": 2}, {}, None, 3,
    ]),
    "refresh_margin": st.sampled_from([0, 60, -1, "60", math.nan, math.inf]),
    "default_lifetime": st.sampled_from([900, 0, -5, math.nan, math.inf, None]),
    "params": st.sampled_from([{"audience": "api"}, {"a": 1}, [], None]),
}
SERVER_KEYS = ["token_url", "dialect", "client_auth", "revoke_url", "timeout", "retries", "verify",
               "allow_insecure_http", "headers", "bogus"]
CLIENT_KEYS = ["client_id", "client_secret", "bogus"]
PROFILE_KEYS = ["extends", "abstract", "description", "server", "client", "grant", "username",
                "password", "scope", "store", "refresh_margin", "default_lifetime", "params", "bogus"]


def _entries(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    def build(chosen: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({
            k: (PLAUSIBLE.get(k, JUNK) | JUNK) if k != "bogus" else JUNK for k in chosen
        })

    return st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)).flatmap(build)


def _section(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.dictionaries(NAMES, _entries(keys) | JUNK, max_size=4) | JUNK


NEARLY_VALID = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, "1", None])},
    optional={
        "servers": _section(SERVER_KEYS),
        "clients": _section(CLIENT_KEYS),
        "profiles": _section(PROFILE_KEYS),
        "extra": JUNK,
    },
)


DELETE = object()
SECTION_KEYS = {"servers": SERVER_KEYS, "clients": CLIENT_KEYS, "profiles": PROFILE_KEYS}
SECTION_NAMES = {"servers": ["s", "t", "u"], "clients": ["c", "d"],
                 "profiles": ["base", "p", "q", "r", "bad name"]}


def _valid_config() -> dict[str, Any]:
    return {
        "version": 1,
        "servers": {
            "s": {"token_url": "https://idp.example/api/oauth/token", "dialect": "teamserver",
                  "revoke_url": "https://idp.example/api/revoketoken/{token}", "retries": 0},
            "t": {"token_url": "http://127.0.0.1:8080/token", "client_auth": "body", "timeout": 5},
        },
        "clients": {"c": {"client_id": "app", "client_secret": {"env": "TF_FUZZ_SECRET"}},
                    "d": {"client_id": "public"}},
        "profiles": {
            "base": {"abstract": True, "client": "c", "grant": "password", "username": "alice",
                     "password": {"env": "TF_FUZZ_PASSWORD"}, "scope": "read write"},
            "p": {"extends": "base", "server": "s", "store": "memory"},
            "q": {"extends": "p", "scope": ["a", "b"], "store": {"file": {"lock_timeout": 5}}},
            "r": {"server": "t", "client": "d", "grant": "client_credentials",
                  "default_lifetime": 900, "params": {"audience": "api"}},
        },
    }


def _mutation(section: str) -> st.SearchStrategy[tuple[str, str, str, Any]]:
    keys = SECTION_KEYS[section]
    return st.tuples(
        st.just(section), st.sampled_from(SECTION_NAMES[section]), st.sampled_from(keys),
    ).flatmap(lambda t: st.tuples(
        st.just(t[0]), st.just(t[1]), st.just(t[2]),
        st.just(DELETE) | PLAUSIBLE.get(t[2], JUNK) | JUNK,
    ))


def _apply(mutations: list[tuple[str, str, str, Any]]) -> dict[str, Any]:
    data = _valid_config()
    for section, name, key, value in mutations:
        entry = data[section].setdefault(name, {})
        if value is DELETE:
            entry.pop(key, None)
        else:
            entry[key] = value
    return data


MUTATED_VALID = st.lists(
    st.sampled_from(list(SECTION_KEYS)).flatmap(_mutation), max_size=3
).map(_apply)


@fuzz(300)
@given(data=st.one_of(MUTATED_VALID, NEARLY_VALID, JUNK), duplicate=st.integers(0, 200),
       cut=st.integers(0, 5000), flow=st.booleans())
def test_loader_structured_yaml(data: Any, duplicate: int, cut: int, flow: bool,
                                host: PluginHost) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    lines = text.splitlines(keepends=True)
    if duplicate < len(lines):  # a repeated line makes duplicate keys or broken indentation
        lines.insert(duplicate, lines[duplicate])
    text = "".join(lines)
    if cut < len(text) and cut % 3 == 0:  # sometimes a truncated file
        text = text[:cut]
    _load(text, host)


@fuzz(60)
@given(margin=st.integers(0, 1000), lifetime=st.integers(1, 10**6),
       scope=st.lists(st.from_regex(r"\A[a-z.:]{1,8}\Z"), max_size=3))
def test_loader_valid_profile_always_loads(margin: int, lifetime: int, scope: list[str],
                                           host: PluginHost) -> None:
    """The positive side: a valid document built the same way never fails."""
    data = {
        "version": 1,
        "servers": {"s": {"token_url": "https://idp.example/token", "dialect": "teamserver"}},
        "clients": {"c": {"client_id": "app", "client_secret": {"env": "TF_FUZZ_SECRET"}}},
        "profiles": {"p": {"server": "s", "client": "c", "grant": "password", "username": "u",
                           "password": {"file": "pw.txt"}, "scope": scope,
                           "refresh_margin": margin, "default_lifetime": lifetime}},
    }
    config = _load(yaml.safe_dump(data), host)
    assert config is not None
    profile = config.profiles["p"]
    assert profile.refresh_margin == margin and profile.default_lifetime == lifetime
    assert profile.scope == (" ".join(scope) or None)


# -- (b) the token response parser --------------------------------------------------------------
FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(), st.text(max_size=30),
    st.sampled_from(["3600", " 60 ", "-1", "0", "1e9", "nan", "inf", "Bearer", "bearer", "",
                     "eyJhbGciOiJub25lIn0.eyJleHAiOjE4MDAwMDM2MDB9.", "a.b.c"]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
TOKEN_FIELDS = ["access_token", "token_type", "expires_in", "refresh_token", "scope", "error",
                "error_description"]


def _check_parse(status: int, body: bytes, default_lifetime: float = 3600.0,
                 date_header: str | None = None) -> Token | None:
    try:
        token = parse_token_response(status, body, now=NOW, default_lifetime=default_lifetime,
                                     content_type="application/json", date_header=date_header)
    except TokenRequestError as exc:
        assert str(exc)
        return None
    assert isinstance(token, Token)
    assert 200 <= status < 300
    assert isinstance(token.access_token, str) and token.access_token
    assert token.expires_at > NOW
    assert token.expires_at - NOW <= max(MAX_SANE_LIFETIME, default_lifetime)
    assert token.token_type
    return token


@fuzz(200)
@given(status=st.integers(0, 999), body=st.binary(max_size=300))
def test_parser_any_status_and_bytes(status: int, body: bytes) -> None:
    _check_parse(status, body)


@fuzz(300)
@given(
    status=st.sampled_from([200, 200, 201, 204, 299, 400, 401, 500]),
    fields=st.dictionaries(st.sampled_from(TOKEN_FIELDS), FIELD_VALUES, max_size=7),
    extra=st.dictionaries(st.text(max_size=6), FIELD_VALUES, max_size=2),
    default_lifetime=st.sampled_from([3600.0, 1.0, 900.0]),
    date_header=st.sampled_from([None, "", "garbage", "Thu, 01 Jan 1970 00:00:00 GMT",
                                 "Fri, 15 Jan 2027 08:00:00 GMT", "Mon, 99 Foo 9999 99:99:99 GMT"]),
)
def test_parser_json_objects(status: int, fields: dict[str, Any], extra: dict[str, Any],
                             default_lifetime: float, date_header: str | None) -> None:
    body = json.dumps({**extra, **fields}).encode()
    token = _check_parse(status, body, default_lifetime, date_header)
    if token is not None:
        assert fields.get("access_token") == token.access_token
        assert "error" not in fields
    elif 200 <= status < 300 and "error" not in fields:
        # refused only for a missing access_token or one outside the RFC 6750 syntax, a
        # token_type other than Bearer, or a scope with control characters (issue 9)
        access, token_type, scope = (fields.get(k) for k in ("access_token", "token_type", "scope"))
        scope = " ".join(map(str, scope)) if isinstance(scope, list) else scope
        assert (not isinstance(access, str) or b64token_problem(access) is not None
                or (token_type not in (None, "")
                    and not (isinstance(token_type, str) and token_type.lower() == "bearer"))
                or (isinstance(scope, str) and printable(scope) != scope))


@fuzz(100)
@given(access=st.text(alphabet=string.ascii_letters + string.digits + "-._~+/", min_size=1,
                     max_size=20), expires_in=FIELD_VALUES)
def test_parser_expiry_always_in_the_future(access: str, expires_in: Any) -> None:
    body = json.dumps({"access_token": access, "token_type": "bearer", "expires_in": expires_in})
    token = _check_parse(200, body.encode())
    assert token is not None and token.token_type == "Bearer"


# -- (c) the scrubber ---------------------------------------------------------------------------
@fuzz(150)
@given(text=st.text(max_size=200))
def test_scrub_never_raises(text: str) -> None:
    cleaned = scrub(text)
    assert isinstance(cleaned, str)
    assert cleaned == text or MASK in cleaned  # scrubbing only ever replaces with the mask


SECRET_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=4, max_size=24
)


@fuzz(200)
@given(secret=SECRET_TEXT | st.text(alphabet="*x=&% ", min_size=4, max_size=8),
       before=st.text(max_size=40) | st.sampled_from(["*", "x", "password=", "Bearer ", "&token="]),
       after=st.text(max_size=40) | st.sampled_from(["*", "***", "&x=1"]),
       repeat=st.integers(1, 3))
# secrets that contain the mask itself: a replacement must not re-form them
@example(secret="****", before="*", after="", repeat=1)
@example(secret="x***", before="x", after="", repeat=1)
@example(secret="d=***", before="password=", after="", repeat=1)
def test_scrub_removes_remembered_secret(secret: str, before: str, after: str, repeat: int) -> None:
    assume(len(secret) >= 4)
    remember_secret(secret)
    text = before + (secret + after) * repeat
    cleaned = scrub(text)
    assert secret not in cleaned
    assert MASK in cleaned


@fuzz(100)
@given(secret=st.from_regex(r"\A[A-Za-z0-9!#%&()*+/:;<=>?@^_{|}~ .-]{4,24}\Z"),
       template=st.sampled_from([
           "GET /api/oauth/token?grant_type=password&username=alice&password={q} HTTP/1.1",
           "grant_type=password&password={q}&client_id=x",
           '{{"error_description": "bad token {s}"}}',
           "Authorization: Bearer {s}",
           "refused: {s}",
       ]))
def test_scrub_removes_remembered_secret_in_requests(secret: str, template: str) -> None:
    """A remembered secret is removed also in the URL-encoded forms requests carry."""
    from urllib.parse import quote, quote_plus

    remember_secret(secret)
    for encoded in {quote(secret, safe=""), quote_plus(secret)}:
        cleaned = scrub(template.format(q=encoded, s=secret))
        assert secret not in cleaned
        assert encoded not in cleaned or len(encoded) < 4


CANARY = "canary-secret-7f3a"


def test_isolation_part_1_remembers_a_canary() -> None:
    remember_secret(CANARY)
    assert scrub(f"x {CANARY} y") == f"x {MASK} y"


def test_isolation_part_2_the_canary_is_forgotten() -> None:
    """The fixture put the remembered set back, so this module does not scrub other tests."""
    assert scrub(f"x {CANARY} y") == f"x {CANARY} y"


# -- the form encoder of token requests -----------------------------------------------------------
@fuzz(300)
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=5))
@example({"grant_type": "refresh_token", "refresh_token": "a-b_c.d~e"})
@example({"scope": "read write", "redirect_uri": "http://127.0.0.1:8080/cb?x=1&y=é"})
def test_form_urlencode_gives_urlencodes_bytes(fields: dict[str, str]) -> None:
    from urllib.parse import urlencode

    from tokenflow.base.oauthforms import form_urlencode

    assert form_urlencode(fields) == urlencode(fields)


def test_form_urlencode_takes_what_urlencode_takes() -> None:
    """A grant plugin may pass a number or None: encoded as urlencode would, not a TypeError."""
    from urllib.parse import urlencode

    from tokenflow.base.oauthforms import form_urlencode

    fields = {"grant_type": "urn:x", "expires_in": 3600, "hint": None}
    assert form_urlencode(fields) == urlencode(fields)  # type: ignore[arg-type]
