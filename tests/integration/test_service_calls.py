"""What a service developer needs of one customer's calls: bounds, tokens, raw answers, testing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
import pytest

from makini_async import (
    CircuitOpenError,
    MakiniPool,
    RecordStructureError,
    RequestTimeout,
    RetryPolicy,
    ServiceUnavailable,
    TokenProviderError,
    WorkOrder,
    is_testing,
    set_testing,
    to_dict,
)
from makini_async._client.config import BreakerPolicy
from makini_async.errors import AuthenticationError
from makini_async.testing import FaultPlan, MockMakini, RateLimit

TOKEN = "tok-service-0001"


async def test_a_call_is_bounded_by_its_timeout_retries_and_waits_included() -> None:
    async with (
        MockMakini(faults=FaultPlan(latency=5.0)) as server,
        MakiniPool(base_url=server.url) as pool,
    ):
        conn = pool.connection(TOKEN, name="acme")
        started = asyncio.get_running_loop().time()
        with pytest.raises(RequestTimeout, match=r"within 0.2 s") as caught:
            await conn.with_options(timeout=0.2).work_orders.get("wo_000001")
        assert asyncio.get_running_loop().time() - started < 2.0
        assert caught.value.connection == "acme"
        with pytest.raises(RequestTimeout):
            await conn.work_orders.get("wo_000001", timeout=0.2)
        with pytest.raises(RequestTimeout):
            await conn.get("work-orders", "wo_000001", timeout=0.2)


async def test_max_retries_zero_sends_one_attempt_and_views_share_the_connection() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with MockMakini() as server, MakiniPool(base_url=server.url, sleep=sleep) as pool:
        server.configure_connection(TOKEN, faults=FaultPlan(error_503=1.0))
        conn = pool.connection(TOKEN, name="acme")
        fast = pool.with_options(max_retries=0).connection(TOKEN, name="acme")
        assert fast.connection is conn
        with pytest.raises(ServiceUnavailable):
            await fast.work_orders.get("wo_000001")
        assert server.stats(TOKEN).requests == 1
        assert conn.requests == 1  # the view's call is the connection's
        with pytest.raises(ServiceUnavailable):
            await conn.work_orders.get("wo_000001", max_retries=2)
        assert server.stats(TOKEN).requests == 4
        # The pool's own policy, untouched by the views: 3 attempts by default.
        policy = RetryPolicy(attempts=2, wait_initial=0.0, timeout=30.0)
        with pytest.raises(ServiceUnavailable):
            await conn.with_options(retry=policy).work_orders.get("wo_000001")
        assert server.stats(TOKEN).requests == 6


async def test_a_listing_with_options_bounds_each_page() -> None:
    async with (
        MockMakini(records_per_entity=30) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        conn = pool.connection(TOKEN)
        rows = [r async for r in conn.with_options(timeout=5, max_retries=0).list("assets")]
        assert len(rows) == 30
        typed = [r async for r in conn.assets.list(page_size=10, timeout=5.0)]
        assert len(typed) == 30


async def test_a_new_token_for_a_known_name_replaces_it_in_place() -> None:
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        old = pool.connection("tok-acme-old", name="acme")
        await old.work_orders.get("wo_000001")
        old.failures = 7  # state that must survive the change
        new = pool.connection("tok-acme-new", name="acme")
        assert new is old
        assert len(pool) == 1
        assert (new.token_generation, new.failures) == (1, 7)
        assert new.token_changed_at is not None
        await new.work_orders.get("wo_000001")
        assert server.stats("tok-acme-new").requests == 1
        assert server.stats("tok-acme-old").requests == 1
        assert pool.connection("tok-acme-new") is old
        assert "tok-acme-old" not in repr(old)
        assert "tok-acme-new" not in repr(old)


async def test_a_provided_connection_given_a_token_by_name_stays_one_handle() -> None:
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(name="acme", token=lambda: "tok-provided-a")
        await conn.assets.get("ast_000001")
        again = pool.connection("tok-provided-b", name="acme")
        assert again is conn
        assert len(pool) == 1
        assert list(pool) == [conn]
        await conn.assets.get("ast_000001")
        assert server.stats("tok-provided-b").requests == 1


async def test_a_token_provider_is_asked_again_once_after_a_401() -> None:
    tokens = ["tok-provided-1", "tok-provided-2"]
    asked: list[str] = []

    async def provider() -> str:
        asked.append(tokens[min(len(asked), 1)])
        return asked[-1]

    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(name="acme", token=provider)
        order = await conn.work_orders.get("wo_000001")
        assert isinstance(order, WorkOrder)
        assert asked == ["tok-provided-1"]
        server.revoke("tok-provided-1")  # the customer reconnected: the old token is refused
        await conn.work_orders.get("wo_000001")
        assert asked == ["tok-provided-1", "tok-provided-2"]
        assert conn.token_generation == 1
        assert server.stats("tok-provided-2").requests == 1


async def test_rotation_under_load_loses_no_call() -> None:
    current = {"token": "tok-load-1"}
    calls = 0

    def provider() -> str:  # a sync provider works too
        nonlocal calls
        calls += 1
        return current["token"]

    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(name="acme", token=provider)
        await conn.assets.get("ast_000001")
        current["token"] = "tok-load-2"
        server.revoke("tok-load-1")
        got = await asyncio.gather(*(conn.assets.get(f"ast_{i:06d}") for i in range(1, 41)))
        assert len(got) == 40
        assert calls == 2  # concurrent 401s asked the provider once
        assert conn.token_generation == 1


async def test_a_provider_that_raises_or_keeps_the_same_token() -> None:
    def broken() -> str:
        raise RuntimeError("vault down: secret tok-leaked-123")

    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(name="broken", token=broken)
        with pytest.raises(TokenProviderError, match="raised RuntimeError") as caught:
            await conn.assets.get("ast_000001")
        assert "tok-leaked" not in str(caught.value)
        asked = 0

        def same() -> str:
            nonlocal asked
            asked += 1
            return "tok-same-1"

        server.revoke("tok-same-1")
        stuck = pool.connection(name="stuck", token=same)
        with pytest.raises(AuthenticationError):
            await stuck.assets.get("ast_000001")
        assert asked == 2  # the first token, then once after the 401: no loop
        with pytest.raises(Exception, match="needs name="):
            pool.connection(token=same)


async def test_testing_mode_per_pool_and_per_scope() -> None:
    waits: dict[str, list[float]] = {"plain": [], "testing": []}

    def recorder(kind: str) -> Any:
        async def sleep(seconds: float) -> None:
            waits[kind].append(seconds)

        return sleep

    limit = RateLimit(requests=1, per_seconds=60.0, retry_after=2.0)
    async with MockMakini(rate_limit=limit) as server:
        async with (
            MakiniPool(base_url=server.url, sleep=recorder("plain")) as plain,
            MakiniPool(base_url=server.url, sleep=recorder("testing"), testing=True) as quick,
        ):
            for pool, token in ((plain, "tok-plain-1"), (quick, "tok-quick-1")):
                conn = pool.connection(token)
                await conn.assets.get("ast_000001")
                with pytest.raises(Exception):  # noqa: B017 - 429s until retries run out
                    await conn.assets.get("ast_000002", max_retries=1)
    assert waits["plain"]
    assert max(waits["plain"]) >= 2.0
    assert not any(waits["testing"])  # this pool's waits are zero; the other's are not
    assert not is_testing()
    with set_testing(True):
        assert is_testing()
        with set_testing(False):
            assert not is_testing()
        assert is_testing()
    assert not is_testing()


def test_the_plugin_restores_the_switch_after_each_test_part_one() -> None:
    set_testing(True)  # left on: the plugin's autouse fixture switches it back


def test_the_plugin_restores_the_switch_after_each_test_part_two() -> None:
    assert not is_testing()


async def test_a_write_hands_back_its_request_id_and_idempotency_key() -> None:
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(TOKEN)
        body = {"title": "Replace pump seal", "status": "open"}
        answer = await conn.work_orders.with_raw_response.create(body, idempotency_key="wo-key-7")
        assert answer.status in (200, 201)
        assert answer.idempotency_key == "wo-key-7"
        assert answer.request_id is not None
        assert answer.request_id.startswith("req_")
        assert isinstance(answer.data, WorkOrder)
        generated = await conn.work_orders.with_raw_response.create(body)
        assert generated.idempotency_key is not None
        assert len(generated.idempotency_key) >= 16
        # As on the resource: None sends no key (and the create is not retried).
        keyless = await conn.work_orders.with_raw_response.create(body, idempotency_key=None)
        assert keyless.idempotency_key is None
        read = await conn.work_orders.with_raw_response.get(answer.data.id, as_dicts=True)
        assert read.data["id"] == answer.data.id
        assert read.idempotency_key is None


async def test_records_serialise_for_web_frameworks() -> None:
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        order = await pool.connection(TOKEN).work_orders.get("wo_000001")
    data = order.to_dict()
    assert data == to_dict(order)
    assert orjson.loads(orjson.dumps(data))["id"] == "wo_000001"
    assert isinstance(data["updated_at"], str)


async def test_an_invalid_record_in_a_listing_keeps_the_page_and_the_way_on() -> None:
    async with (
        MockMakini(records_per_entity=50, unreadable=0.2, seed=4) as server,
        MakiniPool(base_url=server.url) as pool,
    ):
        conn = pool.connection(TOKEN)
        seen: list[str] = []
        cursor = None
        for _ in range(60):
            try:
                async for page in conn.work_orders.list(page_size=10, cursor=cursor).pages():
                    seen.extend(r.id for r in page.records)
                break
            except RecordStructureError as exc:
                # What the error carries is what is under test here.
                assert exc.invalid_record is not None  # noqa: PT017
                assert exc.page_records is not None  # noqa: PT017
                assert exc.page_invalid is not None  # noqa: PT017
                assert exc.page_invalid[0] == exc.invalid_record  # noqa: PT017
                seen.extend(r.id for r in exc.page_records)
                seen.extend(str(i.id) for i in exc.page_invalid)
                if exc.next_cursor is None:
                    break
                cursor = exc.next_cursor
        # Every record once: none lost with its page, none fetched twice.
        ids = [r["id"] for r in server.records(TOKEN, "work-orders")]
        assert sorted(seen) == sorted(ids)


async def test_an_open_breaker_says_when_on_the_wall_clock() -> None:
    async with (
        MockMakini() as server,
        MakiniPool(
            base_url=server.url, breaker=BreakerPolicy(threshold=1, cooldown=30.0), testing=True
        ) as pool,
    ):
        server.configure_connection(TOKEN, faults=FaultPlan(error_503=1.0))
        conn = pool.connection(TOKEN)
        with pytest.raises((ServiceUnavailable, CircuitOpenError)):
            await conn.assets.get("ast_000001", max_retries=0)
        with pytest.raises(CircuitOpenError) as caught:
            await conn.assets.get("ast_000001")
    when = caught.value.retry_at
    assert isinstance(when, dt.datetime)
    assert when.tzinfo is not None
    left = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 20 < left <= 30
    assert caught.value.retry_at_monotonic is not None
