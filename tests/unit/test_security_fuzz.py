"""Fuzzing the pure parsers: any input gives a result or a MakiniError, quickly."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makini_async import errors
from makini_async._wire.responses import decode_json, error_from_response, parse_page, parse_single
from makini_async.status import ConnectionInfo, SyncStatus
from makini_async.webhooks import parse_event, verify

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "data", "next_cursor", "total_count", "error", "code", "message", "request_id", "details",
    "id", "type", "status", "system", "created_at", "connection_id", "entities",
    "last_sync_at", "last_synced_at", "reauthorization_required",
]  # fmt: skip
# Objects built from the contract's own field names, holding values of any type.
shaped = st.recursive(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    lambda inner: st.dictionaries(st.sampled_from(FIELDS), inner | json_values, max_size=4),
    max_leaves=10,
)


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


hostile_bodies = st.one_of(
    st.binary(max_size=300),
    shaped.map(_dump),
    json_values.map(_dump),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # past orjson's depth limit
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(20, 400).map(lambda n: b'{"data": [], "total_count": 1' + b"0" * n + b"}"),
    st.integers(20, 400).map(lambda n: b'{"data": {"id": 1e' + str(n).encode() + b"}}"),
    st.sampled_from([b"\xef\xbb\xbf{}", b"\x00", b"NaN", b"Infinity", b'"\\ud800"', b"1e999"]),
)


def _ok_or_makini(fn: Any, *args: Any, **kwargs: Any) -> None:
    # Anything but a MakiniError escapes and fails the test.
    with contextlib.suppress(errors.MakiniError):
        fn(*args, **kwargs)


@FAST
@given(body=hostile_bodies)
def test_page_and_single_parsers(body: bytes) -> None:
    _ok_or_makini(parse_page, body, request_id="req_1")
    _ok_or_makini(parse_single, body, request_id=None)
    _ok_or_makini(decode_json, body, request_id=None)


@FAST
@given(
    status=st.integers(100, 999),
    body=hostile_bodies,
    request_id=st.none() | st.text(max_size=50),
    retry_after=st.none() | st.text(max_size=40),
)
def test_error_from_response_always_builds_an_api_error(
    status: int, body: bytes, request_id: str | None, retry_after: str | None
) -> None:
    headers = {}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    exc = error_from_response(status, headers, body, token="tok_fuzz")
    assert isinstance(exc, errors.APIError)
    str(exc).encode("utf-8")
    repr(exc).encode("utf-8")


@FAST
@given(
    retry_after=st.sampled_from(
        ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "1e999", "-0", "nan"]
    )
    | st.text(max_size=40)
)
def test_retry_after_never_raises(retry_after: str) -> None:
    exc = error_from_response(429, {"Retry-After": retry_after}, b"")
    assert isinstance(exc, errors.RateLimitError)


@FAST
@given(data=shaped | json_values)
def test_status_answers(data: Any) -> None:
    _ok_or_makini(ConnectionInfo.from_data, data, "req_1")
    _ok_or_makini(SyncStatus.from_data, data, None)
    _ok_or_makini(SyncStatus.from_data, {"entities": data}, None)
    _ok_or_makini(SyncStatus.from_data, {"entities": {"assets": data}}, None)


@FAST
@given(body=hostile_bodies)
def test_webhook_events(body: bytes) -> None:
    _ok_or_makini(parse_event, body)


@FAST
@given(header=st.text(max_size=200), body=st.binary(max_size=100))
def test_webhook_headers(header: str, body: bytes) -> None:
    _ok_or_makini(verify, "whsec", body, header, now=1_700_000_000)
