"""The sinks against real components: a PostgreSQL server, pyarrow reading files back."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from makini_async import MakiniPool, SinkError, UsageError, set_testing
from makini_async.bulk import Outcome, PulledPage
from makini_async.checkpoint import ChainState, PostgresCheckpoint, safe_dsn
from makini_async.entities import Entity
from makini_async.sinks import JsonLinesSink, ParquetSink, PostgresSink, Sink, open_sink
from makini_async.testing import FaultPlan, MockMakini

from .pgutil import fetch, states

TOKENS = [f"tok-secret-sink-{i:02d}" for i in range(6)]
NAMED = [(f"site-{i}", t) for i, t in enumerate(TOKENS)]


def _with_password(dsn: str, password: str) -> str:
    # pgserver trusts local connections: the password is ignored, yet it must never show.
    return dsn.replace("postgresql://postgres:@", f"postgresql://postgres:{password}@", 1)


@pytest.mark.parametrize("as_dicts", [True, False])
async def test_parquet_typed_and_dict_pulls_write_the_same_typed_columns(
    tmp_path: Path, as_dicts: bool
) -> None:
    set_testing(True)
    async with (
        MockMakini(records_per_entity=60, variations=0.3, unreadable=0.05, seed=5) as server,
        MakiniPool(base_url=server.url, as_dicts=as_dicts) as pool,
    ):
        sink = ParquetSink(tmp_path / "pq", file_size=10_000)
        async with pool.pull(["purchase-orders", "work-orders"], NAMED[:3], sink=sink) as pull:
            await pull.run()
        assert pull.report.ok
        want = {
            (name, r["id"])
            for name, token in NAMED[:3]
            for r in server.records(token, "purchase-orders")
        }
    rows = pq.read_table(tmp_path / "pq" / "purchase-orders").to_pylist()
    assert {(r["_connection"], r["id"]) for r in rows} == want
    assert sink.committed_files > 2  # rolled by size
    good = [r for r in rows if r["_invalid_reason"] is None]
    bad = [r for r in rows if r["_invalid_reason"] is not None]
    assert bad  # unreadable records are kept whole, with the reason
    assert all(orjson.loads(r["_invalid_record"])["id"] == r["id"] for r in bad)
    schema = pq.read_schema(next((tmp_path / "pq" / "purchase-orders").glob("part-*.parquet")))
    assert str(schema.field("updated_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("order_date").type) == "date32[day]"
    for row in good:
        assert isinstance(row["updated_at"], dt.datetime)
        assert isinstance(orjson.loads(row["custom_fields"]), dict)
        assert row["raw"] is None or isinstance(orjson.loads(row["raw"]), dict)
        assert isinstance(orjson.loads(row["extra"]), dict)
        lines = orjson.loads(row["lines"])
        assert all(isinstance(line["quantity"], (str, type(None))) for line in lines)
    assert any(orjson.loads(r["extra"]) for r in good)  # unknown fields are kept


async def test_postgres_sink_never_lets_an_older_copy_win(pg_dsn: str) -> None:
    sink = PostgresSink(pg_dsn)
    await sink.checkpoint_store.open()
    await sink.open([Entity.ASSETS])
    newer = {"id": "a1", "updated_at": "2024-05-01T00:00:00Z", "name": "new"}
    older = {"id": "a1", "updated_at": "2024-01-01T00:00:00Z", "name": "old"}
    state = ChainState(in_progress=True, cursor="c1")
    try:
        for record in (newer, older):
            page = PulledPage("site-0", Entity.ASSETS, [record], None, "c1", "req_1")
            await sink.write(page, state)
        # Same id twice in one page: the newer copy lands.
        page = PulledPage("site-1", Entity.ASSETS, [newer, older], None, None, "req_2")
        await sink.write(page, None)
    finally:
        await sink.close()
    rows = await fetch(pg_dsn, "SELECT connection, record->>'name' AS name FROM makini_assets")
    assert sorted((r["connection"], r["name"]) for r in rows) == [
        ("site-0", "new"),
        ("site-1", "new"),
    ]
    assert (await states(pg_dsn))[("site-0", "assets")]["cursor"] == "c1"


async def test_postgres_sink_keeps_invalid_records_and_fails_only_a_bad_chain(
    pg_dsn: str,
) -> None:
    set_testing(True)
    async with (
        MockMakini(records_per_entity=40, unreadable=0.1, seed=2) as server,
        MakiniPool(base_url=server.url, as_dicts=False) as pool,
    ):
        original = server.list_page

        def list_page(conn: Any, entity: Entity, query: Any, request_id: str) -> Any:
            from makini_async.testing._answers import _Answer

            answer = original(conn, entity, query, request_id)
            if conn.token == TOKENS[1]:  # an id too large for the primary key's index
                body = orjson.loads(answer.body)
                body["data"][0]["id"] = secrets.token_hex(8_000)
                answer = _Answer(200, orjson.dumps(body))
            return answer

        server.list_page = list_page  # type: ignore[method-assign]
        password = "pw_SECRET_abcdef123"
        sink = PostgresSink(_with_password(pg_dsn, password))
        async with pool.pull("work-orders", NAMED[:3], sink=sink) as pull:
            await pull.run()
    outcomes = {c.connection: c.outcome for c in pull.report.chains}
    assert outcomes == {
        "site-0": Outcome.COMPLETED,
        "site-1": Outcome.FAILED,
        "site-2": Outcome.COMPLETED,
    }
    error = pull.report.chains[1].error
    assert isinstance(error, SinkError)
    assert password not in str(error)
    assert "***" in str(error)
    assert password not in repr(sink)
    invalid = await fetch(pg_dsn, "SELECT connection, entity, reason FROM makini_invalid_records")
    assert invalid
    assert all(r["entity"] == "work-orders" for r in invalid)
    # The failed chain's page rolled back whole, its invalid records with it.
    stored = sum(c.invalid for c in pull.report.chains if c.outcome is Outcome.COMPLETED)
    assert stored == len(invalid)
    # The failed chain's checkpoint stays before the page it could not store.
    assert (await states(pg_dsn))[("site-1", "work-orders")]["cursor"] is None


async def test_jsonl_sink_through_a_pull_and_the_sink_protocol(tmp_path: Path) -> None:
    set_testing(True)
    async with (
        MockMakini(records_per_entity=30) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        sink = open_sink(f"jsonl:{tmp_path / 'out'}")
        assert isinstance(sink, JsonLinesSink)
        assert isinstance(sink, Sink)
        async with pool.pull("vendors", NAMED[:2], sink=sink, checkpoint=tmp_path / "c.db") as p:
            pages = [page async for page in p.pages()]
    lines = (tmp_path / "out" / "vendors.jsonl").read_bytes().splitlines()
    assert len(lines) == 60 == sum(len(page) for page in pages)
    assert all("_connection" not in r for page in pages for r in page.records)
    assert all(page.total_count == 30 for page in pages)
    assert all(c.total == 30 for c in p.report.chains)


def test_sink_specs_and_passwords() -> None:
    dsn = "postgresql://app:pw_SECRET_hunter22@db.example:5432/wh?sslmode=require"
    assert safe_dsn(dsn) == "postgresql://app:***@db.example:5432/wh?sslmode=require"
    assert "pw_SECRET" not in repr(PostgresCheckpoint(dsn))
    assert "pw_SECRET" not in repr(open_sink(dsn))
    assert "password=***" in safe_dsn("postgresql:///wh?password=pw_SECRET_hunter22")
    # libpq's key/value form, quoted or not.
    for kv in ("host=db password=pw_SECRET_hunter22 dbname=wh", "password = 'pw_SECRET x' host=db"):
        assert "pw_SECRET" not in safe_dsn(kv)
        assert "password=***" in safe_dsn(kv)
    with pytest.raises(UsageError, match="unknown sink"):
        open_sink("s3://bucket")
    with pytest.raises(UsageError, match="file_size"):
        ParquetSink("x", file_size=0)


async def test_a_sink_with_its_own_store_refuses_another_checkpoint(tmp_path: Path) -> None:
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        with pytest.raises(UsageError, match="own checkpoint"):
            pool.pull("assets", ["t"], sink=ParquetSink(tmp_path), checkpoint=tmp_path / "c.db")


SHARED_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from makini_async import MakiniPool, PageSizes, set_testing
    from makini_async.checkpoint import PostgresCheckpoint

    async def main(url, dsn, first, count):
        set_testing(True)
        tokens = [(f"plant-{i:03d}", f"tok-secret-{i:04d}") for i in range(first, first + count)]
        store = PostgresCheckpoint(dsn)
        sizes = PageSizes({"assets": 10})
        n = 0
        async with MakiniPool(base_url=url, as_dicts=True, page_sizes=sizes) as pool:
            async with pool.pull(["assets", "vendors"], tokens, checkpoint=store) as pull:
                async for page in pull.pages():
                    n += len(page)
        await store.close()
        print(n)
        sys.exit(0 if pull.report.ok else 1)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


async def test_a_postgres_checkpoint_shared_by_two_processes(pg_dsn: str) -> None:
    plan = FaultPlan(seed=6, error_503=0.05, latency=0.002)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    async with MockMakini(records_per_entity=50, faults=plan) as server:
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SHARED_CHILD,
                server.url,
                pg_dsn,
                str(first),
                "20",
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            for first in (0, 20)
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 60)
    assert [c.returncode for c in children] == [0, 0]
    assert [int(out) for out, _ in outputs] == [20 * 2 * 50, 20 * 2 * 50]
    chain_states = await states(pg_dsn)
    assert set(chain_states) == {
        (f"plant-{i:03d}", e) for i in range(40) for e in ("assets", "vendors")
    }
    assert all(
        not s["in_progress"] and s["high_water"] and s["fingerprint"] for s in chain_states.values()
    )
    # Run again: both chains' rows are read back, so the pull is incremental: nothing new,
    # only what the overlap brings again (records within 300 s of each chain's newest).
    async with MockMakini(records_per_entity=50) as server:
        again = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SHARED_CHILD, server.url, pg_dsn, "0", "40",
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(again.communicate(), 60)
        overlap = 0
        for entity in ("assets", "vendors"):
            times = [
                dt.datetime.fromisoformat(r["updated_at"]) for r in server.records("t", entity)
            ]
            overlap += sum(t >= max(times) - dt.timedelta(seconds=300) for t in times)
    assert again.returncode == 0
    assert int(out) == 40 * overlap
