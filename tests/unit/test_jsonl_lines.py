"""JSON Lines: each record with its connection as the last key, the record itself untouched."""

from __future__ import annotations

import orjson

from makini_async.bulk import PulledPage
from makini_async.entities import Entity
from makini_async.sinks._jsonl import _encode_lines


def lines(records: list[dict[str, object]], connection: str = "plant-1") -> list[dict[str, object]]:
    page = PulledPage(connection, Entity.ASSETS, records, None, None, "req_1")
    data = _encode_lines(page)
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def test_the_connection_is_the_last_key_and_the_record_is_not_changed() -> None:
    record = {"id": "a1", "name": "Pump", "custom_fields": {"x": 1}}
    (line,) = lines([record])
    assert list(line) == ["id", "name", "custom_fields", "_connection"]
    assert line == {**record, "_connection": "plant-1"}
    assert "_connection" not in record


def test_an_empty_record_and_a_record_with_its_own_connection_key() -> None:
    got = lines([{}, {"id": "a2", "_connection": "spoofed"}], connection='we"ird\\name')
    assert got == [
        {"_connection": 'we"ird\\name'},
        {"id": "a2", "_connection": 'we"ird\\name'},
    ]


def test_nul_in_a_record_or_the_connection_name_lands_as_replacement() -> None:
    got = lines([{"id": "a\x003"}], connection="plant\x00x")
    assert got == [{"id": "a\ufffd3", "_connection": "plant\ufffdx"}]
