"""The U+0000 rule every sink follows: replaced by U+FFFD wherever it appears."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from makini_async.sinks._nul import REPLACEMENT, has_nul_escape, without_nul

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_nul_is_replaced_in_values_keys_and_nested_lists() -> None:
    record = {"id": "wo\x001", "na\x00me": ["a\x00", {"deep\x00": "x\x00y"}], "n": 3}

    cleaned = without_nul(record)

    assert cleaned == {
        "id": f"wo{REPLACEMENT}1",
        f"na{REPLACEMENT}me": [f"a{REPLACEMENT}", {f"deep{REPLACEMENT}": f"x{REPLACEMENT}y"}],
        "n": 3,
    }
    assert "\x00" in record["id"]  # the caller's record is not changed


@given(json_values)
def test_no_nul_survives_and_text_without_one_is_unchanged(value: object) -> None:
    cleaned = without_nul(value)
    encoded = orjson.dumps(cleaned)

    assert not has_nul_escape(encoded.replace(b"\\\\", b""))
    if not has_nul_escape(orjson.dumps(value)):
        assert cleaned == value


def test_the_escape_check_sees_what_orjson_writes() -> None:
    assert has_nul_escape(orjson.dumps({"a": "x\x00"}))
    assert has_nul_escape(orjson.dumps({"a": "x\x00"}).decode())
    assert not has_nul_escape(orjson.dumps({"a": "x\u0001"}))
