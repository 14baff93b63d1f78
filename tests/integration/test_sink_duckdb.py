"""The DuckDB sink against a real DuckDB file, read back the way a user would."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from makini_async import MakiniPool, SinkError, UsageError, set_testing
from makini_async.bulk import Outcome, PulledPage
from makini_async.checkpoint import ChainState
from makini_async.entities import Entity
from makini_async.scale import ShardedPull
from makini_async.sinks import DuckDBSink, open_sink
from makini_async.testing import MockMakini

from .test_cli import run_cli, write_tokens

TOKENS = [f"tok-secret-duck-{i:02d}" for i in range(4)]
NAMED = [(f"site-{i}", t) for i, t in enumerate(TOKENS)]


def read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = duckdb.connect(str(path), read_only=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("as_dicts", [True, False])
async def test_a_pull_lands_every_record_once_with_invalid_records_and_cursors(
    tmp_path: Path, as_dicts: bool
) -> None:
    set_testing(True)
    where = tmp_path / "w.duckdb"
    async with MockMakini(records_per_entity=150, unreadable=0.05, seed=3) as server:
        async with MakiniPool(base_url=server.url, as_dicts=as_dicts) as pool:
            sink = DuckDBSink(where, max_batch_rows=100)
            async with pool.pull(["work-orders", "assets"], NAMED, sink=sink) as pull:
                await pull.run()
        want = {
            (name, entity, r["id"])
            for name, token in NAMED
            for entity in ("work-orders", "assets")
            for r in server.records(token, entity)
        }
    assert {c.outcome for c in pull.report.chains} == {Outcome.COMPLETED}
    got: list[tuple[str, str, str]] = []
    for entity in ("work-orders", "assets"):
        table = "makini_" + entity.replace("-", "_")
        rows = read(where, f"SELECT connection, id, record->>'$.id' FROM {table}")  # noqa: S608
        assert all(rid == inner for _, rid, inner in rows)
        got.extend((c, entity, rid) for c, rid, _ in rows)
    invalid = read(
        where, "SELECT connection, entity, id, reason, record FROM makini_invalid_records"
    )
    # A typed pull keeps what does not fit its model aside; a dict pull takes records as sent.
    assert bool(invalid) is not as_dicts
    assert all(orjson.loads(record)["id"] == rid for _, _, rid, _, record in invalid)
    # Every record exactly once: the valid ones in their tables, the others kept whole.
    assert len(got) == len(set(got))
    assert set(got) | {(c, e, rid) for c, e, rid, _, _ in invalid} == want
    assert len(got) + len(invalid) == len(want)
    states = read(where, "SELECT connection, entity, state FROM makini_checkpoints")
    assert len(states) == len(NAMED) * 2
    assert all(not orjson.loads(s)["in_progress"] for _, _, s in states)


async def test_an_older_copy_never_wins_and_nul_lands_as_replacement(tmp_path: Path) -> None:
    where = tmp_path / "w.duckdb"
    sink = DuckDBSink(where)
    await sink.checkpoint_store.open()
    await sink.open([Entity.ASSETS])
    newer = {"id": "a1", "updated_at": "2024-05-01T00:00:00Z", "name": "new\x00er"}
    older = {"id": "a1", "updated_at": "2024-01-01T00:00:00Z", "name": "old"}
    try:
        for record in (newer, older):
            page = PulledPage("site-0", Entity.ASSETS, [record], None, "c1", "req_1")
            await sink.write(page, ChainState(in_progress=True, cursor="c1"))
            await sink.flush()  # separate batches: the second meets the stored row
        page = PulledPage("site-1", Entity.ASSETS, [newer, older], None, None, "req_2")
        await sink.write(page, None)
    finally:
        await sink.close()
    rows = read(where, "SELECT connection, record->>'$.name' FROM makini_assets ORDER BY 1")
    assert rows == [("site-0", "new\ufffder"), ("site-1", "new\ufffder")]
    (state,) = read(where, "SELECT state FROM makini_checkpoints")
    assert orjson.loads(state[0])["cursor"] == "c1"


async def test_an_incremental_pull_updates_rows_in_place(tmp_path: Path) -> None:
    where = tmp_path / "w.duckdb"
    async with MockMakini(records_per_entity=50) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            for round_ in range(2):
                if round_:
                    changed = server.records(TOKENS[0], "assets")[0]
                    server.update(TOKENS[0], "assets", changed["id"], {"name": "renamed"})
                async with pool.pull("assets", NAMED[:1], sink=DuckDBSink(where)) as pull:
                    await pull.run()
    assert pull.report.state is not None
    rows = read(where, "SELECT id, record->>'$.name' FROM makini_assets")
    assert len(rows) == 50
    assert dict(rows)[changed["id"]] == "renamed"


def test_a_second_writing_process_is_refused(tmp_path: Path) -> None:
    where = tmp_path / "w.duckdb"
    holder = textwrap.dedent(
        f"""
        import duckdb, sys, time
        db = duckdb.connect({str(where)!r})
        print("held", flush=True)
        sys.stdin.read()
        """
    )

    async def main() -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", holder, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert (await proc.stdout.readline()).strip() == b"held"
        try:
            sink = DuckDBSink(where)
            with pytest.raises(SinkError, match="cannot open DuckDB file") as caught:
                await sink.open([Entity.ASSETS])
            await sink.close()
            return caught.value.message
        finally:
            proc.stdin.close()
            await proc.wait()

    assert str(where) in asyncio.run(main())


def test_specs_and_refusals(tmp_path: Path) -> None:
    sink = open_sink(f"duckdb:{tmp_path}/x.duckdb")
    assert isinstance(sink, DuckDBSink)
    assert sink.location == f"{tmp_path}/x.duckdb"
    with pytest.raises(UsageError, match="one writing process"):
        ShardedPull(["assets"], ["tok-a"], sink=f"duckdb:{tmp_path}/x.duckdb")
    with pytest.raises(UsageError, match="table_prefix"):
        DuckDBSink(tmp_path / "y.duckdb", table_prefix="drop table;")


async def test_the_command_pulls_into_duckdb(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt", TOKENS, [n for n, _ in NAMED])
    where = tmp_path / "cli.duckdb"
    async with MockMakini(records_per_entity=80) as server:
        code, stdout, stderr = await run_cli(
            "pull", "--entity", "work-orders", "--tokens-file", str(tokens),
            "--base-url", server.url, "--sink", f"duckdb:{where}",
            timeout=60,
        )  # fmt: skip
    assert code == 0, stderr
    assert read(where, "SELECT count(*) FROM makini_work_orders") == [(80 * len(TOKENS),)]
    assert not any(t in stdout + stderr for t in TOKENS)


async def test_records_are_stored_with_zstd_and_read_back_as_json(tmp_path: Path) -> None:
    set_testing(True)
    where = tmp_path / "z.duckdb"
    async with (
        MockMakini(records_per_entity=300, shape="realistic", unreadable=0.05, seed=9) as server,
        MakiniPool(base_url=server.url) as pool,
        pool.pull("work-orders", NAMED[:2], sink=DuckDBSink(where)) as pull,
    ):
        await pull.run()
    assert pull.report.ok
    db = duckdb.connect(str(where))
    try:
        db.execute("CHECKPOINT")
        for table in ("makini_work_orders", "makini_invalid_records"):
            kinds = db.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info(?) "
                "WHERE column_name = 'record' AND compression <> 'Constant'",
                [table],
            ).fetchall()
            assert kinds == [("ZSTD",)], table
        titles = db.execute(
            "SELECT count(*), count(DISTINCT record->>'$.title') FROM makini_work_orders"
        ).fetchone()
    finally:
        db.close()
    assert titles is not None
    assert titles[0] + len(read(where, "SELECT id FROM makini_invalid_records")) == 600
    assert titles[1] > 1
