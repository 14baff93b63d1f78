"""The client core against the embedded mock server over real loopback sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest

from makini_async import (
    AuthenticationError,
    BreakerPolicy,
    ConflictError,
    Entity,
    Limits,
    MakiniPool,
    NotFound,
    OperationNotSupported,
    PermissionDenied,
    PurchaseOrder,
    RateLimitError,
    ReauthorizationRequired,
    RequestTimeout,
    RetryPolicy,
    Timeouts,
    ValidationError,
    WorkOrder,
    set_testing,
)
from makini_async.testing import FaultPlan, MockMakini, RateLimit
from tests.fakes import FakeClock

TOKEN = "tok_integration_SECRET_abcdef123456"
FAST = RetryPolicy(wait_initial=0.001, wait_max=0.01)


async def ids(listing: Any) -> list[str]:
    return [r["id"] async for r in listing]


async def test_typed_listing_matches_server_records() -> None:
    async with (
        MockMakini(records_per_entity=250) as server,
        MakiniPool(base_url=server.url) as pool,
    ):
        conn = pool.connection(TOKEN)
        for entity in Entity:
            got = [r async for r in conn.list(entity)]
            want = server.records(TOKEN, entity)
            assert [r.id for r in got] == [w["id"] for w in want]
        orders = [r async for r in conn.list("purchase-orders", page_size=30)]
        first = orders[0]
        assert isinstance(first, PurchaseOrder)
        assert isinstance(first.total_amount, Decimal)
        assert first.created_at is not None
        assert first.created_at.tzinfo is not None
        assert first.lines
        assert isinstance(first.lines[0].quantity, Decimal)
        stats = server.stats(TOKEN)
        assert stats.statuses[200] == stats.requests


async def test_get_create_update_delete_round_trip() -> None:
    async with MockMakini(records_per_entity=5) as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection(TOKEN, name="acme")
        created = await conn.create(
            "work-orders", {"title": "Replace pump seal", "priority": "high"}
        )
        assert isinstance(created, WorkOrder)
        assert created.title == "Replace pump seal"
        fetched = await conn.get("work-orders", created.id)
        assert fetched.id == created.id
        updated = await conn.update("work-orders", created.id, {"title": "Replace seal"})
        assert updated.title == "Replace seal"
        with pytest.raises(OperationNotSupported):
            await conn.delete("work-orders", created.id)
        vendor = server.records(TOKEN, "vendors")[0]["id"]
        await conn.delete("vendors", vendor)
        with pytest.raises(NotFound) as info:
            await conn.get("vendors", vendor)
        assert info.value.request_id
        assert info.value.connection == "acme"
        with pytest.raises(ValidationError) as verr:
            await conn.create("work-orders", {"priority": "low"})
        assert "title" in verr.value.fields
        done = await conn.update("work-orders", created.id, {"status": "completed"})
        assert done.status == "completed"
        with pytest.raises(ConflictError):
            await conn.update("work-orders", created.id, {"title": "again"})


async def test_write_applied_but_answered_503_is_not_duplicated() -> None:
    plan = FaultPlan(seed=3, write_applied_503=1.0, methods=("POST",))
    async with (
        MockMakini(records_per_entity=0) as server,
        MakiniPool(base_url=server.url, retry=FAST) as pool,
    ):
        server.configure_connection(TOKEN, faults=plan)
        conn = pool.connection(TOKEN)
        # Every POST is applied then answered 503; the retry replays the idempotency key.
        server.configure_connection(
            TOKEN, faults=FaultPlan(seed=3, write_applied_503=0.5, methods=("POST",))
        )
        created = [await conn.create("assets", {"name": f"pump {i}"}) for i in range(10)]
        assert len({c.id for c in created}) == 10
        assert len(server.records(TOKEN, "assets")) == 10
        assert conn.retries > 0


async def test_page_size_above_maximum_is_clamped() -> None:
    async with (
        MockMakini(records_per_entity=450) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        conn = pool.connection(TOKEN)
        pages = [p async for p in conn.list("work-orders", page_size=1000).pages()]
        assert [len(p) for p in pages] == [200, 200, 50]
        assert sum(len(p) for p in pages) == 450


async def test_faults_never_lose_or_duplicate_records() -> None:
    plan = FaultPlan(
        seed=11,
        error_500=0.05,
        error_502=0.05,
        error_503=0.05,
        rate_limit_429=0.03,
        drop=0.03,
        truncate=0.03,
        malformed=0.03,
    )
    async with (
        MockMakini(records_per_entity=600, faults=plan) as server,
        MakiniPool(
            base_url=server.url,
            as_dicts=True,
            retry=RetryPolicy(attempts=10),
            breaker=BreakerPolicy(threshold=50),
        ) as pool,
    ):
        set_testing(True)  # zero backoff: the retries happen, the waits do not
        tokens = [f"{TOKEN}-{i}" for i in range(8)]
        results = await asyncio.gather(
            *(ids(pool.connection(t).list("assets", page_size=50)) for t in tokens)
        )
        for token, got in zip(tokens, results, strict=True):
            assert got == [r["id"] for r in server.records(token, "assets")]
        assert sum(pool.connection(t).retries for t in tokens) > 0


async def test_pagination_is_stable_under_concurrent_writes() -> None:
    async with (
        MockMakini(records_per_entity=300) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        conn = pool.connection(TOKEN)
        original = {r["id"] for r in server.records(TOKEN, "assets")}
        rng = random.Random(5)
        deleted: set[str] = set()
        seen: list[str] = []
        async for page in conn.list("assets", page_size=25).pages():
            seen.extend(r["id"] for r in page.records)
            for _ in range(3):
                server.insert(TOKEN, "assets")
            victim = rng.choice(sorted(original - deleted))
            server.delete(TOKEN, "assets", victim)
            deleted.add(victim)
            keep = rng.choice(sorted(original - deleted))
            server.update(TOKEN, "assets", keep, {"name": "renamed"})
        assert len(seen) == len(set(seen))
        # Every record that existed for the whole walk was seen exactly once.
        assert (original - deleted) <= set(seen)


@pytest.mark.parametrize("per_connection", [1, 4])
async def test_rate_limit_pauses_connection_without_real_sleep(per_connection: int) -> None:
    clock = FakeClock()
    async with (
        MockMakini(records_per_entity=400, clock=clock) as server,
        MakiniPool(
            base_url=server.url,
            as_dicts=True,
            clock=clock,
            sleep=clock.sleep,
            limits=Limits(per_connection=per_connection),
        ) as pool,
    ):
        server.configure_connection(TOKEN, rate_limit=RateLimit(requests=3, per_seconds=10))
        conn = pool.connection(TOKEN)
        lists = await asyncio.gather(
            *(ids(conn.list(e, page_size=50)) for e in ("assets", "vendors", "locations"))
        )
        assert [len(got) for got in lists] == [400, 400, 400]
        stats = server.stats(TOKEN)
        assert stats.statuses[429] >= 1
        assert conn.rate_limited == stats.statuses[429]
        # Every 429 paused the whole connection: only requests already in flight when
        # it was answered can arrive inside the cooldown.
        assert stats.during_cooldown <= (per_connection - 1) * stats.statuses[429]
        assert clock.now >= 1000.0 + 10 * (1200 // 50 // 3 - 1)


async def test_long_retry_after_raises_instead_of_sleeping() -> None:
    plan = FaultPlan(seed=1, rate_limit_429=1.0, retry_after=600)
    async with (
        MockMakini(records_per_entity=10, faults=plan) as server,
        MakiniPool(base_url=server.url, retry=RetryPolicy(max_retry_after=60)) as pool,
    ):
        with pytest.raises(RateLimitError) as info:
            await pool.connection(TOKEN).get("assets", "ast_000001")
        assert info.value.retry_after == 600
        assert server.stats(TOKEN).requests == 1


async def test_reauthorization_and_permission_and_disconnect() -> None:
    async with MockMakini(records_per_entity=10) as server, MakiniPool(base_url=server.url) as pool:
        server.configure_connection("tok-reauth", status="reauthorization_required")
        server.configure_connection("tok-denied", denied_entities=[Entity.VENDORS])
        reauth = pool.connection("tok-reauth")
        with pytest.raises(ReauthorizationRequired) as info:
            [_ async for _ in reauth.list("assets")]
        assert info.value.request_id
        with pytest.raises(ReauthorizationRequired):
            await reauth.get("assets", "x")
        assert server.stats("tok-reauth").requests == 1
        status = await pool.connection("tok-other").info()
        assert status.is_active
        with pytest.raises(PermissionDenied):
            [_ async for _ in pool.connection("tok-denied").list("vendors")]
        gone = pool.connection("tok-gone")
        await gone.disconnect()
        fresh = MakiniPool(base_url=server.url)
        async with fresh:
            with pytest.raises(AuthenticationError) as auth:
                await fresh.connection("tok-gone").get("assets", "x")
            assert auth.value.code == "AUTHENTICATION_FAILED"


async def test_stalled_page_is_retried_then_times_out() -> None:
    async with (
        MockMakini(records_per_entity=50) as server,
        MakiniPool(
            base_url=server.url,
            timeouts=Timeouts(read=0.05, total=0.2),
            retry=RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.001),
        ) as pool,
    ):
        server.configure_connection(TOKEN, faults=FaultPlan(seed=1, stall=1.0))
        with pytest.raises(RequestTimeout):
            [_ async for _ in pool.connection(TOKEN).list("work-orders")]
        # Three attempts (page size halving is checked in the unit tests), then the error.
        assert server.stats(TOKEN).requests == 3


async def test_incremental_filters_are_sent_and_applied() -> None:
    async with (
        MockMakini(records_per_entity=100) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        conn = pool.connection(TOKEN)
        everything = [r async for r in conn.list("work-orders")]
        cut = sorted(r["updated_at"] for r in everything)[60]
        cut_dt = dt.datetime.fromisoformat(cut.replace("Z", "+00:00"))
        newer = [r async for r in conn.list("work-orders", modified_after=cut_dt)]
        assert newer
        assert all(r["updated_at"] >= cut for r in newer)
        assert len(newer) < len(everything)


def test_mock_api_never_echoes_tokens(capsys: Any) -> None:
    server = MockMakini()
    assert TOKEN not in repr(server)
