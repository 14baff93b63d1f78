"""Pulling into a sink, and reading what the sinks wrote: PostgreSQL rows and Parquet files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pyarrow.parquet as pq

from makini_async import MakiniPool


async def pull_into(
    server: Any,
    entity: str,
    named: list[tuple[str, str]],
    sink: Any,
    *,
    page_sizes: Any = None,
    checkpoint: Any = None,
) -> Any:
    """A dict pull of ``entity`` from ``server`` into ``sink``; its report."""

    async with (
        MakiniPool(base_url=server.url, as_dicts=True, page_sizes=page_sizes) as pool,
        pool.pull(entity, named, sink=sink, checkpoint=checkpoint) as pull,
    ):
        await pull.run()
    return pull.report


async def fetch(dsn: str, query: str, *args: Any) -> list[Any]:
    db = await asyncpg.connect(dsn)
    try:
        return list(await db.fetch(query, *args))
    finally:
        await db.close()


async def states(dsn: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Chain states by (connection, entity), whatever checkpoint state they are under."""
    rows = await fetch(dsn, "SELECT connection, entity, state::text FROM makini_checkpoints")
    # A chain's stored key is its state's name, "\x1f" and its connection's name.
    return {(r[0].rpartition("\x1f")[2], r[1]): orjson.loads(r[2]) for r in rows}


def parquet_rows(directory: Path) -> list[dict[str, Any]]:
    """Every row of every committed file (reading each file whole: none may be partial)."""
    manifest = orjson.loads((directory / "_manifest.json").read_bytes())
    rows: list[dict[str, Any]] = []
    for name in manifest["files"]:
        rows.extend(pq.read_table(directory / name).to_pylist())
    return rows
