"""A listing whose cursors loop or never end stops with PaginationError, in bounded work."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from makini_async import Outcome, PaginationError
from makini_async.pagination import CursorGuard
from tests.fakes import Call, page
from tests.unit.conftest import TOKEN


def walk(guard: CursorGuard, cursors: Any) -> int:
    """Feed cursors until the guard objects; return how many it took."""
    count = 0
    try:
        for count, cursor in enumerate(cursors, start=1):  # noqa: B007 - read after the loop
            guard.advance(cursor)
    except PaginationError:
        return count
    return -1


@given(
    lead=st.integers(min_value=0, max_value=50),
    loop=st.integers(min_value=1, max_value=200),
)
def test_any_loop_is_caught_within_a_few_times_its_length(lead: int, loop: int) -> None:
    prefix = [f"p{i}" for i in range(lead)]
    cycle = [f"c{i}" for i in range(loop)]
    cursors = itertools.chain(prefix, itertools.cycle(cycle))
    taken = walk(CursorGuard(None), cursors)
    assert taken > lead + loop - 1  # never before the loop closes
    # Brent: saved at pages 2^k - 1; caught once the window covers the loop.
    assert taken <= 3 * (lead + loop) + 2


def test_distinct_cursors_pass_until_the_page_guard() -> None:
    guard = CursorGuard(None, max_pages=1000)
    assert walk(guard, (f"c{i}" for i in range(999))) == -1
    with pytest.raises(PaginationError, match="page-count guard"):
        guard.advance("c-last")


def test_the_start_cursor_counts() -> None:
    with pytest.raises(PaginationError, match="repeats the cursor"):
        CursorGuard("a").advance("a")


async def test_a_listing_alternating_a_b_stops(make_pool: Any) -> None:
    def handler(call: Call) -> Any:
        nxt = {"": "A", "A": "B", "B": "A"}[call.params.get("cursor", "")]
        return page([{"id": f"x{len(call.url)}"}], nxt)

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(PaginationError) as info:
            _ = [r async for r in conn.list("assets")]
        assert len(transport.calls) < 10
        assert info.value.connection == "acme"
        assert info.value.request_id is not None
        transport.calls.clear()
        async with pool.pull("assets", [("acme", TOKEN), ("other", "tok2")]) as pull:
            _ = [i async for i in pull]
        assert len(transport.calls) < 20
    outcomes = {c.connection: c.outcome for c in pull.report.chains}
    assert outcomes == {"acme": Outcome.FAILED, "other": Outcome.FAILED}
    assert isinstance(pull.report.chains[0].error, PaginationError)
