"""The sinks' Arrow buffers come from the C library's allocator, never the process's default.

pyarrow's default pool (mimalloc) keeps what it freed, and a Parquet pull's
peak RSS grew by a third with it. The sinks pass their own pool to each
call instead of changing the process's default, which stays the caller's.
"""

from __future__ import annotations

from typing import Any

import pytest

from makini_async.bulk import PulledPage
from makini_async.entities import Entity
from makini_async.sinks._arrow import arrow_pool
from makini_async.sinks._parquet_dir import encode
from makini_async.sinks._parquet_schema import page_table, table_of, table_without_nul
from makini_async.testing._data import generate_records
from makini_async.testing._realistic import widen

pa = pytest.importorskip("pyarrow")

MIB = 1 << 20  # what a pool may hold of its own (the default one's ~0 here)


def _records(n: int = 400) -> list[dict[str, Any]]:
    return [
        widen(Entity.WORK_ORDERS, r, 0, i)
        for i, r in enumerate(generate_records(Entity.WORK_ORDERS, 0, n))
    ]


def _growth(make: Any) -> tuple[Any, int, int]:
    """What ``make()`` returns, and how much more each pool holds while it is alive."""
    default, ours = pa.default_memory_pool(), arrow_pool()
    before_default, before_ours = default.bytes_allocated(), ours.bytes_allocated()
    made = make()
    return made, default.bytes_allocated() - before_default, ours.bytes_allocated() - before_ours


def test_the_pool_is_not_the_process_default_and_the_default_is_left_alone() -> None:
    before = pa.default_memory_pool().backend_name
    table_of(PulledPage("plant-1", Entity.WORK_ORDERS, _records(10), None, None, "req_1"))
    assert arrow_pool().backend_name == "system"
    assert pa.default_memory_pool().backend_name == before


def test_a_page_table_and_a_parquet_file_are_built_in_the_sinks_pool() -> None:
    records = _records()
    table, default, ours = _growth(
        lambda: page_table(Entity.WORK_ORDERS, records, [], "plant-1", "req_1")
    )
    assert table.num_rows == len(records)
    assert ours >= table.nbytes // 2
    assert default < table.nbytes // 10
    data, default, ours = _growth(lambda: encode([table, table]))
    assert data.size > 0
    assert ours >= data.size
    assert default < data.size // 10


def test_a_column_cleaned_of_nul_is_built_in_the_sinks_pool() -> None:
    records = _records(200)
    for record in records:
        record["description"] = "pump\x00 seal " * 50
        record["assignees"] = ["a\x00b"] * 20
    table = page_table(Entity.WORK_ORDERS, records, [], "plant-1", "req_1")
    cleaned, default, ours = _growth(lambda: table_without_nul(table))
    assert "\x00" not in cleaned.column("description")[0].as_py()
    assert ours > 200 * 500
    assert default < MIB // 4


def test_duckdb_stages_its_rows_in_the_sinks_pool() -> None:
    from makini_async.sinks._duckdb import _insert_arrow

    seen: list[tuple[int, int]] = []
    default, ours = pa.default_memory_pool(), arrow_pool()
    before = (default.bytes_allocated(), ours.bytes_allocated())

    class Connection:
        """Sees the staged table while it is registered (what DuckDB would read)."""

        def register(self, name: str, table: Any) -> None:
            self.table = table

        def execute(self, sql: str) -> None:
            seen.append((default.bytes_allocated() - before[0], ours.bytes_allocated() - before[1]))

        def unregister(self, name: str) -> None:
            del self.table

    rows = [("plant-1", str(i), "x" * 1000) for i in range(2000)]
    _insert_arrow(Connection(), "INSERT ...", rows, ("connection", "id", "record"))
    [(in_default, in_ours)] = seen
    assert in_ours >= 2000 * 1000
    assert in_default < MIB // 4
