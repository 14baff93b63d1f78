"""U+0000 in customer data and cursors: every sink lands it as U+FFFD; no tenant is blocked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from makini_async import MakiniPool, PageSizes, set_testing
from makini_async.bulk import Outcome
from makini_async.entities import Entity
from makini_async.sinks import JsonLinesSink, ParquetSink, PostgresSink, Sink
from makini_async.testing import MockMakini

from .pgutil import fetch, pull_into

RECORDS = 84
TOKENS = [f"tok-secret-nul-{i:02d}-{'q' * 10}" for i in range(3)]
NAMED = [(f"tenant-{i}", t) for i, t in enumerate(TOKENS)]
SIZES = PageSizes({"assets": 20})
NUL, FFFD = "\x00", "\ufffd"


def _with_nul(server: MockMakini) -> None:
    """tenant-1's pages carry NUL in a value, a key and an id, and its cursors end in one."""
    original = server.list_page

    def list_page(conn: Any, entity: Entity, query: Any, request_id: str) -> Any:
        from makini_async.testing._answers import _Answer

        query = dict(query)
        if query.get("cursor"):
            query["cursor"] = query["cursor"].removesuffix(NUL)
        answer = original(conn, entity, query, request_id)
        if conn.token != TOKENS[1] or answer.status != 200:
            return answer
        body = orjson.loads(answer.body)
        data = body["data"]
        data[0]["name"] = f"pump{NUL}7"
        data[1]["custom_fields"] = {f"no{NUL}te": f"a{NUL}b"}
        data[2]["id"] = f"{data[2]['id']}{NUL}"
        if body.get("next_cursor"):
            body["next_cursor"] += NUL
        return _Answer(200, orjson.dumps(body))

    server.list_page = list_page  # type: ignore[method-assign]


async def _pull(server: MockMakini, sink: Sink, checkpoint: Any = None) -> Any:
    return await pull_into(server, "assets", NAMED, sink, page_sizes=SIZES, checkpoint=checkpoint)


def _cleaned(rows: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(r["_connection"], str(r["id"]), str(r["name"])) for r in rows}


async def test_nul_lands_as_fffd_in_every_sink_and_blocks_no_tenant(
    pg_dsn: str, tmp_path: Path
) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=RECORDS) as server:
        _with_nul(server)
        reports = {
            "postgresql": await _pull(server, PostgresSink(pg_dsn)),
            "jsonl": await _pull(server, JsonLinesSink(tmp_path / "out"), tmp_path / "cp.sqlite"),
            "parquet": await _pull(server, ParquetSink(tmp_path / "pq")),
        }
    for kind, report in reports.items():
        assert {c.outcome for c in report.chains} == {Outcome.COMPLETED}, kind
        assert report.records == len(TOKENS) * RECORDS, kind

    pg = await fetch(pg_dsn, "SELECT connection, id, record::text FROM makini_assets")
    pg_rows = [{**orjson.loads(r[2]), "_connection": r[0], "id": r[1]} for r in pg]
    lines = (tmp_path / "out" / "assets.jsonl").read_bytes().splitlines()
    jsonl_rows = [orjson.loads(line) for line in lines]
    parquet_rows = pq.read_table(tmp_path / "pq" / "assets").to_pylist()
    for rows in (pg_rows, jsonl_rows, parquet_rows):
        assert len(rows) == len(TOKENS) * RECORDS
        assert NUL not in orjson.dumps(rows, default=str).decode()
    # The same records, the same text, whichever sink they landed in.
    assert _cleaned(pg_rows) == _cleaned(jsonl_rows) == _cleaned(parquet_rows)
    names = {r["name"] for r in jsonl_rows if r["_connection"] == "tenant-1"}
    assert f"pump{FFFD}7" in names
    fields = [r["custom_fields"] for r in pg_rows if r.get("custom_fields")]
    assert {f"no{FFFD}te": f"a{FFFD}b"} in fields
    assert any(r["id"].endswith(FFFD) for r in pg_rows)


async def test_a_cursor_with_nul_is_kept_by_the_postgresql_checkpoint(
    pg_dsn: str, tmp_path: Path
) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=RECORDS) as server:
        _with_nul(server)
        async with (
            MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("assets", NAMED, sink=JsonLinesSink(tmp_path), checkpoint=pg_dsn) as pull,
        ):
            seen = 0
            async for page in pull.pages():
                seen += page.connection == "tenant-1"
                if seen == 2:
                    break  # its first page is committed: a cursor ending in NUL is saved
        # Stored whole: jsonb cannot hold U+0000, so that state is kept as base64.
        stored = await fetch(pg_dsn, "SELECT connection, state::text FROM makini_checkpoints")
        assert [r[0] for r in stored if "makini_b64" in r[1]] == [
            next(r[0] for r in stored if r[0].endswith("tenant-1"))
        ]
        report = await _pull(server, JsonLinesSink(tmp_path), pg_dsn)
    assert {c.outcome for c in report.chains} == {Outcome.COMPLETED}
    tenant_1 = next(c for c in report.chains if c.connection == "tenant-1")
    assert tenant_1.start == "resumed"
    lines = (tmp_path / "assets.jsonl").read_bytes().splitlines()
    landed = {(r["_connection"], r["id"]) for r in map(orjson.loads, lines)}
    assert len(landed) == len(TOKENS) * RECORDS


async def test_one_tenants_failing_checkpoint_fails_only_that_tenant(
    pg_dsn: str, tmp_path: Path
) -> None:
    set_testing(True)
    # A name too large for the checkpoint's primary key index: every save of
    # that tenant's chain fails in the database, and only that chain fails.
    huge = "tenant-" + "".join(f"{i:x}" for i in range(3_000))
    named = [*NAMED, (huge, "tok-secret-nul-huge-qqqqqqqqqq")]
    async with MockMakini(records_per_entity=RECORDS) as server:
        async with (
            MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("assets", named, sink=JsonLinesSink(tmp_path), checkpoint=pg_dsn) as pull,
        ):
            await pull.run()
    outcomes = {c.connection: c.outcome for c in pull.report.chains}
    assert outcomes.pop(huge) is Outcome.FAILED
    assert set(outcomes.values()) == {Outcome.COMPLETED}
    lines = (tmp_path / "assets.jsonl").read_bytes().splitlines()
    good = [r for r in map(orjson.loads, lines) if r["_connection"] != huge]
    assert len({(r["_connection"], r["id"]) for r in good}) == len(NAMED) * RECORDS
