"""Bulk-pull rules that need a scripted server: de-duplication, bad arguments, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from makini_async import (
    CheckpointError,
    Entity,
    InvalidRecord,
    JSONCheckpoint,
    Outcome,
    PulledRecord,
    RecordStructureError,
    SinkError,
    UsageError,
)
from makini_async.checkpoint import ChainState, SQLiteCheckpoint, open_checkpoint
from makini_async.models import Asset
from makini_async.pagination import Page
from tests.fakes import Call, error, page, respond
from tests.unit.conftest import TOKEN


def repeating(call: Call) -> Any:
    # A misbehaving source system: page two repeats a record of page one.
    if "cursor" not in call.params:
        return page([{"id": "a"}, {"id": "b"}, {"id": "b"}], "c1")
    return page([{"id": "b"}, {"id": "c"}], None)


async def test_records_repeated_by_the_server_are_delivered_once(make_pool: Any) -> None:
    async with make_pool(repeating, as_dicts=True) as (pool, _):
        async with pool.pull("assets", [TOKEN]) as pull:
            items = [item async for item in pull]
        assert [item.record["id"] for item in items] == ["a", "b", "c"]
        assert all(type(item) is PulledRecord for item in items)
        assert items[0] == PulledRecord(items[0].connection, Entity.ASSETS, {"id": "a"})
        assert items[0].entity is Entity.ASSETS
        assert pull.report.records == 3
        async with pool.pull("assets", [TOKEN], dedupe=False) as pull:
            ids = [item.record["id"] async for item in pull]
        assert ids == ["a", "b", "b", "b", "c"]


async def test_a_cursor_that_repeats_is_an_error_not_a_loop(make_pool: Any) -> None:
    async with make_pool(lambda call: page([{"id": "x"}], "same"), as_dicts=True) as (pool, _):
        async with pool.pull("assets", [TOKEN]) as pull:
            items = [item async for item in pull]
        (chain,) = pull.report.chains
        assert chain.outcome is Outcome.FAILED
        assert "repeats the cursor" in str(chain.error)
        assert len(items) == 1


async def test_a_record_that_does_not_fit_is_delivered_and_its_chain_goes_on(
    make_pool: Any,
) -> None:
    def handler(call: Call) -> Any:
        if "cursor" not in call.params:
            return page([{"id": "wo_1", "created_at": "not a date"}, {"id": "wo_2"}], "c2")
        return page([{"id": "wo_3"}], None)

    async with make_pool(handler) as (pool, _):
        async with pool.pull("work-orders", [("acme", TOKEN)]) as pull:
            items = [item async for item in pull]
        (chain,) = pull.report.chains
    assert chain.outcome is Outcome.COMPLETED
    assert [type(i.record).__name__ for i in items] == ["WorkOrder", "InvalidRecord", "WorkOrder"]
    invalid = items[1].record
    assert isinstance(invalid, InvalidRecord)
    assert invalid.data == {"id": "wo_1", "created_at": "not a date"}
    assert invalid.field == "created_at"
    assert invalid.connection == "acme"
    assert invalid.request_id is not None
    assert chain.invalid == 1
    assert chain.records == 2
    assert pull.report.invalid == 1
    assert "1 invalid records" in pull.report.summary()


@pytest.mark.parametrize("as_dicts", [True, False])
async def test_invalid_record_policies(make_pool: Any, as_dicts: bool) -> None:
    def handler(call: Call) -> Any:
        return page([{"id": "a"}, ["not", "an", "object"], {"id": "b"}], None)

    async with make_pool(handler, as_dicts=as_dicts) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)], on_invalid="skip") as pull:
            skipped = [item.record async for item in pull]
        async with pool.pull("assets", [("acme", TOKEN)], on_invalid="skip") as pull2:
            pages = [p async for p in pull2.pages()]
        async with pool.pull("assets", [("acme", TOKEN)], on_invalid="raise") as pull3:
            raised = [item async for item in pull3]
        with pytest.raises(UsageError, match="on_invalid"):
            pool.pull("assets", [TOKEN], on_invalid="ignore")  # type: ignore[arg-type]
    assert [r["id"] if as_dicts else r.id for r in skipped] == ["a", "b"]
    assert pull.report.invalid == 1
    assert pull.report.ok
    # Skipped in record iteration, still on the page.
    assert [i.data for i in pages[0].invalid] == [["not", "an", "object"]]
    assert raised == []
    (chain,) = pull3.report.chains
    assert chain.outcome is Outcome.FAILED
    assert isinstance(chain.error, RecordStructureError)
    assert chain.error.invalid_record is not None
    assert chain.error.invalid_record.data == ["not", "an", "object"]


async def test_bad_pull_arguments_are_usage_errors(make_pool: Any) -> None:
    async with make_pool(lambda call: error(500, "INTERNAL_ERROR")) as (pool, _):
        with pytest.raises(UsageError, match="at least one entity"):
            pool.pull([], [TOKEN])
        with pytest.raises(UsageError, match="unknown entity"):
            pool.pull(["widgets"], [TOKEN])
        with pytest.raises(UsageError, match="at least one connection"):
            pool.pull("assets", [])
        with pytest.raises(UsageError, match="share the name"):
            pool.pull("assets", [("same", "t1"), ("same", "t2")])
        with pytest.raises(UsageError, match="concurrency"):
            pool.pull("assets", [TOKEN], concurrency=0)
        with pytest.raises(UsageError, match="modified_after"):
            pool.pull("assets", [TOKEN], modified_after="last tuesday")
        with pytest.raises(UsageError) as info:
            pool.pull("assets", [42])
        assert "int" in str(info.value)
        pull = pool.pull("assets", [TOKEN])
        [_ async for _ in pull]
        with pytest.raises(UsageError, match="only once"):
            [_ async for _ in pull]


def test_checkpoint_stores_round_trip_and_reject_garbage(tmp_path: Path) -> None:
    state = ChainState(in_progress=True, cursor="c9", run_modified_after="2024-01-01", records=5)
    for path in (tmp_path / "a.sqlite", tmp_path / "b.json"):
        store = open_checkpoint(path)
        store.save("acme", "assets", state)
        store.close()
        again = open_checkpoint(path)
        assert again.load("acme", "assets") == state
        assert again.load("acme", "vendors") is None
        again.close()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        JSONCheckpoint(bad)
    with pytest.raises(UsageError, match="cannot open checkpoint"):
        SQLiteCheckpoint(bad)
    with pytest.raises(UsageError):
        open_checkpoint(42)  # type: ignore[arg-type]


def test_json_checkpoint_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = JSONCheckpoint(path, flush_interval=3600)
    store.save("acme", "assets", ChainState(cursor="c1", in_progress=True))
    assert not path.exists()  # not flushed yet: the interval has not passed
    store.flush()
    assert path.exists()
    # No temporary file left behind; the run's lock file stays (see checkpoint.py).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp.json", "cp.json.lock"]
    store.close()


@pytest.mark.parametrize("bad", [{"name": "no id"}, {"id": None}, ["not", "an", "object"], 42])
async def test_a_bad_record_costs_no_chain(make_pool: Any, bad: Any) -> None:
    def handler(call: Call) -> Any:
        if call.headers["Authorization"].endswith("broken"):
            return page([{"id": "x"}, bad], None)
        return page([{"id": "ok"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, _):
        async with pool.pull(
            "assets", [("good-1", "t1"), ("bad", "broken"), ("good-2", "t2")]
        ) as pull:
            items = [(i.connection, i.record) async for i in pull]
    assert pull.report.ok
    valid = sorted((c, r["id"]) for c, r in items if isinstance(r, dict))
    assert valid == [("bad", "x"), ("good-1", "ok"), ("good-2", "ok")]
    (invalid,) = [r for _, r in items if isinstance(r, InvalidRecord)]
    assert invalid.data == bad
    assert invalid.connection == "bad"
    assert invalid.request_id is not None
    assert invalid.field == ("id" if isinstance(bad, dict) else None)
    assert pull.report.chains[1].invalid == 1


@pytest.mark.parametrize("dedupe", [True, False])
@pytest.mark.parametrize("as_dicts", [True, False])
async def test_a_record_that_is_not_an_object_is_invalid(
    make_pool: Any, dedupe: bool, as_dicts: bool
) -> None:
    # A list of pairs would make a dict if anything called dict() on it: it must not pass.
    bad = [["id", "z"]]
    async with make_pool(lambda call: page([{"id": "x"}, bad], None), as_dicts=as_dicts) as (
        pool,
        _,
    ):
        async with pool.pull("assets", [TOKEN], dedupe=dedupe) as pull:
            items = [item.record async for item in pull]
    assert len(items) == 2
    assert isinstance(items[1], InvalidRecord)
    assert items[1].data == bad
    assert "object" in items[1].reason
    assert pull.report.ok


async def test_an_invalid_record_seen_twice_is_delivered_once(make_pool: Any) -> None:
    bad = {"id": "wo_9", "due_date": "soon"}

    def handler(call: Call) -> Any:
        if "cursor" not in call.params:
            return page([{"id": "wo_1"}, bad], "c2")
        return page([bad, {"id": "wo_2"}], None)

    async with make_pool(handler) as (pool, _):
        async with pool.pull("work-orders", [TOKEN]) as pull:
            items = [item.record async for item in pull]
    assert [type(r).__name__ for r in items] == ["WorkOrder", "InvalidRecord", "WorkOrder"]
    assert pull.report.invalid == 1


async def test_a_closed_pull_cannot_be_iterated(make_pool: Any) -> None:
    async with make_pool(lambda call: page([{"id": "a"}], None), as_dicts=True) as (pool, _):
        pull = pool.pull("assets", [TOKEN])
        await pull.aclose()
        with pytest.raises(UsageError, match="aclose"):
            [_ async for _ in pull]


def test_a_checkpoint_that_cannot_be_written_is_a_typed_error(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    store = JSONCheckpoint(folder / "cp.json", flush_interval=3600, lock=False)
    store.save("acme", "assets", ChainState(cursor="c1", in_progress=True))
    (folder / "cp.json").unlink(missing_ok=True)
    folder.rmdir()
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        store.flush()


async def test_run_calls_on_page_and_returns_the_report(make_pool: Any) -> None:
    seen: list[int] = []

    async def on_page(p: Any) -> None:
        seen.append(len(p.records))

    async with make_pool(repeating, as_dicts=True) as (pool, _):
        report = await pool.pull("assets", [TOKEN]).run(on_page)
    assert seen == [2, 1]
    assert report.ok
    assert report.records == 3
    assert report.outcomes() == {Outcome.COMPLETED: 1}
    assert "1/1 connections done, 3 records in 2 pages" in report.summary()


async def test_sorting_the_report_during_a_pull_changes_nothing(make_pool: Any) -> None:
    # A progress display may sort the report's list in place: the pull keeps its own.
    def handler(call: Call) -> Any:
        return page([{"id": call.headers["Authorization"][-1]}], None)

    tokens = [f"tok{i}" for i in range(4)]
    async with make_pool(handler, as_dicts=True) as (pool, _):
        async with pool.pull(["assets", "work-orders"], tokens, concurrency=2) as pull:
            got = []
            async for item in pull:
                got.append((item.connection, item.entity))
                pull.report.chains.sort(key=lambda c: (c.done, c.connection), reverse=True)
    assert len(got) == len(set(got)) == 8
    assert pull.report.outcomes() == {Outcome.COMPLETED: 8}


class _PageCounter:
    def __init__(self) -> None:
        self.pages = 0

    def on_page(self, event: Any) -> None:
        self.pages += 1


@pytest.mark.parametrize("as_dicts", [True, False])
async def test_a_malformed_page_is_fetched_again_and_reported_once(
    make_pool: Any, as_dicts: bool
) -> None:
    answers = [respond(200, body=b'{"data": [{"id"'), page([{"id": "a"}, {"id": "b"}], None)]
    counter = _PageCounter()
    async with make_pool(lambda call: answers.pop(0), as_dicts=as_dicts, hooks=[counter]) as (
        pool,
        _,
    ):
        async with pool.pull("assets", [TOKEN]) as pull:
            items = [item async for item in pull]
    records = [item.record for item in items]
    ids = [r["id"] for r in records] if as_dicts else [r.id for r in records]
    assert ids == ["a", "b"]
    assert all(isinstance(r, dict if as_dicts else Asset) for r in records)
    assert pull.report.ok
    assert counter.pages == 1


async def test_a_listing_record_that_is_not_an_object_names_its_connection(
    make_pool: Any,
) -> None:
    async with make_pool(lambda call: page([{"id": "a"}, 7], None)) as (pool, _):
        conn = pool.connection(TOKEN, name="acme")
        with pytest.raises(RecordStructureError) as info:
            _ = [r async for r in conn.list("assets")]
    assert info.value.connection == "acme"
    assert info.value.request_id is not None


def test_finish_page_structures_a_tuple_of_records() -> None:
    from makini_async._client.reading import finish_page

    dicts = Page(Entity.ASSETS, ({"id": "a"},), None, None, None, "req_1", 100)  # type: ignore[arg-type]
    typed = finish_page(dicts, as_dicts=False, connection="acme")
    assert [type(r) for r in typed.records] == [Asset]
    assert dicts.records == ({"id": "a"},)


async def test_a_consumer_can_fail_one_chain_and_its_checkpoint_stays(
    make_pool: Any, tmp_path: Path
) -> None:
    def handler(call: Call) -> Any:
        if "cursor" not in call.params:
            return page([{"id": "a"}], "c1")
        return page([{"id": "b"}], None)

    checkpoint = tmp_path / "cp.sqlite"
    async with make_pool(handler, as_dicts=True) as (pool, transport):
        async with pool.pull(
            "assets", [("bad", "t1"), ("good", "t2")], checkpoint=checkpoint
        ) as pull:
            seen = []
            async for p in pull.pages():
                if p.connection == "bad":
                    pull.fail(p, SinkError("disk full"))
                    continue
                seen.extend(r["id"] for r in p.records)
        bad_calls = [c for c in transport.calls if c.headers["Authorization"].endswith("t1")]
    outcomes = {c.connection: c.outcome for c in pull.report.chains}
    assert outcomes == {"bad": Outcome.FAILED, "good": Outcome.COMPLETED}
    assert seen == ["a", "b"]
    assert pull.report.chains[0].error is not None
    assert pull.report.chains[0].error.connection == "bad"
    assert len(bad_calls) <= 2  # its worker stopped
    store = SQLiteCheckpoint(checkpoint)
    state = store.load("bad", "assets")
    store.close()
    assert state is not None
    assert state.cursor is None  # never past the page it failed on


def test_json_checkpoint_flushes_on_the_injected_clock(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "cp.json"
    store = JSONCheckpoint(path, flush_interval=10, clock=lambda: now[0])
    store.save("acme", "assets", ChainState(cursor="c1", in_progress=True))
    assert not path.exists()
    now[0] += 11  # time passes on the store's clock, not the machine's
    store.save("acme", "assets", ChainState(cursor="c2", in_progress=True))
    assert path.exists()
    store.close()


async def test_a_pull_reads_time_from_the_pool_clock(make_pool: Any, clock: Any) -> None:
    async def slow(call: Call) -> Any:
        await clock.sleep(7.0)
        return page([{"id": "a"}], None)

    async with make_pool(slow, as_dicts=True) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)]) as pull:
            _ = [i async for i in pull]
    (chain,) = pull.report.chains
    assert chain.elapsed == pytest.approx(7.0)
    assert pull.report.elapsed == pytest.approx(7.0)
