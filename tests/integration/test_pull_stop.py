"""``Pull.stop()``: stop fetching, land what was fetched, end; the next run resumes exactly."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from makini_async import MakiniPool
from makini_async.bulk import Outcome
from makini_async.sinks import JsonLinesSink
from makini_async.testing import FaultPlan, MockMakini

from .scaleutil import landed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from makini_async.entities import Entity

TOKENS = [(f"plant-{i:02d}", f"tok_halt_{i:02d}_{'w' * 16}") for i in range(8)]
ENTITIES = ("work-orders", "assets")


class StopOnOpen(JsonLinesSink):
    """A JSON Lines sink that asks for a stop as it opens: before any worker has run."""

    def __init__(self, directory: Path, stop: Callable[[], None]) -> None:
        super().__init__(directory)
        self._stop = stop

    async def open(self, entities: Sequence[Entity]) -> None:
        await super().open(entities)
        # Runs after the workers are created and before their first step.
        asyncio.get_running_loop().call_soon(self._stop)


async def test_a_stop_before_any_worker_ran_ends_the_pull(tmp_path: Path) -> None:
    async with MockMakini(records_per_entity=50) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            holder: list[Any] = []

            def stop() -> None:
                holder[0].stop()

            sink = StopOnOpen(tmp_path / "out", stop)
            async with pool.pull(ENTITIES, TOKENS, sink=sink) as pull:
                holder.append(pull)
                report = await asyncio.wait_for(pull.run(), 10)
    assert report.outcomes() == {Outcome.CANCELLED: len(TOKENS) * len(ENTITIES)}
    assert report.records == 0
    assert server.request_log == []


async def test_stop_lands_what_was_fetched_and_the_next_run_resumes(tmp_path: Path) -> None:
    out, checkpoint = tmp_path / "out", tmp_path / "pull.sqlite"
    async with MockMakini(records_per_entity=300, faults=FaultPlan(latency=0.01)) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            sink = JsonLinesSink(out)
            async with pool.pull(
                ENTITIES, TOKENS, sink=sink, checkpoint=checkpoint, concurrency=4
            ) as pull:

                def on_page(page: object) -> None:
                    if pull.report.records >= 500:
                        pull.stop()  # pages already fetched still come, then the run ends

                report = await asyncio.wait_for(pull.run(on_page), 10)
            got = landed(out)
            assert report.records == len(got)  # every page fetched landed, and is counted
            assert max(got.values()) == 1
            assert report.outcomes().get(Outcome.CANCELLED, 0) > 0
            assert len(got) < len(TOKENS) * len(ENTITIES) * 300
            async with pool.pull(ENTITIES, TOKENS, sink=sink, checkpoint=checkpoint) as again:
                second = await again.run()
        assert second.ok
        got = landed(out)
        # A stopped chain repeats nothing (each landed page had its checkpoint); a chain
        # that had completed runs incrementally and may repeat its overlap.
        stopped = {
            (c.connection, c.entity.value) for c in report.chains if c.outcome is Outcome.CANCELLED
        }
        assert max(n for (c, e, _), n in got.items() if (c, e) in stopped) == 1
        assert set(got) == {
            (name, entity, record["id"])
            for name, token in TOKENS
            for entity in ENTITIES
            for record in server.records(token, entity)
        }
