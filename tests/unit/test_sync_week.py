"""A simulated week of a sync of 1,000 connections: spread, and nothing that grows.

The clock and the sleep are injected, and only the pull itself (the
network) is replaced: the service's loop, schedule, claims bookkeeping and
status run as they do in production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from typing import Any

from makini_async import Entity, MakiniPool, PullOptions
from makini_async.bulk import ChainReport, Outcome
from makini_async.sync import SyncService

HOUR = 3600.0
WEEK = 7 * 24 * HOUR
CONNECTIONS = 1000
#: Every connection is pulled every 6 hours (28 times a week: 28,000 pulls in all).
EVERY = 6 * HOUR


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.passed = asyncio.Event()
        self.end = WEEK

    def __call__(self) -> float:
        return self.now

    def utc(self) -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now >= self.end:
            self.passed.set()
        await asyncio.sleep(0)


class NullSink:
    location = "nowhere"
    checkpoint_store = None

    async def open(self, entities: Sequence[Entity]) -> None: ...
    async def write(self, page: Any, state: Any) -> None: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...


class Simulated(SyncService):
    """The service with the network taken out: every pull completes at once."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, clock=clock, wall_clock=clock.utc, sleep=clock.sleep, **kwargs)
        self.simulated = clock
        self.starts: Counter[int] = Counter()
        self.per_key: Counter[str] = Counter()

    async def _run_pull(
        self, entity: Entity, handles: list[Any]
    ) -> tuple[Sequence[ChainReport], BaseException | None]:
        await asyncio.sleep(0)
        minute = int(self.simulated.now // 60)
        chains = []
        for conn in handles:
            self.starts[minute] += 1
            self.per_key[conn.name] += 1
            chains.append(
                ChainReport(
                    connection=conn.name,
                    entity=entity,
                    outcome=Outcome.COMPLETED,
                    records=1,
                )
            )
        return chains, None


async def test_a_week_of_one_thousand_connections_is_spread_and_flat() -> None:
    clock = Clock()
    tokens = [(f"plant-{i:04d}", f"token-week-{i:04d}") for i in range(CONNECTIONS)]
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        service = Simulated(
            pool,
            (Entity.WORK_ORDERS,),
            tokens,
            sink=NullSink(),  # type: ignore[arg-type]
            dsn=None,
            every=EVERY,
            options=PullOptions(),
            clock=clock,
            learn_ids=False,
        )
        tracemalloc.start()
        try:
            await service.start()
            samples = []
            for day in range(1, 8):
                clock.end = day * 24 * HOUR
                clock.passed.clear()
                await asyncio.wait_for(clock.passed.wait(), 120)
                gc.collect()
                samples.append(
                    (len(asyncio.all_tasks()), tracemalloc.get_traced_memory()[0], len(pool))
                )
            await service.stop()
        finally:
            tracemalloc.stop()

    # Every connection once at start (no state), then once an interval.
    rounds = WEEK / EVERY
    assert min(service.per_key.values()) >= rounds - 1
    assert max(service.per_key.values()) <= rounds + 2
    # Spread: once every chain is back on its phase (one interval and a half), about
    # 2.8 starts a minute (1,000 over 360 minutes), never a herd.
    settled = int(1.5 * EVERY // 60)
    later = [service.starts.get(m, 0) for m in range(settled, int(WEEK // 60))]
    assert max(later) <= 15
    assert 2.0 < sum(later) / len(later) < 3.6
    # Nothing grows from the second day to the seventh: tasks, handles, memory.
    tasks, memory, handles = zip(*samples[1:], strict=True)
    assert max(tasks) - min(tasks) <= 2
    assert set(handles) == {CONNECTIONS}
    assert max(memory) - min(memory) < 512 * 1024
    assert service.schedule.heap_size <= 2 * CONNECTIONS + 64
