"""De-duplication within a chain: what a misbehaving source repeats, in bounded memory."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from makini_async.bulk._dedupe import PAGES_PER_GENERATION
from tests.fakes import Call, page, run_fresh
from tests.unit.conftest import TOKEN


def ids(*numbers: int) -> list[dict[str, str]]:
    return [{"id": f"a{n:04d}"} for n in numbers]


def scripted(pages: list[list[dict[str, str]]]) -> Any:
    """A source that serves ``pages`` in order, one cursor each."""

    def handler(call: Call) -> Any:
        index = int(call.params.get("cursor", "0"))
        more = index + 1 < len(pages)
        return page(pages[index], str(index + 1) if more else None)

    return handler


async def pulled(make_pool: Any, pages: list[list[dict[str, str]]]) -> tuple[list[str], int]:
    async with make_pool(scripted(pages), as_dicts=True) as (pool, _):
        async with pool.pull("assets", [TOKEN]) as pull:
            got = [item.record["id"] async for item in pull]
    (chain,) = pull.report.chains
    return got, chain.duplicates


async def test_a_page_served_twice_is_delivered_once(make_pool: Any) -> None:
    first, second = ids(*range(10)), ids(*range(10, 20))
    got, duplicates = await pulled(make_pool, [first, second, second, ids(20, 21)])
    assert got == [r["id"] for r in first + second + ids(20, 21)]
    assert duplicates == 10


async def test_an_overlap_at_a_page_boundary_is_delivered_once(make_pool: Any) -> None:
    # An offset-paged source saw an insert: each page starts with the last of the one before.
    got, duplicates = await pulled(
        make_pool, [ids(*range(10)), ids(*range(9, 19)), ids(18, 19, 20)]
    )
    assert got == [f"a{n:04d}" for n in range(21)]
    assert duplicates == 2


@pytest.mark.parametrize("back", range(1, PAGES_PER_GENERATION + 1))
async def test_a_page_repeated_among_the_last_pages_is_caught(make_pool: Any, back: int) -> None:
    pages = [ids(*range(10 * i, 10 * i + 10)) for i in range(8)]
    repeated = [*pages[:5], pages[5 - back], *pages[5:]]
    got, duplicates = await pulled(make_pool, repeated)
    assert got == [f"a{n:04d}" for n in range(80)]
    assert duplicates == 10


async def test_a_record_repeated_long_after_is_delivered_again(make_pool: Any) -> None:
    # The documented limit: only the last pages are remembered (at least once beyond them).
    pages = [ids(*range(10 * i, 10 * i + 10)) for i in range(10)]
    got, duplicates = await pulled(make_pool, [*pages, ids(0)])
    assert got == [f"a{n:04d}" for n in range(100)] + ["a0000"]
    assert duplicates == 0


_MEMORY_PROBE = textwrap.dedent(
    """
    import gc, json, os
    from makini_async.bulk._chain import Chain, fresh
    from makini_async.entities import Entity

    size = 500
    def rss():  # resident memory now, in KiB
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    def chain_of(records):
        chain = Chain(conn=None, connection="c", entity=Entity.WORK_ORDERS)
        for number in range(records // size):
            page = [{"id": f"wo_{number * size + i:09d}"} for i in range(size)]
            kept, _ = fresh(chain, page, (), as_dicts=True, request_id=None)
            assert len(kept) == size
        return chain

    chain_of(2 * size)  # warm up: the allocator's first arenas
    gc.collect()
    base = rss()
    short = chain_of(200_000)
    gc.collect()
    after_short = rss()
    del short
    long = chain_of(2_000_000)
    gc.collect()
    after_long = rss()
    print(json.dumps({"short": after_short - base, "long": after_long - base,
                      "ids": len(long.seen)}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_a_long_chain_keeps_its_memory_flat() -> None:
    result = run_fresh(_MEMORY_PROBE)
    # 2,000,000 records cost no more memory than 200,000 (RSS growth, KiB; 2 MiB of noise).
    assert result["long"] < 1.3 * max(result["short"], 2048)
    assert result["ids"] <= 2 * PAGES_PER_GENERATION * 500
