"""A bulk pull rides through an outage of the whole API in one run, and still isolates."""

from __future__ import annotations

import asyncio
from collections import Counter

from makini_async import (
    BreakerPolicy,
    Hook,
    MakiniPool,
    OutageEvent,
    Outcome,
    PageSizes,
    RetryPolicy,
    Timeouts,
    set_testing,
)
from makini_async.testing import FaultPlan, MockMakini

TOKENS = [(f"plant-{i:03d}", f"tok_outage_{i:03d}_{'x' * 12}") for i in range(200)]


class Outages(Hook):
    def __init__(self) -> None:
        self.events: list[OutageEvent] = []

    def on_outage(self, event: OutageEvent) -> None:
        self.events.append(event)


async def test_200_connections_ride_through_a_5_second_outage_in_one_run() -> None:
    set_testing(True)  # backoff is zero; the outage still takes its 5 real seconds
    hook = Outages()
    async with MockMakini(records_per_entity=300) as server:
        async with MakiniPool(
            base_url=server.url,
            as_dicts=True,
            hooks=[hook],
            page_sizes=PageSizes({"work-orders": 50, "purchase-orders": 50}),
            breaker=BreakerPolicy(threshold=8),
        ) as pool:
            pull = pool.pull(["work-orders", "purchase-orders"], TOKENS)
            seen: Counter[tuple[str, str, str]] = Counter()
            pages = 0
            async with pull:
                async for page in pull.pages():
                    pages += 1
                    if pages == 300:
                        server.start_outage(5.0)  # every connection fails at once
                    for record in page.records:
                        seen[(page.connection, page.entity.value, record["id"])] += 1
        expected = {
            (name, entity, r["id"])
            for name, token in TOKENS
            for entity in ("work-orders", "purchase-orders")
            for r in server.records(token, entity)
        }
        failed_during_outage = server.outage_requests
    assert pull.report.outcomes() == {Outcome.COMPLETED: 400}
    assert set(seen) == expected
    assert max(seen.values()) == 1  # every record exactly once
    assert [e.kind for e in hook.events] == ["began", "ended"]
    assert hook.events[1].duration >= 4.0
    assert failed_during_outage > 0
    # Waiting, not hammering: a probe at a time during the outage.
    assert failed_during_outage < 400


async def test_one_connection_whose_system_is_down_trips_only_its_own_breaker() -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=100) as server:
        server.configure_connection(TOKENS[7][1], status="offline")  # its SAP is down
        async with MakiniPool(
            base_url=server.url,
            as_dicts=True,
            breaker=BreakerPolicy(threshold=2, cooldown=0.2),
            retry=RetryPolicy(attempts=2),
            timeouts=Timeouts(read=5),
        ) as pool:
            async with pool.pull("assets", TOKENS[:50], patience=1.0) as pull:
                _ = [i async for i in pull]
            down = pool.connection(TOKENS[7][1])
            states = {c.name: c.state.value for c in pool}
    outcomes = {c.connection: c.outcome for c in pull.report.chains}
    assert outcomes.pop("plant-007") is Outcome.FAILED
    assert set(outcomes.values()) == {Outcome.COMPLETED}
    assert pull.report.chains[7].deferrals >= 1  # it waited for its breaker first
    assert down.breaker_open
    assert {v for k, v in states.items() if k != "plant-007"} == {"active"}


async def test_random_faults_across_connections_are_no_outage() -> None:
    # 5% of requests failing here and there is the connections' weather, not an outage.
    set_testing(True)
    hook = Outages()
    faults = FaultPlan(seed=4, error_500=0.05, html_error=0.03, drop=0.02)
    async with MockMakini(records_per_entity=200, faults=faults) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True, hooks=[hook]) as pool:
            async with pool.pull("work-orders", TOKENS[:100]) as pull:
                count = sum([1 async for _ in pull])
    assert pull.report.ok
    assert count == 100 * 200
    assert hook.events == []
    await asyncio.sleep(0)
