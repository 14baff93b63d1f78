"""Which answers start a chain again: a 400 on a request that carries a cursor, once a run."""

from __future__ import annotations

from typing import Any

import pytest

from makini_async import Outcome
from tests.fakes import Call, error, page
from tests.unit.conftest import TOKEN


@pytest.mark.parametrize("code", ["INVALID_REQUEST", "INVALID_CURSOR"])
async def test_a_rejected_cursor_starts_the_chain_again(make_pool: Any, code: str) -> None:
    rejected: list[str] = []

    def handler(call: Call) -> Any:
        cursor = call.params.get("cursor")
        if cursor is None:
            return page([{"id": "a"}, {"id": "b"}], "c1")
        if not rejected:
            rejected.append(cursor)
            return error(400, code, "the cursor has expired; start the listing again")
        return page([{"id": "c"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        async with pool.pull("assets", [TOKEN]) as pull:
            got = [item.record["id"] async for item in pull]
    (chain,) = pull.report.chains
    assert chain.outcome is Outcome.COMPLETED
    assert chain.restarts == 1
    assert pull.report.restarts == 1
    # Delivered again from the start (at least once), nothing skipped.
    assert got == ["a", "b", "a", "b", "c"]
    assert [c.params.get("cursor") for c in transport.calls] == [None, "c1", None, "c1"]
    assert "1 restarted" in pull.report.summary()


async def test_a_400_without_a_cursor_fails_the_chain_at_once(make_pool: Any) -> None:
    def handler(call: Call) -> Any:
        return error(400, "INVALID_REQUEST", "modified_after must be an ISO 8601 date")

    async with make_pool(handler, as_dicts=True) as (pool, transport):
        report = await pool.pull("assets", [TOKEN]).run()
    (chain,) = report.chains
    assert chain.outcome is Outcome.FAILED
    assert chain.restarts == 0
    assert len(transport.calls) == 1


async def test_other_400s_on_a_cursor_are_not_a_restart(make_pool: Any) -> None:
    def handler(call: Call) -> Any:
        if call.params.get("cursor") is None:
            return page([{"id": "a"}], "c1")
        return error(400, "VALIDATION_FAILED", "no")

    async with make_pool(handler, as_dicts=True) as (pool, _):
        report = await pool.pull("assets", [TOKEN]).run()
    (chain,) = report.chains
    assert chain.outcome is Outcome.FAILED
    assert chain.restarts == 0
