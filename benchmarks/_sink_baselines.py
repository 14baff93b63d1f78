"""Bare loads of the records a sink benchmark pulls, with no pull and no library.

Each baseline loads the same records the mock server serves (the same
generator, shape and connection count) the way a hand-written loader would,
so a sink can be reported as a ratio to what its destination allows.
Every connection's records are objects of their own, parsed from JSON as a
loader reading the API would have them (untimed): loading the same few
thousand objects again for every connection keeps them in the processor's
caches and flatters a baseline (pyarrow's ``from_pylist`` ran 1.6 times
faster that way).

* ``pg-bare``: asyncpg, one connection, ``COPY`` (binary) into a temporary
  staging table and one ``INSERT ... SELECT ... ON CONFLICT`` upsert per
  2,000 rows, newer ``updated_at`` wins; rows encoded beforehand (untimed).
* ``parquet-bare``: ``pyarrow.Table.from_pylist`` on the records' dicts and
  ``pyarrow.parquet.write_table``, one file per 32 MiB of records.
* ``duckdb-bare``: an Arrow table of the same rows as PostgreSQL's, inserted
  with DuckDB's own ``INSERT ... SELECT FROM arrow`` in 5,000-row batches.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from makini_async.entities import Entity
from makini_async.testing._data import generate_records
from makini_async.testing._realistic import widen

BATCH = 2000


def records_of(entity: Entity, per_connection: int, shape: str) -> list[dict[str, Any]]:
    records = generate_records(entity, 0, per_connection)
    if shape == "realistic":
        records = [widen(entity, r, 0, i) for i, r in enumerate(records)]
    return records


def per_connection(records: list[dict[str, Any]], connections: int) -> list[list[dict[str, Any]]]:
    """Each connection's copy of the records, parsed from their JSON (fresh objects)."""
    text = orjson.dumps(records)
    return [orjson.loads(text) for _ in range(connections)]


def _when(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def pg_rows(each: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """The rows of every connection's records (``per_connection``), in load order."""
    return [
        (
            f"plant-{c:04d}",
            str(r["id"]),
            _when(r.get("updated_at")),
            _when(r.get("created_at")),
            orjson.dumps(r).decode(),
            "req",
        )
        for c, records in enumerate(each)
        for r in records
    ]


async def pg_bare(dsn: str, rows: list[tuple[Any, ...]]) -> float:
    import asyncpg

    db = await asyncpg.connect(dsn)
    try:
        await db.execute(
            "CREATE TABLE bare (connection text, id text, updated_at timestamptz, "
            "created_at timestamptz, record jsonb, request_id text, pulled_at timestamptz, "
            "PRIMARY KEY (connection, id))"
        )
        await db.execute(
            "CREATE TEMP TABLE stage (connection text, id text, updated_at timestamptz, "
            "created_at timestamptz, record jsonb, request_id text) ON COMMIT DELETE ROWS"
        )
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            async with db.transaction():
                await db.copy_records_to_table("stage", records=rows[i : i + BATCH])
                await db.execute(
                    "INSERT INTO bare AS t SELECT *, now() FROM stage ON CONFLICT "
                    "(connection, id) DO UPDATE SET updated_at = excluded.updated_at, "
                    "created_at = excluded.created_at, record = excluded.record, "
                    "request_id = excluded.request_id, pulled_at = excluded.pulled_at "
                    "WHERE t.updated_at IS NULL OR excluded.updated_at >= t.updated_at"
                )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await db.close()


def parquet_bare(each: list[list[dict[str, Any]]]) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_file = max(1, (32 * 1024 * 1024) // max(1, len(orjson.dumps(each[0][0]))))
    total = sum(map(len, each))
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        buffered: list[dict[str, Any]] = []
        n = 0
        for records in each:
            buffered.extend(records)
            if len(buffered) >= per_file:
                pq.write_table(pa.Table.from_pylist(buffered), Path(work) / f"{n}.parquet")
                buffered, n = [], n + 1
        if buffered:
            pq.write_table(pa.Table.from_pylist(buffered), Path(work) / f"{n}.parquet")
        return total / (time.perf_counter() - started)


#: The staged rows' columns (``pg_rows`` order); the table adds ``pulled_at``.
STAGE_COLUMNS = ["connection", "id", "updated_at", "created_at", "record", "request_id"]


def duckdb_steps(db: Any, rows: list[tuple[Any, ...]], sql: str, types: Any = None) -> None:
    """``rows`` in 5,000-row transactions, as the sink loads them: each chunk staged from
    Arrow as ``stage`` (its types inferred, or ``types``), then ``sql`` run over it."""
    import pyarrow as pa

    step = 5000
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        arrays = [
            pa.array([r[k] for r in chunk], type=None if types is None else types[k])
            for k in range(len(STAGE_COLUMNS))
        ]
        db.register("stage", pa.Table.from_arrays(arrays, names=STAGE_COLUMNS))
        db.execute("BEGIN")
        db.execute(sql)
        db.execute("COMMIT")
        db.unregister("stage")


def duckdb_bare(rows: list[tuple[Any, ...]]) -> float:
    import duckdb

    with tempfile.TemporaryDirectory() as work:
        db = duckdb.connect(str(Path(work) / "bare.duckdb"))
        try:
            db.execute(
                "CREATE TABLE bare (connection VARCHAR, id VARCHAR, updated_at TIMESTAMPTZ, "
                "created_at TIMESTAMPTZ, record JSON USING COMPRESSION zstd, request_id VARCHAR, "
                "pulled_at TIMESTAMPTZ, PRIMARY KEY (connection, id))"
            )
            started = time.perf_counter()
            duckdb_steps(db, rows, "INSERT INTO bare SELECT *, now() FROM stage")
            return len(rows) / (time.perf_counter() - started)
        finally:
            db.close()
