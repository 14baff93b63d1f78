"""Outage edges: probes that meet other trouble, answers that end it, the pool after it."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from makini_async import (
    BreakerPolicy,
    ConnectionState,
    NotFound,
    OutageError,
    OutagePolicy,
    Outcome,
    RetryPolicy,
)
from makini_async._client.outage import Outage, Waiter
from makini_async.errors import RequestTimeout
from makini_async.instrumentation import HookSet
from tests.fakes import Call, FakeClock, error, page, respond
from tests.unit.test_outage import proxy_502


def ok(call: Call) -> Any:
    return respond(200, {"data": {"id": "a"}})


async def test_a_breaker_probe_that_meets_an_outage_is_kept_for_after_it(
    make_pool: Any, clock: FakeClock
) -> None:
    mode: dict[str, Any] = {"bad_down": True, "outage_until": None}

    def handler(call: Call) -> Any:
        if mode["outage_until"] is not None and clock.now < mode["outage_until"]:
            return proxy_502()
        if call.headers["Authorization"].endswith("bad") and mode["bad_down"]:
            return error(502, "CONNECTED_SYSTEM_ERROR")
        return ok(call)

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=2, timeout=1000),
        breaker=BreakerPolicy(threshold=2, cooldown=30),
    ) as (pool, _):
        bad = pool.connection("tok-bad", name="bad")
        others = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(12)]
        await asyncio.gather(bad.get("assets", "a"), return_exceptions=True)
        assert bad.state is ConnectionState.CIRCUIT_OPEN
        clock.now += 31  # the breaker's cool-down is over, the customer's system is back
        mode["bad_down"] = False
        mode["outage_until"] = clock.now + 20  # and the API goes away
        waiting = [asyncio.create_task(c.get("assets", "a")) for c in others]
        while pool.shared.outage.since is None:  # noqa: ASYNC110 - a state, not an event
            await asyncio.sleep(0)
        # bad's call is its breaker's probe; it fails blamelessly, then the API comes back.
        result = await bad.get("assets", "a")
        rest = await asyncio.gather(*waiting)
        assert result == {"id": "a"}
        assert rest == [{"id": "a"}] * 12
        assert bad.state is ConnectionState.ACTIVE
        clock.now += 1000
        assert await bad.get("assets", "a") == {"id": "a"}


async def test_waiting_calls_sleep_while_a_probe_is_out(make_pool: Any, clock: FakeClock) -> None:
    up_at = clock.now + 5

    async def handler(call: Call) -> Any:
        if clock.now < up_at:
            if pool.shared.outage.since is not None:
                await clock.sleep(0.5)  # the probe hangs before it fails
            return proxy_502()
        return ok(call)

    async with make_pool(handler, as_dicts=True, retry=RetryPolicy(attempts=3, timeout=1000)) as (
        pool,
        transport,
    ):
        conns = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(50)]
        results = await asyncio.gather(*(c.get("assets", "a") for c in conns))
    assert results == [{"id": "a"}] * 50
    assert 0.0 not in clock.sleeps  # no waiter ever spun on a zero-length wait
    assert len(clock.sleeps) < 50 * 6
    assert len(transport.calls) < 50 * 3 + 10


async def test_any_answer_from_the_api_ends_an_outage(make_pool: Any, clock: FakeClock) -> None:
    up_at = clock.now + 5

    def handler(call: Call) -> Any:
        # Back from the outage, the API answers: these records do not exist.
        return proxy_502() if clock.now < up_at else error(404, "NOT_FOUND")

    async with make_pool(
        handler,
        as_dicts=True,
        outage=OutagePolicy(budget=120),
        retry=RetryPolicy(attempts=3, timeout=10_000),
    ) as (pool, _):
        conns = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(40)]
        started = clock.now
        results = await asyncio.gather(
            *(c.get("assets", "missing") for c in conns), return_exceptions=True
        )
        assert pool.shared.outage.since is None
    assert Counter(type(r) for r in results) == {NotFound: 40}
    assert clock.now - started < 60


async def test_the_pool_serves_again_after_its_calls_gave_up(
    make_pool: Any, clock: FakeClock
) -> None:
    up_at = clock.now + 90

    def handler(call: Call) -> Any:
        return proxy_502() if clock.now < up_at else ok(call)

    async with make_pool(
        handler,
        as_dicts=True,
        outage=OutagePolicy(budget=120),
        retry=RetryPolicy(attempts=3, timeout=60),
    ) as (pool, transport):
        conns = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(10)]
        during = await asyncio.gather(
            *(c.get("assets", "a") for c in conns), return_exceptions=True
        )
        assert OutageError in {type(r) for r in during}
        clock.now += 3600  # the API has long been back: the first call finds out
        sent = len(transport.calls)
        assert [await conns[0].get("assets", "a") for _ in range(3)] == [{"id": "a"}] * 3
        assert len(transport.calls) - sent == 3
        assert pool.shared.outage.since is None


async def test_a_call_gives_up_after_waiting_its_budget_while_later_calls_still_probe(
    make_pool: Any, clock: FakeClock
) -> None:
    up_at = clock.now + 200

    def handler(call: Call) -> Any:
        return proxy_502() if clock.now < up_at else ok(call)

    async with make_pool(
        handler,
        as_dicts=True,
        outage=OutagePolicy(budget=120),
        retry=RetryPolicy(attempts=3, timeout=10_000),
    ) as (pool, _):
        early = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(6)]
        first = await asyncio.gather(*(c.get("assets", "a") for c in early), return_exceptions=True)
        assert all(isinstance(r, OutageError) for r in first)
        assert "outage budget" in str(first[0])
        # The outage goes on, but a call that starts now waits its own budget and
        # gets through when the API is back at +200 s.
        assert await early[0].get("assets", "a") == {"id": "a"}
        assert clock.now >= up_at


async def test_the_probe_never_sits_out_a_rate_limited_connections_pause(
    make_pool: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase: dict[str, Any] = {"name": "429", "up_at": 0.0}

    def handler(call: Call) -> Any:
        if phase["name"] == "429":
            return error(429, "RATE_LIMIT_EXCEEDED", retry_after="200")
        return proxy_502() if clock.now < phase["up_at"] else ok(call)

    async with make_pool(handler, as_dicts=True, retry=RetryPolicy(attempts=3, timeout=10_000)) as (
        pool,
        _,
    ):
        limited = pool.connection("tok-limited", name="limited")
        await asyncio.gather(limited.get("assets", "a"), return_exceptions=True)
        assert limited._cooldown_left() > 150
        outage = pool.shared.outage
        admit = Outage.admit
        paused_at_admission: list[float] = []

        async def watched(self: Outage, waiter: Waiter) -> None:
            task = asyncio.current_task()
            if task is not None and task.get_name() == "limited":
                paused_at_admission.append(limited._cooldown_left())
            await admit(self, waiter)

        monkeypatch.setattr(Outage, "admit", watched)
        phase.update(name="outage", up_at=clock.now + 5)
        others = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(12)]
        tasks = [asyncio.create_task(c.get("assets", "a")) for c in others]
        while outage.since is None:  # noqa: ASYNC110 - a state, not an event
            await asyncio.sleep(0)
        tasks.append(asyncio.create_task(limited.get("assets", "a"), name="limited"))
        assert await asyncio.gather(*tasks) == [{"id": "a"}] * 13
    # A call waits for (or probes) the API only once its own connection may send.
    assert paused_at_admission
    assert max(paused_at_admission) <= 0


async def test_slow_systems_at_a_pulls_tail_do_not_leave_the_pool_refusing(
    make_pool: Any, clock: FakeClock
) -> None:
    async def handler(call: Call) -> Any:
        if "slow" in call.headers["Authorization"]:
            await clock.sleep(30)  # a read timeout, four connections at once
            return RequestTimeout("read timed out")
        return page([{"id": "a"}], None) if call.params else ok(call)

    async with make_pool(handler, as_dicts=True, outage=OutagePolicy(budget=300)) as (pool, _):
        specs = [(f"slow{i}", f"tok-slow{i}") for i in range(4)]
        report = await pool.pull("assets", specs).run()
        assert {c.outcome for c in report.chains} <= {Outcome.FAILED, Outcome.SKIPPED}
        assert pool.shared.outage.since is None
        healthy = pool.connection("tok-healthy", name="healthy")
        assert await healthy.get("assets", "a") == {"id": "a"}


async def test_a_probe_from_an_outage_that_ended_does_not_touch_the_next_one(
    clock: FakeClock,
) -> None:
    outage = Outage(OutagePolicy(), clock=clock, sleep=clock.sleep, hooks=HookSet([]))
    boom = RequestTimeout("read timed out")

    async def begin() -> None:
        for i in range(10):
            await outage.failed(f"c{i % 3}", boom)
        assert outage.active

    await begin()
    clock.now += 5
    old = Waiter(float("inf"))
    await outage.admit(old)
    assert old.ticket
    await outage.succeeded(clock.now)  # the outage ends while the old probe is out
    await begin()
    clock.now += 5
    new = Waiter(float("inf"))
    await outage.admit(new)
    assert new.ticket
    outage.probe_failed(old)  # stale: ignored
    third = Waiter(clock.now + 1)
    # The new outage's probe is still out: a third waiter waits (and gives up at its deadline).
    with pytest.raises(OutageError, match="call timeout"):
        await outage.admit(third)
    assert third.ticket == 0
    outage.probe_failed(new)
    assert new.ticket == 0


async def test_a_call_that_meets_a_second_outage_gets_a_new_budget(clock: FakeClock) -> None:
    outage = Outage(OutagePolicy(budget=60), clock=clock, sleep=clock.sleep, hooks=HookSet([]))
    boom = RequestTimeout("read timed out")

    async def begin() -> None:
        for i in range(10):
            await outage.failed(f"c{i % 3}", boom)
        assert outage.active

    waiter = Waiter(float("inf"))
    await begin()
    clock.now += 5
    await outage.admit(waiter)  # the first outage's probe
    outage.probe_failed(waiter)
    await outage.succeeded(clock.now)
    clock.now += 100  # longer than the budget, then the API goes away again
    await begin()
    clock.now += 5
    await outage.admit(waiter)  # not given up: this outage has its own budget
    assert waiter.ticket
    assert waiter.until == clock.now + 60
