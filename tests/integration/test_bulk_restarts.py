"""A cursor the API rejects starts its chain again from the beginning, and loses nothing."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from makini_async import MakiniPool, Outcome, PageSizes, SQLiteCheckpoint
from makini_async.sinks import ParquetSink, PostgresSink, Sink
from makini_async.testing import MockMakini

from .pgutil import fetch, parquet_rows, states

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from makini_async import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

ENTITIES = ["work-orders", "assets"]
#: Many pages per chain: chains still walking when their cursors expire.
SMALL_PAGES = PageSizes({"work-orders": 50, "assets": 50})
TOKENS = [(f"plant-{i}", f"tok-secret-{i}") for i in range(6)]

Key = tuple[str, str, str]


def expected(server: MockMakini) -> set[Key]:
    return {
        (name, entity, r["id"])
        for name, token in TOKENS
        for entity in ENTITIES
        for r in server.records(token, entity)
    }


async def pull_some(
    pool: MakiniPool, checkpoint: Path, *, stop_after: int | None = None
) -> tuple[set[Key], Any]:
    got: set[Key] = set()
    async with pool.pull(ENTITIES, TOKENS, checkpoint=checkpoint, concurrency=4) as pull:
        pages = 0
        async for page in pull.pages():
            got.update((page.connection, page.entity.value, r["id"]) for r in page.records)
            pages += 1
            if pages == stop_after:
                break  # a crash, as far as the checkpoint can tell
    return got, pull.report


async def test_saved_cursors_the_api_rejects_restart_their_chains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=250) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        want = expected(server)
        first, _ = await pull_some(pool, checkpoint, stop_after=10)
        assert first < want
        # The source was re-synced: every saved cursor has expired.
        server.expire_cursors()
        second, report = await pull_some(pool, checkpoint, stop_after=12)
        restarted = {(c.connection, c.entity) for c in report.chains if c.restarts}
        assert restarted  # the chains that had saved a cursor
        assert all(c.restarts <= 1 for c in report.chains)
        assert all(c.start == "resumed" for c in report.chains if c.restarts)
        assert "rejected the chain's cursor" in caplog.text
        server.expire_cursors()  # and again, before the next rerun
        with caplog.at_level(logging.WARNING, logger="makini_async"):
            third, report = await pull_some(pool, checkpoint)
        assert report.ok, [str(c.error) for c in report.chains if c.error]
        assert first | second | third == want
        assert sum(c.restarts for c in report.chains) >= 1
        # Each rerun after that is an incremental one: nothing rejected, nothing failed.
        _, report = await pull_some(pool, checkpoint)
        assert report.ok
        assert {c.start for c in report.chains} == {"incremental"}
        assert not any(c.restarts for c in report.chains)
    store = SQLiteCheckpoint(checkpoint)
    try:
        assert all(not s.in_progress and s.high_water for _c, _e, s in store.items())
    finally:
        store.close()


class ForgettingSink:
    """A sink that keeps each chain's rows in memory and can forget a chain (as Parquet does)."""

    def __init__(self, server: MockMakini, expire_after: int, times: int = 1) -> None:
        self.rows: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.events: list[tuple[str, str, str]] = []
        self.server = server
        self.expire_after = expire_after
        self.times = times
        self.pages = 0

    @property
    def location(self) -> str:
        return "memory"

    @property
    def checkpoint_store(self) -> None:
        return None

    async def open(self, entities: Sequence[Entity]) -> None:
        pass

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        key = (page.connection, page.entity.value)
        self.rows[key].extend(r["id"] for r in page.records)
        self.events.append(("write", *key))
        self.pages += 1
        if self.times and self.pages % self.expire_after == 0:
            self.times -= 1
            self.server.expire_cursors()  # a re-sync of the source, mid-run

    async def forget(self, connection: str, entity: Entity) -> None:
        self.rows.pop((connection, entity.value), None)
        self.events.append(("forget", connection, entity.value))

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_cursors_that_expire_mid_run_restart_and_the_sink_forgets_first(
    tmp_path: Path,
) -> None:
    async with (
        MockMakini(records_per_entity=300) as server,
        MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SMALL_PAGES) as pool,
    ):
        sink = ForgettingSink(server, expire_after=7)
        assert isinstance(sink, Sink)
        report = await pool.pull(
            ENTITIES, TOKENS, sink=sink, checkpoint=tmp_path / "c.sqlite", concurrency=4
        ).run()
        assert report.ok, [str(c.error) for c in report.chains if c.error]
        restarted = [c for c in report.chains if c.restarts]
        assert restarted
        assert {("forget", c.connection, c.entity.value) for c in restarted} <= set(sink.events)
        # What the sink holds is every record exactly once: it forgot what came before.
        for name, token in TOKENS:
            for entity in ENTITIES:
                ids = sink.rows[name, entity]
                assert sorted(ids) == sorted(r["id"] for r in server.records(token, entity))
        for chain in restarted:
            assert chain.records > len(sink.rows[chain.connection, chain.entity.value])


async def test_a_second_rejection_in_one_run_fails_the_chain_and_a_rerun_completes_it(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "c.sqlite"
    async with (
        MockMakini(records_per_entity=1000) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        # Expire cursors twice within one chain's walk: at most one restart per run.
        sink = ForgettingSink(server, expire_after=3, times=2)
        report = await pool.pull("work-orders", [TOKENS[0]], sink=sink, checkpoint=checkpoint).run()
        (chain,) = report.chains
        assert chain.outcome is Outcome.FAILED
        assert chain.restarts == 1
        assert getattr(chain.error, "code", None) == "INVALID_REQUEST"
        rerun = ForgettingSink(server, expire_after=1, times=0)
        report = await pool.pull(
            "work-orders", [TOKENS[0]], sink=rerun, checkpoint=checkpoint
        ).run()
        assert report.ok
        (chain,) = report.chains
        assert chain.restarts == 1  # the saved cursor had expired too
        ids = sink.rows[TOKENS[0][0], "work-orders"] + rerun.rows[TOKENS[0][0], "work-orders"]
        assert set(ids) == {r["id"] for r in server.records(TOKENS[0][1], "work-orders")}


async def _pull_expiring_midway(server: MockMakini, sink: Any, *, after: int) -> Any:
    """A pull into ``sink`` whose cursors all expire once, after ``after`` pages."""
    async with MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SMALL_PAGES) as pool:
        async with pool.pull(ENTITIES, TOKENS, sink=sink, concurrency=4) as pull:
            pages = 0
            async for _page in pull.pages():
                pages += 1
                if pages == after:
                    server.expire_cursors()
    return pull.report


async def test_a_restarted_chain_is_in_postgres_once(pg_dsn: str) -> None:
    async with MockMakini(records_per_entity=600) as server:
        report = await _pull_expiring_midway(server, PostgresSink(pg_dsn), after=6)
        want = expected(server)
    assert report.ok, [str(c.error) for c in report.chains if c.error]
    assert report.restarts >= 1
    got: list[Key] = []
    for entity in ENTITIES:
        table = "makini_" + entity.replace("-", "_")
        rows = await fetch(pg_dsn, f"SELECT connection, id FROM {table}")  # noqa: S608
        got.extend((r["connection"], entity, r["id"]) for r in rows)
    assert len(got) == len(want)
    assert set(got) == want
    assert all(not s["in_progress"] and s["high_water"] for s in (await states(pg_dsn)).values())


async def test_a_restarted_chain_is_in_parquet_once(tmp_path: Path) -> None:
    if not hasattr(ParquetSink, "forget"):
        pytest.skip("the Parquet sink cannot forget a chain yet")
    async with MockMakini(records_per_entity=600) as server:
        sink = ParquetSink(tmp_path / "out", file_size=20_000)  # many commits
        report = await _pull_expiring_midway(server, sink, after=6)
        want = expected(server)
    assert report.ok, [str(c.error) for c in report.chains if c.error]
    assert report.restarts >= 1
    got = [
        (r["_connection"], entity, r["id"])
        for entity in ENTITIES
        for r in parquet_rows(tmp_path / "out" / entity)
    ]
    assert len(got) == len(want)
    assert set(got) == want
