"""Page sizes adapt both ways, per connection and entity, and a resumed run starts learnt."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from makini_async import PageSizes, RequestTimeout, RetryPolicy, Timeouts
from makini_async._client.walk import Sizing, Walk
from makini_async.checkpoint import SQLiteCheckpoint
from tests.fakes import Call, FakeClock, page
from tests.unit.conftest import TOKEN

_cursors = itertools.count()


def sizes(walk: Walk, pages: list[tuple[int, float]]) -> list[int]:
    seen = []
    for size, elapsed in pages:
        walk.advance(f"c{next(_cursors)}", size, None, elapsed)
        seen.append(walk.page_size)
    return seen


def test_the_rule() -> None:
    sizing = Sizing(largest=200, floor=10, slow=10.0, fast=2.0, grow_after=3)
    walk = Walk(None, 200, connection="acme", sizing=sizing)
    # Slow pages halve (not below the floor); fast runs double back; medium ones hold.
    assert sizes(walk, [(200, 12.0), (100, 12.0), (50, 5.0), (50, 0.5), (50, 0.5)]) == [
        100,
        50,
        50,
        50,
        50,
    ]
    assert sizes(walk, [(50, 0.5), (100, 0.5), (100, 0.5), (100, 0.1)]) == [100, 100, 100, 200]
    assert sizes(walk, [(200, 0.1)] * 5) == [200] * 5  # never above the largest
    tiny = Walk(None, 12, connection="acme", sizing=sizing)
    assert sizes(tiny, [(12, 30.0), (10, 30.0)]) == [10, 10]


def test_never_above_a_limit_the_api_gave() -> None:
    sizing = Sizing(largest=500, floor=10, slow=10.0, fast=2.0, grow_after=1, limit=lambda: 300)
    walk = Walk(None, 100, connection="acme", sizing=sizing)
    assert sizes(walk, [(100, 0.1), (200, 0.1), (300, 0.1)]) == [200, 300, 300]


async def test_a_slow_backend_shrinks_then_grows_back_and_a_resume_starts_learnt(
    make_pool: Any, clock: FakeClock, tmp_path: Path
) -> None:
    # 400 records; pages above 25 records time out while the source system is
    # slow (the first 30 virtual seconds), then every page is fast again.
    records = [{"id": f"a{i:03d}"} for i in range(400)]
    asked: list[int] = []
    recovered_at = clock.now + 30.0

    def handler(call: Call) -> Any:
        size = int(call.params["page_size"])
        start = int(call.params.get("cursor", "0"))
        asked.append(size)
        if clock.now < recovered_at and size > 25:
            return RequestTimeout("GET /assets timed out")
        chunk = records[start : start + size]
        nxt = str(start + size) if start + size < len(records) else None
        return page(chunk, nxt)

    async def slow_then_fast(call: Call) -> Any:
        await clock.sleep(4.0)  # every attempt takes a while on the virtual clock
        return handler(call)

    checkpoint = tmp_path / "cp.sqlite"
    async with make_pool(
        slow_then_fast,
        as_dicts=True,
        timeouts=Timeouts(read=20.0),
        page_sizes=PageSizes({"assets": 100}, min_page_size=5, fast_page=5.0, grow_after=2),
        retry=RetryPolicy(attempts=4, wait_initial=0.1, wait_max=0.1),
    ) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)], checkpoint=checkpoint) as pull:
            got = [i.record["id"] async for i in pull]
    assert got == [r["id"] for r in records]
    assert pull.report.ok
    assert min(asked) <= 25  # it shrank to what the slow system could serve
    assert asked[-1] > 25  # and grew back once pages were fast again
    assert max(asked) == 100


async def test_a_resumed_chain_starts_at_the_size_it_had_learnt(
    make_pool: Any, tmp_path: Path
) -> None:
    from makini_async.checkpoint import ChainState
    from makini_async.connection import token_fingerprint

    checkpoint = tmp_path / "cp.sqlite"
    store = SQLiteCheckpoint(checkpoint)
    state = ChainState(
        in_progress=True, cursor="200", page_size=25, fingerprint=token_fingerprint(TOKEN)
    )
    store.save("acme", "assets", state)
    store.close()
    asked: list[tuple[str | None, int]] = []

    def handler(call: Call) -> Any:
        asked.append((call.params.get("cursor"), int(call.params["page_size"])))
        return page([{"id": "z"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)], checkpoint=checkpoint) as pull:
            _ = [i async for i in pull]
    assert asked == [("200", 25)]
    (chain,) = pull.report.chains
    assert chain.resumed
