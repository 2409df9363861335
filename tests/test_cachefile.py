"""The fast path's JSON and SHA-256 shortcuts give exactly what ``json`` and ``hashlib`` give."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenflow.base import cachefile

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_loads_and_dumps_agree_with_json(value: Any) -> None:
    text = json.dumps(value, indent=1)
    assert cachefile.loads(text.encode()) == json.loads(text)
    assert cachefile.dumps_canonical(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_loads_fails_like_json_on_any_bytes(raw: bytes) -> None:
    try:
        expected: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            cachefile.loads(raw)
    else:
        assert cachefile.loads(raw) == expected


@given(st.binary(max_size=300))
def test_sha256_is_hashlibs(data: bytes) -> None:
    assert cachefile.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_encode_decode_round_trip_and_checksum() -> None:
    token = {"access_token": "a", "token_type": "Bearer", "expires_at": 2.5, "extra": {"é": [1]}}
    raw = cachefile.encode(token)
    assert cachefile.decode(raw) == token
    with pytest.raises(cachefile.CorruptEntry, match="checksum"):
        cachefile.decode(raw.replace(b'"a"', b'"b"'))
