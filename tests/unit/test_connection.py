"""The client core against a scripted transport: no sockets, injected clock."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from makini_async import errors
from makini_async._client.config import BreakerPolicy, Limits, OutagePolicy, PageSizes, RetryPolicy
from makini_async._client.retry import set_testing
from makini_async.entities import Entity
from makini_async.instrumentation import ConnectionState, Hook
from makini_async.pool import MakiniPool
from tests.fakes import Call, FakeClock, error, page, respond
from tests.unit.conftest import TOKEN

NO_JITTER = RetryPolicy(jitter=0.0, wait_initial=1.0, wait_max=30.0)


def records(start: int, n: int) -> list[dict[str, Any]]:
    return [{"id": f"wo_{i:06d}"} for i in range(start, start + n)]


def paged(total: int) -> Any:
    """A server of ``total`` records honouring page_size and integer cursors."""

    def handler(call: Call) -> Any:
        start = int(call.params.get("cursor", "0"))
        size = int(call.params["page_size"])
        end = min(total, start + size)
        return page(records(start, end - start), str(end) if end < total else None, total)

    return handler


async def test_request_shape_headers_path_and_params(make_pool: Any) -> None:
    async with make_pool(paged(3), as_dicts=True) as (pool, transport):
        conn = pool.connection(TOKEN, name="acme")
        got = [r async for r in conn.list("work-orders", modified_after="2024-01-01")]
    assert [r["id"] for r in got] == ["wo_000000", "wo_000001", "wo_000002"]
    (call,) = transport.calls
    assert call.method == "GET"
    assert call.url == "http://makini.test/api/v1/work-orders"
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.params == {"page_size": "200", "modified_after": "2024-01-01"}


async def test_pagination_follows_cursors_and_resumes(make_pool: Any) -> None:
    async with make_pool(paged(25), as_dicts=True) as (pool, transport):
        conn = pool.connection(TOKEN)
        pages = [p async for p in conn.list(Entity.ASSETS, page_size=10).pages()]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [p.cursor for p in pages] == [None, "10", "20"]
        assert pages[-1].next_cursor is None
        assert pages[0].total_count == 25
        assert pages[0].request_id is not None
        resumed = [r["id"] async for r in conn.list("assets", page_size=10, cursor="20")]
        assert resumed == [f"wo_{i:06d}" for i in range(20, 25)]
    assert transport.calls[-1].params["cursor"] == "20"


async def test_default_page_size_per_entity_and_overrides(make_pool: Any) -> None:
    async with make_pool(paged(1), as_dicts=True, page_sizes=PageSizes({"vendors": 42})) as (
        pool,
        transport,
    ):
        conn = pool.connection(TOKEN)
        for entity in ("purchase-orders", "work-orders", "assets", "vendors"):
            [_ async for _ in conn.list(entity)]
        [_ async for _ in conn.list("locations", page_size=7)]
    assert [c.params["page_size"] for c in transport.calls] == ["100", "200", "500", "42", "7"]


async def test_invalid_page_size_is_clamped_and_remembered(make_pool: Any) -> None:
    inner = paged(150)

    def handler(call: Call) -> Any:
        if int(call.params["page_size"]) > 60:
            return error(400, "INVALID_PAGE_SIZE", details={"max_page_size": 60})
        return inner(call)

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        conn = pool.connection(TOKEN)
        got = [r async for r in conn.list("assets")]
        assert len(got) == 150
        assert conn.retries == 0
        [_ async for _ in conn.list("assets")]
    sizes = [c.params["page_size"] for c in transport.calls]
    # 500 rejected once, then 60 for the rest, and remembered for the next listing.
    assert sizes == ["500", "60", "60", "60", "60", "60", "60"]


async def test_timeout_retries_same_cursor_with_half_page(make_pool: Any, clock: FakeClock) -> None:
    inner = paged(300)
    timeouts = iter([True, True, False])

    def handler(call: Call) -> Any:
        if call.params.get("cursor") == "200" and next(timeouts, False):
            return errors.RequestTimeout("timed out")
        return inner(call)

    async with make_pool(handler, as_dicts=True, retry=NO_JITTER) as (pool, transport):
        conn = pool.connection(TOKEN)
        got = [r["id"] async for r in conn.list("work-orders")]
    assert len(got) == len(set(got)) == 300
    calls = [(c.params.get("cursor"), c.params["page_size"]) for c in transport.calls]
    assert calls[:4] == [(None, "200"), ("200", "200"), ("200", "100"), ("200", "50")]
    assert clock.sleeps == [1.0, 2.0]


async def test_page_timeout_shrinks_to_floor_then_raises(make_pool: Any) -> None:
    async with make_pool(
        lambda call: errors.RequestTimeout("timed out"),
        as_dicts=True,
        retry=RetryPolicy(attempts=10, jitter=0),
        breaker=BreakerPolicy(threshold=100),
        page_sizes=PageSizes(min_page_size=40),
    ) as (pool, transport):
        conn = pool.connection(TOKEN)
        with pytest.raises(errors.RequestTimeout):
            [_ async for _ in conn.list("work-orders")]
    sizes = [c.params["page_size"] for c in transport.calls]
    assert sizes[:4] == ["200", "100", "50", "40"]
    assert set(sizes[4:]) == {"40"}
    assert len(sizes) == 10


@pytest.mark.parametrize(
    "failure",
    [
        lambda: error(500, "INTERNAL_ERROR"),
        lambda: error(502, "CONNECTED_SYSTEM_ERROR"),
        lambda: error(503, "SERVICE_UNAVAILABLE"),
        lambda: respond(504, body=b"gateway timeout"),
        lambda: error(429, "RATE_LIMIT_EXCEEDED"),
        lambda: errors.RequestTimeout("t"),
        lambda: errors.ConnectionFailed("reset"),
        lambda: respond(200, body=b'{"data": [{"id": "wo_0'),
    ],
)
async def test_retryable_failures_are_retried(make_pool: Any, failure: Any) -> None:
    answers = iter([failure(), failure()])

    def handler(call: Call) -> Any:
        return next(answers, None) or page(records(0, 2), None)

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        conn = pool.connection(TOKEN)
        got = [r async for r in conn.list("work-orders")]
    assert len(got) == 2
    assert len(transport.calls) == 3
    assert conn.retries == 2


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "INVALID_REQUEST", errors.BadRequestError),
        (401, "AUTHENTICATION_FAILED", errors.AuthenticationError),
        (403, "PERMISSION_DENIED", errors.PermissionDenied),
        (404, "NOT_FOUND", errors.NotFound),
        (405, "OPERATION_NOT_SUPPORTED", errors.OperationNotSupported),
        (409, "CONFLICT", errors.ConflictError),
        (400, "VALIDATION_FAILED", errors.ValidationError),
    ],
)
async def test_client_errors_are_never_retried(
    make_pool: Any, status: int, code: str, cls: type
) -> None:
    async with make_pool(lambda call: error(status, code, request_id="req_777")) as (
        pool,
        transport,
    ):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(cls) as info:
            await conn.get("work-orders", "wo_1")
    assert len(transport.calls) == 1
    assert info.value.request_id == "req_777"
    assert info.value.connection == "acme"
    assert "req_777" in str(info.value)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)


async def test_retry_after_is_honoured_never_sooner(make_pool: Any, clock: FakeClock) -> None:
    answers = iter(
        [
            error(429, "RATE_LIMIT_EXCEEDED", retry_after="7"),
            error(503, "SERVICE_UNAVAILABLE", retry_after="Thu, 01 Jan 1970 00:00:00 GMT"),
        ]
    )

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "wo_1"}})

    async with make_pool(handler, as_dicts=True, retry=NO_JITTER) as (pool, _):
        data = await pool.connection(TOKEN).get("work-orders", "wo_1")
    assert data == {"id": "wo_1"}
    assert clock.sleeps[0] >= 7.0
    # A Retry-After date in the past does not shorten the backoff.
    assert clock.sleeps[-1] == 2.0


async def test_retry_after_above_cap_raises_with_it(make_pool: Any, clock: FakeClock) -> None:
    policy = RetryPolicy(max_retry_after=60)
    async with make_pool(
        lambda call: error(429, "RATE_LIMIT_EXCEEDED", retry_after="3600", request_id="req_rl"),
        retry=policy,
    ) as (pool, transport):
        with pytest.raises(errors.RateLimitError) as info:
            await pool.connection(TOKEN).get("assets", "a")
    assert info.value.retry_after == 3600.0
    assert info.value.request_id == "req_rl"
    assert len(transport.calls) == 1
    assert clock.sleeps == []


async def test_attempts_and_total_time_bound_retries(make_pool: Any, clock: FakeClock) -> None:
    async with make_pool(
        lambda call: error(500, "INTERNAL_ERROR"),
        retry=RetryPolicy(attempts=4, jitter=0),
        breaker=BreakerPolicy(threshold=100),
    ) as (pool, transport):
        with pytest.raises(errors.ServerError):
            await pool.connection(TOKEN).get("assets", "a")
        assert len(transport.calls) == 4
        assert clock.sleeps == [1.0, 2.0, 4.0]
    async with make_pool(
        lambda call: error(500, "INTERNAL_ERROR"),
        retry=RetryPolicy(attempts=100, timeout=10, jitter=0),
        breaker=BreakerPolicy(threshold=100),
    ) as (pool, transport):
        with pytest.raises(errors.ServerError):
            await pool.connection("other").get("assets", "a")
        # waits 1 + 2 + 4 = 7 s; the next (8 s) would end past 10 s.
        assert len(transport.calls) == 4


async def test_jitter_stays_within_the_formula(make_pool: Any, clock: FakeClock) -> None:
    async with make_pool(
        lambda call: error(500, "INTERNAL_ERROR"),
        retry=RetryPolicy(attempts=6, jitter=0.5, wait_initial=2, wait_max=8),
        breaker=BreakerPolicy(threshold=100),
    ) as (pool, _):
        with pytest.raises(errors.ServerError):
            await pool.connection(TOKEN).get("assets", "a")
    bases = [2, 4, 8, 8, 8]
    assert len(clock.sleeps) == 5
    for wait, base in zip(clock.sleeps, bases, strict=True):
        assert base * 0.5 <= wait <= base
    assert len(set(clock.sleeps)) > 1


async def test_post_retries_only_with_an_idempotency_key(make_pool: Any) -> None:
    answers = iter([errors.ConnectionFailed("reset"), error(503, "SERVICE_UNAVAILABLE")])

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(201, {"data": {"id": "wo_9", "title": "Fix"}})

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        created = await pool.connection(TOKEN).create("work-orders", {"title": "Fix"})
    assert created["id"] == "wo_9"
    keys = {c.headers["Idempotency-Key"] for c in transport.calls}
    assert len(transport.calls) == 3
    assert len(keys) == 1
    assert all(c.json == {"title": "Fix"} for c in transport.calls)
    assert transport.calls[0].headers["Content-Type"] == "application/json"

    async with make_pool(lambda call: error(503, "SERVICE_UNAVAILABLE")) as (pool, transport):
        with pytest.raises(errors.ServiceUnavailable):
            await pool.connection(TOKEN).update(
                "work-orders", "wo_9", {"title": "x"}, idempotency_key=None
            )
    assert len(transport.calls) == 1
    assert "Idempotency-Key" not in transport.calls[0].headers


async def test_given_idempotency_key_is_sent(make_pool: Any) -> None:
    async with make_pool(lambda c: respond(200, {"data": {"id": "a"}}), as_dicts=True) as (
        pool,
        transport,
    ):
        await pool.connection(TOKEN).update("assets", "a/b", {"name": "n"}, idempotency_key="k1")
    (call,) = transport.calls
    assert call.method == "PATCH"
    assert call.path == "/assets/a%2Fb"
    assert call.headers["Idempotency-Key"] == "k1"


async def test_429_pauses_the_whole_connection_once(make_pool: Any, clock: FakeClock) -> None:
    limited = {"left": 1}
    sent_at: list[tuple[str, float]] = []

    async def handler(call: Call) -> Any:
        token = call.headers["Authorization"]
        sent_at.append((token, clock.now))
        await asyncio.sleep(0)
        if token.endswith(TOKEN) and limited["left"]:
            limited["left"] -= 1
            return error(429, "RATE_LIMIT_EXCEEDED", retry_after="30")
        return respond(200, {"data": {"id": "x"}})

    # attempts=1: the limited request gives up at once, so only the pause can delay the others.
    async with make_pool(handler, as_dicts=True, retry=RetryPolicy(attempts=1)) as (pool, _):
        conn = pool.connection(TOKEN)
        other = pool.connection("another-token")
        with pytest.raises(errors.RateLimitError):
            await conn.get("assets", "1")
        assert conn.state is ConnectionState.RATE_LIMITED
        second = asyncio.create_task(conn.get("assets", "2"), name="second")
        third = asyncio.create_task(conn.get("assets", "3"), name="third")
        fourth = asyncio.create_task(other.get("assets", "4"), name="other")
        await asyncio.gather(second, third, fourth)
        assert conn.rate_limited == 1
        assert conn.state is ConnectionState.ACTIVE
    mine = [t for tok, t in sent_at if tok.endswith(TOKEN)]
    theirs = [t for tok, t in sent_at if not tok.endswith(TOKEN)]
    assert mine[0] == 1000.0
    assert len(mine) == 3
    assert all(t >= 1030.0 for t in mine[1:])
    # The other connection was not paused: its request never waited.
    assert len(theirs) == 1
    assert "other" not in clock.sleepers
    # One shared pause: the waiters slept until the same instant, 30 s after the 429.
    assert set(clock.sleepers) == {"second", "third"}
    assert set(clock.sleeps) == {30.0}


async def test_429_retry_waits_for_retry_after(make_pool: Any, clock: FakeClock) -> None:
    answers = iter([error(429, "RATE_LIMIT_EXCEEDED", retry_after="12")])

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "x"}})

    async with make_pool(handler, as_dicts=True, retry=NO_JITTER) as (pool, transport):
        await pool.connection(TOKEN).get("assets", "1")
    assert clock.sleeps == [12.0]
    assert len(transport.calls) == 2


async def test_reauthorization_marks_connection_and_fires_hook_once(make_pool: Any) -> None:
    fired: list[str] = []
    states: list[tuple[ConnectionState, ConnectionState]] = []

    class Recorder(Hook):
        def on_connection_state(self, event: Any) -> None:
            states.append((event.old, event.new))

    async def on_reauth(conn: Any) -> None:
        fired.append(conn.name)

    async with make_pool(
        lambda call: error(401, "REAUTHORIZATION_REQUIRED", request_id="req_re"),
        on_reauthorization_required=on_reauth,
        hooks=[Recorder()],
    ) as (pool, transport):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(errors.ReauthorizationRequired):
            await conn.get("assets", "a")
        for _ in range(3):
            with pytest.raises(errors.ReauthorizationRequired) as info:
                await conn.get("assets", "a")
        assert info.value.request_id == "req_re"
        assert conn.needs_reauthorization
        assert conn.state is ConnectionState.REAUTHORIZATION_REQUIRED
    assert len(transport.calls) == 1
    assert fired == ["acme"]
    assert states == [(ConnectionState.ACTIVE, ConnectionState.REAUTHORIZATION_REQUIRED)]


async def test_status_endpoint_marks_reauthorization(make_pool: Any) -> None:
    body = {
        "data": {
            "id": "conn_1",
            "system": "SAP",
            "status": "reauthorization_required",
            "reauthorization_required": True,
            "last_sync_at": "2024-05-01T00:00:00Z",
        }
    }
    async with make_pool(lambda call: respond(200, body)) as (pool, transport):
        conn = pool.connection(TOKEN)
        info = await conn.info()
        assert info.reauthorization_required
        assert info.last_sync_at is not None
        assert info.last_sync_at.tzinfo is not None
        with pytest.raises(errors.ReauthorizationRequired):
            await conn.get("assets", "a")
    assert len(transport.calls) == 1


async def test_circuit_breaker_opens_fails_fast_and_probes(
    make_pool: Any, clock: FakeClock
) -> None:
    healthy = {"on": False}

    def handler(call: Call) -> Any:
        return (
            respond(200, {"data": {"id": "a"}})
            if healthy["on"]
            else error(502, "CONNECTED_SYSTEM_ERROR")
        )

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=10, jitter=0),
        breaker=BreakerPolicy(threshold=3, cooldown=60),
    ) as (pool, transport):
        conn = pool.connection(TOKEN)
        with pytest.raises(errors.CircuitOpenError) as info:
            await conn.get("assets", "a")
        assert isinstance(info.value.__cause__, errors.ConnectedSystemError)
        assert len(transport.calls) == 3
        assert conn.state is ConnectionState.CIRCUIT_OPEN
        with pytest.raises(errors.CircuitOpenError):
            await conn.get("assets", "a")
        assert len(transport.calls) == 3  # refused without touching the network
        clock.now += 61
        # The probe fails: open again, no retries while probing.
        with pytest.raises(errors.CircuitOpenError):
            await conn.get("assets", "a")
        assert len(transport.calls) == 4
        clock.now += 61
        healthy["on"] = True
        assert await conn.get("assets", "a") == {"id": "a"}
        assert conn.state is ConnectionState.ACTIVE
        assert await conn.get("assets", "a") == {"id": "a"}


async def test_one_probe_at_a_time(make_pool: Any, clock: FakeClock) -> None:
    gate = asyncio.Event()
    mode = {"fail": True}

    async def handler(call: Call) -> Any:
        if mode["fail"]:
            return error(500, "INTERNAL_ERROR")
        await gate.wait()
        return respond(200, {"data": {"id": "a"}})

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(threshold=1, cooldown=5),
    ) as (pool, _):
        conn = pool.connection(TOKEN)
        with pytest.raises(errors.ServerError):
            await conn.get("assets", "a")
        clock.now += 6
        mode["fail"] = False
        probe = asyncio.create_task(conn.get("assets", "a"))
        await asyncio.sleep(0)
        with pytest.raises(errors.CircuitOpenError):
            await conn.get("assets", "a")
        gate.set()
        assert await probe == {"id": "a"}


async def test_retry_budget_stops_retry_storms(make_pool: Any) -> None:
    async with make_pool(
        lambda call: error(500, "INTERNAL_ERROR"),
        retry=RetryPolicy(attempts=5, budget_tokens=10, jitter=0),
        breaker=BreakerPolicy(threshold=1000),
        # Every connection failing at once is an outage (tests/unit/test_outage.py);
        # this test is about the budget alone.
        outage=OutagePolicy(min_connections=1000),
    ) as (pool, transport):
        for i in range(10):
            with pytest.raises(errors.ServerError):
                await pool.connection(f"t{i}").get("assets", "a")
    # 5 retries spend half the bucket; after that every call gets one attempt.
    assert len(transport.calls) == 10 + 5


async def test_limits_cap_in_flight_per_pool_and_per_connection(make_pool: Any) -> None:
    async def slow(call: Call) -> Any:
        for _ in range(5):
            await asyncio.sleep(0)
        return respond(200, {"data": {"id": "a"}})

    async with make_pool(slow, as_dicts=True, limits=Limits(max_in_flight=5, per_connection=2)) as (
        pool,
        transport,
    ):
        conn = pool.connection(TOKEN)
        await asyncio.gather(*(conn.get("assets", str(i)) for i in range(10)))
        assert transport.max_in_flight == 2
        transport.max_in_flight = 0
        await asyncio.gather(
            *(pool.connection(f"tok{i % 6}").get("assets", str(i)) for i in range(30))
        )
        assert transport.max_in_flight == 5


async def test_testing_mode_removes_waits(make_pool: Any, clock: FakeClock) -> None:
    set_testing(True)
    answers = iter(
        [error(429, "RATE_LIMIT_EXCEEDED", retry_after="100"), error(500, "INTERNAL_ERROR")]
    )

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "a"}})

    async with make_pool(handler, as_dicts=True) as (pool, _):
        assert await pool.connection(TOKEN).get("assets", "a") == {"id": "a"}
    assert clock.now == 1000.0
    set_testing(True, attempts=1)
    async with make_pool(lambda call: error(500, "INTERNAL_ERROR")) as (pool, transport):
        with pytest.raises(errors.ServerError):
            await pool.connection(TOKEN).get("assets", "a")
        assert len(transport.calls) == 1
    set_testing(False)
    async with make_pool(
        lambda call: error(500, "INTERNAL_ERROR"), retry=RetryPolicy(attempts=2)
    ) as (pool, transport):
        with pytest.raises(errors.ServerError):
            await pool.connection(TOKEN).get("assets", "a")
        assert len(transport.calls) == 2


async def test_hooks_and_logs_never_show_the_token(
    make_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []

    class Recorder(Hook):
        async def on_request(self, event: Any) -> None:
            events.append(event)

        def on_retry(self, event: Any) -> None:
            events.append(event)

        def on_page(self, event: Any) -> None:
            events.append(event)

    class Broken(Hook):
        def on_request(self, event: Any) -> None:
            raise RuntimeError("boom")

    answers = iter([error(500, "INTERNAL_ERROR")])

    def handler(call: Call) -> Any:
        return next(answers, None) or page(records(0, 3), None)

    caplog.set_level(logging.DEBUG, logger="makini_async")
    async with make_pool(handler, as_dicts=True, hooks=[Recorder(), Broken()]) as (pool, _):
        conn = pool.connection(TOKEN)
        assert len([r async for r in conn.list("assets")]) == 3
        assert TOKEN not in repr(conn)
        assert TOKEN not in repr(pool)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RequestEvent", "RetryEvent", "RequestEvent", "PageEvent"]
    assert events[0].status == 500
    assert events[3].records == 3
    assert all(TOKEN not in repr(e) for e in events)
    assert "retrying GET /assets" in caplog.text
    assert TOKEN not in caplog.text


async def test_closed_pool_raises_usage_error(make_pool: Any) -> None:
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}})) as (pool, transport):
        conn = pool.connection(TOKEN)
    assert transport.closed
    with pytest.raises(errors.UsageError, match="closed"):
        await conn.get("assets", "a")
    with pytest.raises(errors.UsageError, match="closed"):
        pool.connection("new-token")
    pool2 = MakiniPool(base_url="http://x.test")
    with pytest.raises(errors.UsageError, match="async with"):
        await pool2.connection(TOKEN).get("assets", "a")


async def test_bad_arguments_get_usage_errors(make_pool: Any) -> None:
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}})) as (pool, _):
        with pytest.raises(errors.UsageError, match="unknown entity"):
            pool.connection(TOKEN).list("widgets")
        with pytest.raises(errors.UsageError, match="page_size"):
            pool.connection(TOKEN).list("assets", page_size=0)
        with pytest.raises(errors.UsageError) as info:
            pool.connection("bad token\n")
        assert "bad token" not in str(info.value)
        with pytest.raises(errors.UsageError):
            await pool.connection(TOKEN).get("assets", "")
    with pytest.raises(errors.UsageError):
        MakiniPool(base_url="ftp://nope")
    with pytest.raises(errors.UsageError):
        RetryPolicy(jitter=2)


async def test_same_token_same_handle_and_eviction(make_pool: Any, clock: FakeClock) -> None:
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}}), as_dicts=True) as (
        pool,
        _,
    ):
        a = pool.connection(TOKEN)
        assert pool.connection(TOKEN) is a
        await a.get("assets", "a")
        b = pool.connection("tok-b")
        clock.now += 10
        await b.get("assets", "a")
        assert pool.evict_idle(idle_for=5) == 1
        assert len(pool) == 1
        assert pool.connection("tok-b") is b
        assert pool.connection(TOKEN) is not a


async def test_malformed_success_for_post_without_key_is_not_retried(make_pool: Any) -> None:
    async with make_pool(lambda call: respond(201, body=b"<html>")) as (pool, transport):
        with pytest.raises(errors.MalformedResponse):
            await pool.connection(TOKEN).create("assets", {"name": "x"}, idempotency_key=None)
    assert len(transport.calls) == 1


async def test_sync_status_trigger_and_disconnect(make_pool: Any) -> None:
    def handler(call: Call) -> Any:
        if call.path == "/sync-status":
            return respond(
                200,
                {
                    "data": {
                        "entities": {
                            "work-orders": {
                                "last_synced_at": "2024-02-01T00:00:00Z",
                                "status": "idle",
                            }
                        }
                    }
                },
            )
        if call.path == "/syncs":
            return respond(
                202,
                {
                    "data": {
                        "id": "sync_1",
                        "entity": call.json["entity"],
                        "full": call.json["full"],
                    }
                },
            )
        if call.path == "/connection" and call.method == "DELETE":
            return respond(204)
        return error(500, "INTERNAL_ERROR")

    async with make_pool(handler) as (pool, transport):
        conn = pool.connection(TOKEN)
        status = await conn.sync_status()
        assert status.entities["work-orders"].status == "idle"
        job = await conn.trigger_sync("work-orders", full=True)
        assert job.id == "sync_1"
        assert transport.calls[-1].json == {"entity": "work-orders", "full": True}
        await conn.disconnect()
        assert conn.state is ConnectionState.DISCONNECTED
        with pytest.raises(errors.AuthenticationError, match="disconnected"):
            await conn.get("assets", "a")
    assert len(transport.calls) == 3


async def test_a_probe_answered_429_closes_the_breaker(make_pool: Any, clock: FakeClock) -> None:
    answers = iter(
        [error(500, "INTERNAL_ERROR"), error(429, "RATE_LIMIT_EXCEEDED", retry_after="1")]
    )

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "a"}})

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(threshold=1, cooldown=5),
    ) as (pool, transport):
        conn = pool.connection(TOKEN)
        with pytest.raises(errors.ServerError):
            await conn.get("assets", "a")
        assert conn.state is ConnectionState.CIRCUIT_OPEN
        clock.now += 6
        with pytest.raises(errors.RateLimitError):
            await conn.get("assets", "a")  # the probe: Makini answered, so the breaker closes
        clock.now += 2
        assert await conn.get("assets", "a") == {"id": "a"}
        assert conn.state is ConnectionState.ACTIVE
    assert len(transport.calls) == 3


async def test_a_cooldown_longer_than_the_cap_fails_other_calls_fast(
    make_pool: Any, clock: FakeClock
) -> None:
    answers = iter([error(429, "RATE_LIMIT_EXCEEDED", retry_after="1000")])

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "a"}})

    async with make_pool(handler, as_dicts=True, retry=RetryPolicy(max_retry_after=60)) as (
        pool,
        transport,
    ):
        conn = pool.connection(TOKEN)
        with pytest.raises(errors.RateLimitError):
            await conn.get("assets", "a")
        with pytest.raises(errors.RateLimitError) as info:
            await conn.get("assets", "b")
        assert info.value.retry_after == pytest.approx(1000)
        assert clock.sleeps == []
        assert len(transport.calls) == 1
        # Other connections are not affected.
        assert await pool.connection("other").get("assets", "c") == {"id": "a"}


async def test_a_breaker_opened_during_a_retry_wait_stops_the_retry(make_pool: Any) -> None:
    gate = asyncio.Event()

    async def handler(call: Call) -> Any:
        if call.path.endswith("/slow"):
            await gate.wait()
        return error(500, "INTERNAL_ERROR")

    async def sleep(delay: float) -> None:
        gate.set()
        for _ in range(20):
            await asyncio.sleep(0)

    async with make_pool(
        handler,
        sleep=sleep,
        retry=RetryPolicy(attempts=5),
        breaker=BreakerPolicy(threshold=3, cooldown=60),
    ) as (pool, transport):
        conn = pool.connection(TOKEN)
        results = await asyncio.gather(
            conn.get("assets", "fast"), conn.get("assets", "slow"), return_exceptions=True
        )
    assert all(isinstance(r, errors.CircuitOpenError) for r in results)
    assert len(transport.calls) == 3


async def test_base_url_and_names_are_checked(make_pool: Any) -> None:
    for bad in ("http://localhost:99999", "http://[::1", "http://", "https://host?x=1"):
        with pytest.raises(errors.UsageError, match="base_url"):
            MakiniPool(base_url=bad)
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}})) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        assert pool.connection(TOKEN) is conn
        assert pool.connection(TOKEN, name="acme") is conn
        with pytest.raises(errors.UsageError, match="already named"):
            pool.connection(TOKEN, name="globex")
        unnamed = pool.connection("tok-2")
        assert pool.connection("tok-2", name="later") is unnamed
        assert unnamed.name == "later"


async def test_logging_hook_and_stats(make_pool: Any, caplog: pytest.LogCaptureFixture) -> None:
    from makini_async import LoggingHook

    caplog.set_level(logging.DEBUG, logger="makini_async")
    async with make_pool(paged(3), as_dicts=True, hooks=[LoggingHook()]) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        assert len([r async for r in conn.list("assets")]) == 3
        stats = conn.stats
    assert (stats.name, stats.requests, stats.retries, stats.in_flight) == ("acme", 1, 0, 0)
    assert stats.state is ConnectionState.ACTIVE
    assert "GET /assets -> 200" in caplog.text
    assert "page of 3 assets (connection=acme" in caplog.text
    assert TOKEN not in caplog.text


# -- records that do not fit --------------------------------------------------------------

_MIXED = [{"id": "a"}, {"id": "b", "due_date": "31/12/2024"}, {"id": "c"}]


async def test_a_listing_raises_by_default_carrying_the_record(make_pool: Any) -> None:
    async with make_pool(lambda call: page(_MIXED, None)) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(errors.RecordStructureError) as info:
            _ = [r async for r in conn.list("work-orders")]
    err = info.value
    assert err.connection == "acme"
    assert err.field == "due_date"
    assert err.request_id is not None
    assert err.invalid_record is not None
    assert err.invalid_record.data == _MIXED[1]


async def test_a_listing_delivers_or_skips_invalid_records(
    make_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(lambda call: page(_MIXED, None)) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        delivered = [r async for r in conn.list("work-orders", on_invalid="deliver")]
        with caplog.at_level(logging.WARNING, logger="makini_async"):
            skipped = [r.id async for r in conn.list("work-orders", on_invalid="skip")]
        pages = [p async for p in conn.list("work-orders", on_invalid="skip").pages()]
        with pytest.raises(errors.UsageError, match="on_invalid"):
            conn.list("work-orders", on_invalid="drop")  # type: ignore[call-overload]
    assert [type(r).__name__ for r in delivered] == ["WorkOrder", "WorkOrder", "InvalidRecord"]
    assert delivered[2].field == "due_date"
    assert skipped == ["a", "c"]
    assert "1 invalid work-orders record(s) skipped" in caplog.text
    assert "acme" in caplog.text
    assert [len(p.records) for p in pages] == [2]
    assert [i.id for i in pages[0].invalid] == ["b"]


async def test_a_single_record_that_does_not_fit_raises_with_it(make_pool: Any) -> None:
    bad = {"id": "w1", "completed_at": "tomorrow"}
    async with make_pool(lambda call: respond(200, {"data": bad})) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(errors.RecordStructureError) as info:
            await conn.get("work-orders", "w1")
        assert await conn.get("work-orders", "w1", as_dicts=True) == bad
    assert info.value.invalid_record is not None
    assert info.value.invalid_record.data == bad
    assert info.value.connection == "acme"
    assert info.value.request_id is not None


async def test_an_invalid_records_reason_never_carries_the_token(make_pool: Any) -> None:
    # A hostile or broken source echoes the credential into a record value.
    bad = {"id": "w1", "due_date": f"Bearer {TOKEN}", "completed_at": TOKEN}
    async with make_pool(lambda call: page([bad], None)) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        (invalid,) = [r async for r in conn.list("work-orders", on_invalid="deliver")]
        with pytest.raises(errors.RecordStructureError) as info:
            _ = [r async for r in conn.list("work-orders")]
    assert TOKEN not in invalid.reason
    assert TOKEN not in str(invalid)
    assert TOKEN not in str(info.value)
    assert invalid.data == bad  # the data itself is the customer's, kept as sent


async def test_testing_mode_changes_waits_only(make_pool: Any, clock: FakeClock) -> None:
    # A 429 still pauses its connection (for zero seconds) and still says so.
    set_testing(True)
    seen: list[Any] = []

    class States(Hook):
        def on_connection_state(self, event: Any) -> None:
            seen.append((event.old, event.new))

    answers = iter([error(429, "RATE_LIMIT_EXCEEDED", retry_after="5")])

    def handler(call: Call) -> Any:
        return next(answers, None) or respond(200, {"data": {"id": "a"}})

    async with make_pool(handler, as_dicts=True, hooks=[States()]) as (pool, _):
        conn = pool.connection(TOKEN)
        assert await conn.get("assets", "a") == {"id": "a"}
        assert conn.rate_limited == 1
    assert seen == [(ConnectionState.ACTIVE, ConnectionState.RATE_LIMITED)]
    assert clock.now == 1000.0
    # A Retry-After longer than the policy allows is raised, testing mode or not.
    too_long = error(429, "RATE_LIMIT_EXCEEDED", retry_after="3600")
    async with make_pool(lambda call: too_long, retry=RetryPolicy(max_retry_after=60)) as (
        pool,
        transport,
    ):
        with pytest.raises(errors.RateLimitError) as info:
            await pool.connection(TOKEN).get("assets", "a")
        assert info.value.retry_after == 3600
        assert len(transport.calls) == 1
