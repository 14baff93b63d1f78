"""Typed pulls against source-shaped data: every record arrives, typed or kept whole."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import attrs

from makini_async import Entity, InvalidRecord, MakiniPool, Outcome, set_testing
from makini_async.models import record_type
from makini_async.testing import UNREADABLE_KINDS, FaultPlan, MockMakini

ENTITIES = [e.value for e in Entity]
TOKENS = [(f"plant-{i}", f"tok_shape_{i:02d}_{'x' * 16}") for i in range(3)]


async def pull_all(server: MockMakini, *, as_dicts: bool) -> tuple[list[Any], Any]:
    async with MakiniPool(base_url=server.url, as_dicts=as_dicts) as pool:
        async with pool.pull(ENTITIES, TOKENS) as pull:
            items = [item async for item in pull]
    return items, pull.report


def key(item: Any) -> tuple[str, str, str]:
    record = item.record
    if isinstance(record, InvalidRecord):
        rid = record.id
    elif isinstance(record, dict):
        rid = record["id"]
    else:
        rid = record.id
    assert rid is not None
    return item.connection, item.entity.value, rid


async def test_a_typed_pull_delivers_exactly_what_a_dict_pull_delivers() -> None:
    set_testing(True)
    faults = FaultPlan(seed=3, error_503=0.03, truncate=0.01, drop=0.01)
    async with MockMakini(
        records_per_entity=240, variations=0.3, unreadable=0.03, faults=faults, seed=9
    ) as server:
        typed, typed_report = await pull_all(server, as_dicts=False)
        dicts, dict_report = await pull_all(server, as_dicts=True)
        unreadable = {
            (name, entity, rid)
            for name, token in TOKENS
            for entity in ENTITIES
            for rid, kinds in server.variations(token, entity).items()
            if any(k.split(":", 1)[0] in UNREADABLE_KINDS for k in kinds)
        }
    assert typed_report.outcomes() == {Outcome.COMPLETED: len(TOKENS) * len(ENTITIES)}
    assert dict_report.outcomes() == typed_report.outcomes()
    assert Counter(map(key, typed)) == Counter(map(key, dicts))
    assert len(typed) == len(TOKENS) * len(ENTITIES) * 240
    invalid = {key(i) for i in typed if isinstance(i.record, InvalidRecord)}
    # Exactly the records no rule can read are invalid; every other one is typed.
    assert invalid == unreadable
    assert unreadable  # the rate makes some
    assert typed_report.invalid == len(unreadable)
    for item in typed:
        if not isinstance(item.record, InvalidRecord):
            assert isinstance(item.record, record_type(item.entity))
        else:
            assert item.record.field
            assert item.record.request_id
            assert item.record.connection == item.connection


# Readable variations that keep the value's meaning: the typed value must be the same.
MEANING_KEPT = {
    "datetime_offset",
    "datetime_space",
    "datetime_naive",
    "date_as_datetime",
    "decimal_as_number",
    "number_as_string",
    "string_as_number",
}


def resolve(record: Any, path: str) -> Any:
    value = record
    for part in re.split(r"\.|\[", path):
        if part.endswith("]"):
            value = value[int(part[:-1])]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
    return value


async def test_readable_variations_read_as_the_records_without_them() -> None:
    async with (
        MockMakini(records_per_entity=150, variations=1.0, seed=4) as varied,
        MockMakini(records_per_entity=150, seed=4) as plain,
    ):
        got, report = await pull_all(varied, as_dicts=False)
        base, _ = await pull_all(plain, as_dicts=False)
        applied = {
            (name, entity, rid): kinds
            for name, token in TOKENS
            for entity in ENTITIES
            for rid, kinds in varied.variations(token, entity).items()
        }
    assert report.invalid == 0
    assert report.ok
    base_by_key = {key(i): i.record for i in base}
    checked = 0
    for item in got:
        record, reference = item.record, base_by_key[key(item)]
        assert type(record) is type(reference)
        kinds = [k.split(":", 1) for k in applied.get(key(item), [])]
        touched = {path.split(".")[0].split("[")[0] for _, path in kinds}
        for field in attrs.fields(type(record)):
            if field.name not in touched and field.name != "extra":
                assert getattr(record, field.name) == getattr(reference, field.name), field.name
        for kind, path in kinds:
            if kind in MEANING_KEPT and not path.endswith("phone"):
                assert resolve(record, path) == resolve(reference, path), (kind, path)
                checked += 1
    assert checked > 500
