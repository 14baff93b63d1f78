"""The HTTP boundary under aioresponses: the default aiohttp transport, mocked answers.

A real :class:`MakiniPool` (and so a real ``ClientSession``) whose requests
aioresponses answers, through :func:`makini_async.testing.mock_aiohttp`. The
tests look only at what a caller sees: records, request IDs, typed errors,
retries and what went out on the wire.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from yarl import URL

from makini_async import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectedSystemError,
    ConnectionFailed,
    MakiniPool,
    NotFound,
    OperationNotSupported,
    PermissionDenied,
    RateLimitError,
    ReauthorizationRequired,
    RequestTimeout,
    ServerError,
    ServiceUnavailable,
    ValidationError,
    WorkOrder,
    set_testing,
)
from makini_async.testing import UnmatchedRequest, mock_aiohttp
from tests.unit.conftest import TOKEN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from aioresponses import aioresponses

    from makini_async import APIError, Connection, MakiniError

BASE = "https://api.makini.test"
API = BASE + "/api/v1"


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with mock_aiohttp() as m:
        yield m


@pytest.fixture
async def conn() -> AsyncIterator[Connection]:
    async with MakiniPool(base_url=BASE) as pool:
        yield pool.connection(TOKEN, name="acme")


def sent(mocked: aioresponses, method: str, url: str) -> list[Any]:
    """The calls aioresponses recorded for ``method url`` (query order does not matter)."""
    key = (method, URL(url).with_query(sorted(URL(url).query.items())))
    return mocked.requests.get(key, [])


def error_body(code: str, message: str = "no", request_id: str = "req_body") -> dict[str, Any]:
    return {"error": {"code": code, "type": "error", "message": message, "request_id": request_id}}


# -- successful answers ----------------------------------------------------------


async def test_json_body_becomes_a_typed_record(mocked: aioresponses, conn: Connection) -> None:
    mocked.get(
        f"{API}/work-orders/wo_1",
        payload={"data": {"id": "wo_1", "title": "Replace pump seal", "due_date": "2024-05-01"}},
        headers={"X-Request-Id": "req_1"},
    )
    order = await conn.get("work-orders", "wo_1")
    assert isinstance(order, WorkOrder)
    assert (order.id, order.title) == ("wo_1", "Replace pump seal")
    assert order.due_date == datetime.date(2024, 5, 1)
    (call,) = sent(mocked, "GET", f"{API}/work-orders/wo_1")
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_request_id_header_is_read_case_insensitively(
    mocked: aioresponses, conn: Connection
) -> None:
    mocked.get(
        f"{API}/work-orders?page_size=5",
        payload={"data": [{"id": "wo_1"}], "next_cursor": None, "total_count": 1},
        headers={"x-request-id": "req_lower"},
    )
    (page,) = [p async for p in conn.list("work-orders", page_size=5).pages()]
    assert page.request_id == "req_lower"
    assert page.total_count == 1


async def test_a_body_larger_than_the_reader_buffer_arrives_whole(
    mocked: aioresponses, conn: Connection
) -> None:
    # Well above 128 KiB, where aioresponses' own reader breaks on aiohttp 3.14.
    records = [{"id": f"wo_{i:05d}", "description": "x" * 200} for i in range(2000)]
    body = orjson.dumps({"data": records, "next_cursor": None})
    assert len(body) > 4 * 2**16
    mocked.get(f"{API}/work-orders?page_size=2000", body=body)
    got = [r["id"] async for r in conn.list("work-orders", page_size=2000, as_dicts=True)]
    assert got == [r["id"] for r in records]


async def test_a_write_sends_its_json_body_and_idempotency_key(
    mocked: aioresponses, conn: Connection
) -> None:
    mocked.post(
        f"{API}/work-orders",
        status=201,
        payload={"data": {"id": "wo_9", "title": "Inspect belt"}},
        headers={"X-Request-Id": "req_create"},
    )
    created = await conn.create("work-orders", {"title": "Inspect belt"}, idempotency_key="k-1")
    assert created.id == "wo_9"
    (call,) = sent(mocked, "POST", f"{API}/work-orders")
    assert orjson.loads(call.kwargs["data"]) == {"title": "Inspect belt"}
    assert call.kwargs["headers"]["Idempotency-Key"] == "k-1"
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


# -- pagination ------------------------------------------------------------------


async def test_pagination_follows_the_cursor_over_two_mocked_pages(
    mocked: aioresponses, conn: Connection
) -> None:
    # aioresponses compares full URLs, query included (in any order).
    mocked.get(
        f"{API}/work-orders?page_size=2&modified_after=2024-01-01",
        payload={"data": [{"id": "wo_1"}, {"id": "wo_2"}], "next_cursor": "c2", "total_count": 3},
        headers={"X-Request-Id": "req_p1"},
    )
    mocked.get(
        f"{API}/work-orders?page_size=2&modified_after=2024-01-01&cursor=c2",
        payload={"data": [{"id": "wo_3"}], "next_cursor": None, "total_count": 3},
        headers={"X-Request-Id": "req_p2"},
    )
    listing = conn.list("work-orders", page_size=2, modified_after="2024-01-01")
    pages = [p async for p in listing.pages()]
    assert [[r.id for r in p.records] for p in pages] == [["wo_1", "wo_2"], ["wo_3"]]
    assert [(p.cursor, p.next_cursor, p.request_id) for p in pages] == [
        (None, "c2", "req_p1"),
        ("c2", None, "req_p2"),
    ]


async def test_a_pattern_with_repeat_answers_every_listing(
    mocked: aioresponses, conn: Connection
) -> None:
    mocked.get(
        re.compile(rf"^{re.escape(API)}/assets\?.*$"),
        payload={"data": [{"id": "as_1"}], "next_cursor": None},
        repeat=True,
    )
    for size in (10, 20, 30):
        assert [a.id async for a in conn.list("assets", page_size=size)] == ["as_1"]
    assert conn.stats.requests == 3


# -- error statuses ----------------------------------------------------------------

ERRORS = [
    (400, "INVALID_REQUEST", BadRequestError),
    (400, "VALIDATION_FAILED", ValidationError),
    (401, "AUTHENTICATION_FAILED", AuthenticationError),
    (401, "REAUTHORIZATION_REQUIRED", ReauthorizationRequired),
    (403, "PERMISSION_DENIED", PermissionDenied),
    (404, "NOT_FOUND", NotFound),
    (405, "OPERATION_NOT_SUPPORTED", OperationNotSupported),
    (409, "CONFLICT", ConflictError),
    (429, "RATE_LIMIT_EXCEEDED", RateLimitError),
    (500, "INTERNAL_ERROR", ServerError),
    (502, "CONNECTED_SYSTEM_ERROR", ConnectedSystemError),
    (503, "SERVICE_UNAVAILABLE", ServiceUnavailable),
]


@pytest.mark.parametrize(("status", "code", "expected"), ERRORS, ids=[e[1] for e in ERRORS])
async def test_each_error_status_maps_to_its_error(
    mocked: aioresponses, conn: Connection, status: int, code: str, expected: type[APIError]
) -> None:
    set_testing(True, attempts=1)
    mocked.get(
        f"{API}/work-orders/wo_1",
        status=status,
        payload=error_body(code, message="explained", request_id="req_err"),
        headers={"X-Request-Id": "req_header"},
    )
    with pytest.raises(expected) as caught:
        await conn.get("work-orders", "wo_1")
    err = caught.value
    assert type(err) is expected
    assert (err.status, err.code, err.message) == (status, code, "explained")
    assert err.request_id == "req_err"
    assert err.connection == "acme"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, NotFound), (429, RateLimitError), (502, ConnectedSystemError), (504, ServerError)],
)
async def test_an_error_status_without_a_json_body_maps_by_status(
    mocked: aioresponses, conn: Connection, status: int, expected: type[APIError]
) -> None:
    set_testing(True, attempts=1)
    mocked.get(
        f"{API}/work-orders/wo_1",
        status=status,
        body="upstream proxy says no",
        content_type="text/plain",
        headers={"X-Request-Id": "req_plain"},
    )
    with pytest.raises(expected) as caught:
        await conn.get("work-orders", "wo_1")
    assert caught.value.status == status
    assert caught.value.request_id == "req_plain"
    assert "upstream proxy says no" in caught.value.message


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "RATE_LIMIT_EXCEEDED", RateLimitError),
        (503, "SERVICE_UNAVAILABLE", ServiceUnavailable),
    ],
)
async def test_retry_after_is_read_from_the_mocked_header(
    mocked: aioresponses, conn: Connection, status: int, code: str, expected: type[APIError]
) -> None:
    set_testing(True, attempts=1)
    mocked.get(
        f"{API}/work-orders/wo_1",
        status=status,
        payload=error_body(code),
        headers={"Retry-After": "7"},
    )
    with pytest.raises(expected) as caught:
        await conn.get("work-orders", "wo_1")
    assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]


# -- retries ------------------------------------------------------------------------


async def test_a_429_with_retry_after_is_retried_then_succeeds(
    mocked: aioresponses, conn: Connection
) -> None:
    set_testing(True)  # zero waits, Retry-After included
    url = f"{API}/work-orders/wo_1"
    mocked.get(
        url, status=429, payload=error_body("RATE_LIMIT_EXCEEDED"), headers={"Retry-After": "30"}
    )
    mocked.get(url, payload={"data": {"id": "wo_1"}})
    order = await conn.get("work-orders", "wo_1")
    assert order.id == "wo_1"
    assert len(sent(mocked, "GET", url)) == 2
    assert (conn.stats.rate_limited, conn.stats.retries) == (1, 1)


async def test_503s_are_retried_until_an_answer(mocked: aioresponses, conn: Connection) -> None:
    set_testing(True)
    url = f"{API}/work-orders?page_size=10"
    for _ in range(2):
        mocked.get(url, status=503, payload=error_body("SERVICE_UNAVAILABLE"))
    mocked.get(url, payload={"data": [{"id": "wo_1"}], "next_cursor": None})
    assert [r.id async for r in conn.list("work-orders", page_size=10)] == ["wo_1"]
    assert conn.stats.retries == 2


async def test_a_non_retryable_error_is_not_retried(mocked: aioresponses, conn: Connection) -> None:
    set_testing(True)
    url = f"{API}/work-orders/wo_1"
    mocked.get(url, status=404, payload=error_body("NOT_FOUND"), repeat=True)
    with pytest.raises(NotFound):
        await conn.get("work-orders", "wo_1")
    assert len(sent(mocked, "GET", url)) == 1


# -- transport exceptions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (aiohttp.ClientConnectionError("connection reset by peer"), ConnectionFailed),
        (aiohttp.ServerDisconnectedError(), ConnectionFailed),
        (aiohttp.ClientPayloadError("response payload is not completed"), ConnectionFailed),
        (asyncio.TimeoutError(), RequestTimeout),
    ],
    ids=["connection-error", "server-disconnected", "payload-error", "timeout"],
)
async def test_raised_exceptions_become_makini_errors(
    mocked: aioresponses, conn: Connection, exception: Exception, expected: type[MakiniError]
) -> None:
    set_testing(True, attempts=1)
    mocked.get(f"{API}/work-orders/wo_1", exception=exception)
    with pytest.raises(expected) as caught:
        await conn.get("work-orders", "wo_1")
    assert type(caught.value) is expected
    assert caught.value.connection == "acme"


async def test_aioresponses_timeout_flag_is_a_request_timeout(
    mocked: aioresponses, conn: Connection
) -> None:
    set_testing(True, attempts=1)
    mocked.get(f"{API}/work-orders/wo_1", timeout=True)
    with pytest.raises(RequestTimeout):
        await conn.get("work-orders", "wo_1")


async def test_an_unmocked_url_fails_at_once_naming_it(
    mocked: aioresponses, conn: Connection
) -> None:
    # The shim says which request nothing was registered for, and nothing retries it.
    with pytest.raises(UnmatchedRequest, match="work-orders/wo_unknown"):
        await conn.get("work-orders", "wo_unknown")
    assert conn.stats.requests == 1


async def test_a_dropped_connection_is_retried(mocked: aioresponses, conn: Connection) -> None:
    set_testing(True)
    url = f"{API}/work-orders/wo_1"
    mocked.get(url, exception=aiohttp.ServerDisconnectedError())
    mocked.get(url, payload={"data": {"id": "wo_1"}})
    assert (await conn.get("work-orders", "wo_1")).id == "wo_1"
    assert conn.stats.retries == 1


async def test_a_timed_out_page_is_retried_at_half_the_size(
    mocked: aioresponses, conn: Connection
) -> None:
    set_testing(True)
    mocked.get(f"{API}/work-orders?page_size=50", exception=asyncio.TimeoutError())
    mocked.get(
        f"{API}/work-orders?page_size=25",
        payload={"data": [{"id": "wo_1"}], "next_cursor": None},
    )
    (page,) = [p async for p in conn.list("work-orders", page_size=50).pages()]
    assert page.page_size == 25
    assert [r.id for r in page.records] == ["wo_1"]
