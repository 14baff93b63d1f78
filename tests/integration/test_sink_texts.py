"""Records land as the JSON text the API sent: JSON Lines and PostgreSQL.

A dict pull hands these sinks each record's text cut from the page body
(:mod:`makini_async._wire.texts`) instead of encoding the parsed record
again; DuckDB, whose JSON functions read the first of a key sent twice,
gets the parsed record encoded. The server here bends its answers the ways
that matter: a pretty-printed body (its line breaks would break a JSON
Lines file), a number with more digits than a float holds, a record
repeated within a page (de-duplication drops one: the texts must stay with
their records), a record that has a ``_connection`` key of its own, and a
key sent twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from makini_async import MakiniPool, PageSizes, set_testing
from makini_async._wire import texts as texts_module
from makini_async.bulk import _worker
from makini_async.entities import Entity
from makini_async.sinks import DuckDBSink, JsonLinesSink, PostgresSink, Sink
from makini_async.testing import MockMakini

from .pgutil import fetch, pull_into

RECORDS = 45
TOKENS = [f"tok-secret-texts-{i:02d}-{'w' * 8}" for i in range(4)]
NAMED = [(f"site-{i}", t) for i, t in enumerate(TOKENS)]
SIZES = PageSizes({"assets": 10})
EXACT = b"1234.567890123456789012"  # 22 significant digits: a float keeps 17


def _bent(server: MockMakini) -> None:
    original = server.list_page

    def list_page(conn: Any, entity: Entity, query: Any, request_id: str) -> Any:
        from makini_async.testing._answers import _Answer

        answer = original(conn, entity, query, request_id)
        if answer.status != 200:
            return answer
        body = orjson.loads(answer.body)
        if conn.token == TOKENS[0]:  # pretty-printed: line breaks between tokens
            return _Answer(200, orjson.dumps(body, option=orjson.OPT_INDENT_2))
        if conn.token == TOKENS[1]:  # a number no float can hold, in every record
            raw = orjson.dumps(body).replace(
                b'"custom_fields":{', b'"custom_fields":{"exact":' + EXACT + b","
            )
            return _Answer(200, raw)
        if conn.token == TOKENS[2] and body["data"]:  # a record twice, and one with _connection
            body["data"][0]["_connection"] = "the source's own"
            body["data"].append(body["data"][-1])
        raw = orjson.dumps(body)
        if conn.token == TOKENS[3]:  # a key sent twice: the last one is the record's
            raw = raw.replace(b'"custom_fields":{', b'"custom_fields":{"twice":1,"twice":2,')
        return _Answer(200, raw)

    server.list_page = list_page  # type: ignore[method-assign]


async def _pull(server: MockMakini, sink: Sink, checkpoint: Any = None) -> Any:
    return await pull_into(server, "assets", NAMED, sink, page_sizes=SIZES, checkpoint=checkpoint)


def _sent(server: MockMakini) -> dict[tuple[str, str], dict[str, Any]]:
    return {(name, r["id"]): r for name, token in NAMED for r in server.records(token, "assets")}


def _same(landed: dict[str, Any], sent: dict[str, Any], name: str) -> None:
    if name == "site-1":  # read back as a float here: the file and the tables hold every digit
        assert landed["custom_fields"].pop("exact") == float(EXACT)
    if name == "site-3":
        assert landed["custom_fields"].pop("twice") == 2
    assert {k: v for k, v in landed.items() if k != "_connection"} == {
        k: v for k, v in sent.items() if k != "_connection"
    }


async def test_each_record_lands_as_sent_whatever_the_body_looks_like(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_testing(True)
    cut: list[bool] = []
    real = texts_module.record_texts

    def counted(body: bytes, count: int) -> Any:
        out = real(body, count)
        cut.append(out is not None)
        return out

    monkeypatch.setattr(_worker, "record_texts", counted)
    async with MockMakini(records_per_entity=RECORDS) as server:
        _bent(server)
        sent = _sent(server)
        reports = {
            "jsonl": await _pull(server, JsonLinesSink(tmp_path / "out"), tmp_path / "cp.sqlite"),
            "postgresql": await _pull(server, PostgresSink(pg_dsn)),
            "duckdb": await _pull(server, DuckDBSink(tmp_path / "db.duckdb")),
        }
    assert True in cut  # texts were used,
    assert False in cut  # and refused for the pretty pages
    for kind, report in reports.items():
        assert report.ok, kind
        assert report.records == len(NAMED) * RECORDS, kind
        assert sum(c.duplicates for c in report.chains) > 0, kind  # site-2's repeats dropped

    # JSON Lines: one valid line per record, the exact number as the API wrote it.
    raw = (tmp_path / "out" / "assets.jsonl").read_bytes()
    lines = raw.splitlines()
    assert len(lines) == len(NAMED) * RECORDS
    assert raw.count(EXACT) == RECORDS
    rows = [orjson.loads(line) for line in lines]
    assert {(r["_connection"], r["id"]) for r in rows} == set(sent)
    for row in rows:
        _same(row, sent[(row["_connection"], row["id"])], row["_connection"])

    # PostgreSQL (jsonb keeps every digit) and DuckDB: the record column is the record.
    pg = await fetch(pg_dsn, "SELECT connection, id, record::text FROM makini_assets")
    db = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    try:
        dk = db.execute(
            "SELECT connection, id, CAST(record AS VARCHAR) FROM makini_assets"
        ).fetchall()
    finally:
        db.close()
    for landed in (pg, dk):
        assert {(c, i) for c, i, _ in landed} == set(sent)
        for connection, rid, text in landed:
            _same(orjson.loads(text), sent[(connection, rid)], connection)
    assert sum(EXACT.decode() in text for _, _, text in pg) == RECORDS
    db = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    try:
        twice = db.execute(
            "SELECT DISTINCT record->>'$.custom_fields.twice' FROM makini_assets "
            "WHERE connection = 'site-3'"
        ).fetchall()
    finally:
        db.close()
    assert twice == [("2",)]  # DuckDB reads what the pull read, not the first of the two


def test_a_body_gives_texts_only_when_they_say_what_the_records_say() -> None:
    record = {"id": "a1", "name": "pump"}
    compact = orjson.dumps({"data": [record, record], "next_cursor": None})
    got = texts_module.record_texts(compact, 2)
    assert got is not None
    assert [bytes(t) for t in got] == [orjson.dumps(record)] * 2
    assert texts_module.record_texts(compact, 3) is None  # not the parsed page's count
    pretty = orjson.dumps({"data": [record]}, option=orjson.OPT_INDENT_2)
    assert texts_module.record_texts(pretty, 1) is None
    assert texts_module.record_texts(b'{"data":[{"id":"a\\u0000"}]}', 1) is None
    assert texts_module.record_texts(b'{"data":{"id":"a"}}', 1) is None
    assert texts_module.record_texts(b'{"data":[{"id":"a"}]', 1) is None  # cut short
    # Two "data" keys: the last one, as the parsed page has it.
    twice = b'{"data":[{"id":"x"}],"data":[{"id":"y"}]}'
    last = texts_module.record_texts(twice, 1)
    assert last is not None
    assert bytes(last[0]) == b'{"id":"y"}'
    assert orjson.loads(twice)["data"] == [{"id": "y"}]


async def test_the_pages_a_consumer_gets_hold_no_texts(tmp_path: Path) -> None:
    """The texts hold the page's whole body: they are the sink's, not kept for the consumer."""
    set_testing(True)
    async with (
        MockMakini(records_per_entity=30) as server,
        MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
    ):
        sink = JsonLinesSink(tmp_path / "out")
        seen: list[Any] = []
        real = sink.write

        async def write(page: Any, state: Any) -> None:
            seen.append(page.texts)
            await real(page, state)

        sink.write = write  # type: ignore[method-assign]
        async with pool.pull("assets", NAMED[3:], sink=sink) as pull:
            pages = [page async for page in pull.pages()]
    assert len(pages) == 3
    assert all(texts is not None and len(texts) == 10 for texts in seen)
    assert all(page.texts is None for page in pages)
    assert sum(len(page) for page in pages) == 30
