from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from makini_async import errors
from makini_async._wire.requests import format_when, list_params
from makini_async._wire.responses import error_from_response, parse_page, parse_retry_after


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_integer_roundtrip(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "INVALID_REQUEST", errors.BadRequestError),
        (400, "INVALID_PAGE_SIZE", errors.InvalidPageSizeError),
        (400, "VALIDATION_FAILED", errors.ValidationError),
        (401, "AUTHENTICATION_FAILED", errors.AuthenticationError),
        (401, "REAUTHORIZATION_REQUIRED", errors.ReauthorizationRequired),
        (403, "PERMISSION_DENIED", errors.PermissionDenied),
        (404, "NOT_FOUND", errors.NotFound),
        (405, "OPERATION_NOT_SUPPORTED", errors.OperationNotSupported),
        (409, "CONFLICT", errors.ConflictError),
        (429, "RATE_LIMIT_EXCEEDED", errors.RateLimitError),
        (500, "INTERNAL_ERROR", errors.ServerError),
        (502, "CONNECTED_SYSTEM_ERROR", errors.ConnectedSystemError),
        (503, "SERVICE_UNAVAILABLE", errors.ServiceUnavailable),
    ],
)
def test_every_contract_error_row_maps_to_its_class(status: int, code: str, cls: type) -> None:
    body = (
        b'{"error":{"code":"%s","type":"t","message":"m","request_id":"req_abc","details":{"max_page_size":100,"fields":{"title":["required"]}}}}'
        % code.encode()
    )
    err = error_from_response(status, CIMultiDict({"Retry-After": "3"}), body)
    assert type(err) is cls
    assert err.status == status
    assert err.code == code
    assert err.request_id == "req_abc"
    assert "req_abc" in str(err)
    assert err.retryable is (status in (429, 500, 502, 503))
    if isinstance(err, errors.RateLimitError):
        assert err.retry_after == 3.0
    if isinstance(err, errors.InvalidPageSizeError):
        assert err.max_page_size == 100
    if isinstance(err, errors.ValidationError):
        assert err.fields == {"title": ["required"]}


def test_error_without_json_body_uses_status_and_header_request_id() -> None:
    err = error_from_response(504, CIMultiDict({"X-Request-Id": "req_h"}), b"<html>gateway</html>")
    assert isinstance(err, errors.ServerError)
    assert err.retryable
    assert err.request_id == "req_h"
    assert "504" in str(err)


def test_parse_page_validates_shape() -> None:
    data, cursor, total = parse_page(
        b'{"data":[{"id":"a"}],"next_cursor":"c1","total_count":5}', request_id=None
    )
    assert data == [{"id": "a"}]
    assert cursor == "c1"
    assert total == 5
    assert parse_page(b'{"data":[],"next_cursor":null}', request_id=None) == ([], None, None)
    with pytest.raises(errors.MalformedResponse, match="req_x"):
        parse_page(b'{"data":[{"id":', request_id="req_x")
    with pytest.raises(errors.MalformedResponse):
        parse_page(b'{"items":[]}', request_id=None)
    with pytest.raises(errors.MalformedResponse):
        parse_page(b'{"data":[],"next_cursor":5}', request_id=None)


def test_format_when() -> None:
    assert format_when(dt.date(2024, 1, 2), name="x") == "2024-01-02"
    aware = dt.datetime(2024, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_when(aware, name="x") == "2024-01-01T00:00:00Z"
    assert format_when(dt.datetime(2024, 1, 1), name="x") == "2024-01-01T00:00:00Z"
    assert format_when("2024-01-01T00:00:00Z", name="x") == "2024-01-01T00:00:00Z"
    with pytest.raises(errors.UsageError, match="modified_after"):
        format_when("yesterday", name="modified_after")


def test_list_params() -> None:
    assert list_params(50, None, None, None) == {"page_size": "50"}
    assert list_params(5, "c", "2024-01-01", "2023-01-01") == {
        "page_size": "5",
        "cursor": "c",
        "modified_after": "2024-01-01",
        "created_after": "2023-01-01",
    }
