"""A user's own service, tested with aioresponses the way a user would write it.

Only public names are used: the service function stands for code in the
user's package, and the tests mock the HTTP calls makini_async makes for it.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING

import pytest

from makini_async import AuthenticationError, MakiniPool, WorkOrder, set_testing
from makini_async.testing import mock_aiohttp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from aioresponses import aioresponses

# -- the user's code ------------------------------------------------------------------


async def overdue_work_orders(
    pool: MakiniPool, token: str, *, today: datetime.date
) -> list[WorkOrder]:
    """This customer's open work orders past their due date, most overdue first."""
    conn = pool.connection(token, name="plant-7")
    overdue = [
        order
        async for order in conn.list("work-orders", modified_after="2024-01-01")
        if order.status != "closed" and order.due_date is not None and order.due_date < today
    ]
    return sorted(overdue, key=lambda order: order.due_date or today)


# -- the user's tests -------------------------------------------------------------------

WORK_ORDERS = re.compile(r"^https://api\.makini\.test/api/v1/work-orders\?")
TODAY = datetime.date(2024, 6, 1)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with mock_aiohttp() as m:
        yield m


@pytest.fixture
async def pool() -> AsyncIterator[MakiniPool]:
    set_testing(True)  # no real waits between retries
    try:
        async with MakiniPool(base_url="https://api.makini.test") as p:
            yield p
    finally:
        set_testing(False)


def order(id: str, status: str, due: str | None) -> dict[str, str | None]:
    return {"id": id, "number": id.upper(), "status": status, "due_date": due}


async def test_lists_open_past_due_orders_across_pages(
    mocked: aioresponses, pool: MakiniPool
) -> None:
    mocked.get(
        WORK_ORDERS,
        payload={
            "data": [order("wo_1", "open", "2024-05-20"), order("wo_2", "closed", "2024-01-01")],
            "next_cursor": "page-2",
        },
    )
    mocked.get(
        WORK_ORDERS,
        payload={
            "data": [
                order("wo_3", "open", "2024-07-01"),
                order("wo_4", "in_progress", "2024-03-15"),
            ],
            "next_cursor": None,
        },
    )

    result = await overdue_work_orders(pool, "tok_plant_7", today=TODAY)

    assert [o.number for o in result] == ["WO_4", "WO_1"]
    urls = [str(url) for (method, url) in mocked.requests if method == "GET"]
    assert len(urls) == 2
    assert "modified_after=2024-01-01" in urls[0]
    assert "cursor=page-2" in urls[1]


async def test_rides_out_a_rate_limit(mocked: aioresponses, pool: MakiniPool) -> None:
    mocked.get(WORK_ORDERS, status=429, headers={"Retry-After": "2"})
    mocked.get(
        WORK_ORDERS,
        payload={"data": [order("wo_1", "open", "2024-05-20")], "next_cursor": None},
    )

    result = await overdue_work_orders(pool, "tok_plant_7", today=TODAY)

    assert [o.id for o in result] == ["wo_1"]


async def test_an_expired_token_is_reported(mocked: aioresponses, pool: MakiniPool) -> None:
    mocked.get(
        WORK_ORDERS,
        status=401,
        payload={"error": {"code": "AUTHENTICATION_FAILED", "message": "token expired"}},
        headers={"X-Request-Id": "req_401"},
    )

    with pytest.raises(AuthenticationError) as caught:
        await overdue_work_orders(pool, "tok_plant_7", today=TODAY)

    assert caught.value.request_id == "req_401"
    assert caught.value.connection == "plant-7"


async def test_a_url_registered_without_its_query_answers_the_listing() -> None:
    with mock_aiohttp() as mocked:
        mocked.get(
            "https://makini.test/api/v1/work-orders",
            payload={"data": [{"id": "wo_1"}], "next_cursor": None},
        )
        async with MakiniPool(base_url="https://makini.test", as_dicts=True) as pool:
            rows = [r async for r in pool.connection("tok-query-1").list("work-orders")]
    assert rows == [{"id": "wo_1"}]


async def test_a_url_registered_with_a_query_answers_only_that_query() -> None:
    with mock_aiohttp() as mocked:
        mocked.get(
            "https://makini.test/api/v1/work-orders?page_size=200",
            payload={"data": [{"id": "wo_2"}], "next_cursor": None},
        )
        async with MakiniPool(base_url="https://makini.test", as_dicts=True) as pool:
            conn = pool.connection("tok-query-2")
            assert [r async for r in conn.list("work-orders")] == [{"id": "wo_2"}]


async def test_an_unregistered_request_fails_at_once_naming_its_url() -> None:
    with mock_aiohttp() as mocked:
        mocked.get("https://makini.test/api/v1/assets/ast_1", payload={"data": {"id": "ast_1"}})
        async with MakiniPool(base_url="https://makini.test") as pool:
            conn = pool.connection("tok-query-3")
            with pytest.raises(
                AssertionError, match=r"GET https://makini.test/api/v1/assets/ast_2"
            ):
                await conn.assets.get("ast_2")
            assert conn.requests == 1  # not retried
