"""Bulk-pull edges: closing from another task, a probe in flight, ids that cannot de-duplicate."""

from __future__ import annotations

import asyncio
from typing import Any

from makini_async import BreakerPolicy, InvalidRecord, Outcome, RetryPolicy
from tests.fakes import Call, FakeClock, error, page


async def test_aclose_from_another_task_stops_the_pull_and_wakes_its_consumer(
    make_pool: Any,
) -> None:
    release = asyncio.Event()

    async def handler(call: Call) -> Any:
        await release.wait()  # a page that never comes while we close
        return page([{"id": "a"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        pull = pool.pull("assets", ["tok1", "tok2"])
        got: list[Any] = []

        async def consume() -> None:
            async for item in pull:
                got.append(item)

        consumer = asyncio.create_task(consume())
        while transport.in_flight < 2:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0)
        await pull.aclose()
        await asyncio.wait_for(consumer, 5)
        assert transport.in_flight == 0
    assert got == []
    assert {c.outcome for c in pull.report.chains} == {Outcome.CANCELLED}


async def test_a_chain_waiting_for_another_chains_breaker_probe_never_spins(
    make_pool: Any, clock: FakeClock
) -> None:
    state = {"down": True}

    async def handler(call: Call) -> Any:
        if state["down"]:
            return error(502, "CONNECTED_SYSTEM_ERROR")
        if call.path.startswith("/assets"):
            await clock.sleep(3)  # the breaker's probe takes a while
        return page([{"id": "x1"}], None)

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=2, timeout=1000),
        breaker=BreakerPolicy(threshold=2, cooldown=30),
    ) as (pool, _):
        conn = pool.connection("tok-x", name="x")
        await asyncio.gather(conn.get("assets", "a"), return_exceptions=True)
        clock.now += 31
        state["down"] = False
        before = len(clock.sleeps)
        report = await pool.pull(["assets", "vendors"], [conn]).run()
    assert [c.outcome for c in report.chains] == [Outcome.COMPLETED, Outcome.COMPLETED]
    waits = clock.sleeps[before:]
    assert 0.0 not in waits
    assert len(waits) < 20
    assert sum(c.deferrals for c in report.chains) >= 1


async def test_ids_that_cannot_tell_records_apart_are_invalid_and_duplicates_are_counted(
    make_pool: Any,
) -> None:
    def handler(call: Call) -> Any:
        return page(
            [{"id": ""}, {"id": "", "name": "other"}, {"id": "7"}, {"id": "7"}, {"id": "8"}],
            None,
        )

    for as_dicts in (False, True):
        async with make_pool(handler) as (pool, _):
            pull = pool.pull("assets", ["tok"], as_dicts=as_dicts)
            got = [item.record async for item in pull]
        invalid = [r for r in got if isinstance(r, InvalidRecord)]
        valid = [r for r in got if not isinstance(r, InvalidRecord)]
        assert len(invalid) == 2
        assert {i.field for i in invalid} == {"id"}
        assert len(valid) == 2
        (chain,) = pull.report.chains
        assert chain.duplicates == 1
        assert chain.invalid == 2


async def test_a_pull_reports_repr_stays_short_whatever_its_size(make_pool: Any) -> None:
    def handler(call: Call) -> Any:
        return page([{"id": "a"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, _):
        report = await pool.pull("assets", [f"tok{i}" for i in range(300)]).run()
    text = repr(report)
    assert text.startswith("<PullReport 300 chains, 300 records, 0 failed connections, ")
    assert len(text) < 120
