"""U+0000 in every kind of Parquet column: text, JSON text and lists of text."""

from __future__ import annotations

from makini_async import Entity
from makini_async.bulk._report import PulledPage
from makini_async.sinks._nul import REPLACEMENT
from makini_async.sinks._parquet_schema import table_of, table_without_nul
from makini_async.testing._data import generate_records


def _table(records: list[dict[str, object]]) -> object:
    page = PulledPage("acme", Entity.WORK_ORDERS, records, None, None, "req_1")
    return table_without_nul(table_of(page))


def test_nul_in_a_list_of_text_is_replaced_and_the_rest_is_kept() -> None:
    records = generate_records(Entity.WORK_ORDERS, 3, 3)
    records[0]["assignees"] = ["ana\x00bel", "x"]
    records[2]["assignees"] = []

    table = _table(records)

    column = table.column("assignees").to_pylist()  # type: ignore[attr-defined]
    assert column[0] == [f"ana{REPLACEMENT}bel", "x"]
    assert column[1] == list(records[1]["assignees"])  # type: ignore[arg-type]
    assert column[2] == []


def test_nul_in_text_and_in_nested_json_is_replaced_and_clean_columns_are_untouched() -> None:
    records = generate_records(Entity.WORK_ORDERS, 3, 2)
    records[1]["title"] = "pump\x00 7"
    records[1]["custom_fields"] = {"plant": "P\x004"}
    clean = _table(generate_records(Entity.WORK_ORDERS, 3, 2))

    table = _table(records)

    assert table.column("title").to_pylist()[1] == f"pump{REPLACEMENT} 7"  # type: ignore[attr-defined]
    assert f"P{REPLACEMENT}4" in table.column("custom_fields").to_pylist()[1]  # type: ignore[attr-defined]
    for name in table.column_names:  # type: ignore[attr-defined]
        values = table.column(name).to_pylist()  # type: ignore[attr-defined]
        assert not any("\x00" in str(v) or "\\u0000" in str(v) for v in values)
        if name not in {"title", "custom_fields"}:
            assert values == clean.column(name).to_pylist()  # type: ignore[attr-defined]
