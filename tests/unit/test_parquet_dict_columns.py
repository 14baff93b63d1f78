"""A dict page's Parquet table, built column by column, equals the record-by-record one.

The record way (structure each dict, then read the records' fields) is the
reference: it is the typed pull's. Pages come from the mock's generator with
source-system variations, readable and unreadable, in both record shapes,
and from hypothesis, which puts any JSON value in any field.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makini_async.bulk import PulledPage
from makini_async.entities import Entity
from makini_async.models import structure_page
from makini_async.sinks import _parquet_dicts, _parquet_schema
from makini_async.sinks._parquet_schema import table_of
from makini_async.testing._data import generate_records
from makini_async.testing._realistic import widen
from makini_async.testing._variations import apply_variations

pytest.importorskip("pyarrow")


def _page(entity: Entity, records: list[Any]) -> PulledPage[Any]:
    return PulledPage("plant-1", entity, records, None, None, "req_1")


def _record_way(entity: Entity, records: list[Any]) -> Any:
    """The reference: every dict structured into its record first, as a typed pull has them."""
    typed, invalid = structure_page(entity, list(records), request_id="req_1", connection="plant-1")
    page = PulledPage("plant-1", entity, typed, None, None, "req_1", tuple(invalid))
    return table_of(page)


def _copies(records: list[Any]) -> list[Any]:
    return orjson.loads(orjson.dumps(records))  # the page's dicts, as a pull has them


@pytest.mark.parametrize("entity", list(Entity))
@pytest.mark.parametrize("shape", ["light", "realistic"])
def test_varied_source_data_lands_the_same_columns(entity: Entity, shape: str) -> None:
    records = generate_records(entity, 7, 120)
    if shape == "realistic":
        records = [widen(entity, r, 7, i) for i, r in enumerate(records)]
    varied, log = apply_variations(entity, records, 7, variations=0.5, unreadable=0.0)
    assert log  # the page holds source-shaped values: offsets, numbers as text, ...
    for start in range(0, len(varied), 40):
        page = _copies(varied[start : start + 40])
        assert _parquet_dicts.dict_columns(entity, page) is not None  # the column way ran
        got = table_of(_page(entity, page))
        want = _record_way(entity, _copies(varied[start : start + 40]))
        assert got.equals(want), f"{entity.value} rows {start}..{start + 40}"


@pytest.mark.parametrize("entity", [Entity.WORK_ORDERS, Entity.PURCHASE_ORDERS])
def test_a_page_with_a_record_that_does_not_fit_goes_the_record_way(entity: Entity) -> None:
    records = generate_records(entity, 3, 60)
    varied, log = apply_variations(entity, records, 3, variations=0.2, unreadable=0.3)
    assert log
    page = _copies(varied)
    assert _parquet_dicts.dict_columns(entity, page) is None
    table = table_of(_page(entity, page))
    want = _record_way(entity, _copies(varied))
    assert table.equals(want)
    rows = table.to_pylist()
    assert [r["id"] for r in rows if r["_invalid_reason"] is None]  # the good ones land typed
    bad = [r for r in rows if r["_invalid_reason"] is not None]
    assert bad  # and every misfit lands whole, with its reason
    assert {r["id"] for r in rows} == {r["id"] for r in varied}


def test_a_clean_page_takes_the_column_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path really is the one taken for a clean page (this file would pass vacuously)."""
    taken: list[bool] = []
    real = _parquet_dicts.dict_columns

    def spy(entity: Entity, records: list[Any]) -> Any:
        out = real(entity, records)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(_parquet_schema, "dict_columns", spy)
    table_of(_page(Entity.WORK_ORDERS, _copies(generate_records(Entity.WORK_ORDERS, 1, 10))))
    assert taken == [True]


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Values a field may hold: any JSON, and the shapes sources send for dates, numbers and lists.
_VALUE = st.one_of(
    _JSON,
    st.sampled_from(
        [
            "2024-03-01T10:00:00Z",
            "2024-03-01 10:00:00+0200",
            "2024-03-01T10:00:00.1234567",
            "2024-03-01",
            "2024-02-30",
            "1250.00",
            "1e3",
            " 12 ",
            "NaN",
            "10",
            ["a", "b"],
            ["a", 5],
            [{"line_number": "10", "quantity": 2.5}],
            {"line1": "Main St 1", "city": "Bergen", "zip": 5003},
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_values_in_any_fields_land_as_the_record_way(data: st.DataObject) -> None:
    entity = data.draw(st.sampled_from([Entity.WORK_ORDERS, Entity.PURCHASE_ORDERS, Entity.ASSETS]))
    base = generate_records(entity, 11, 3)
    fields = sorted({key for record in base for key in record} | {"x_unknown"})
    records = []
    for i, generated in enumerate(base):
        record = dict(generated)
        for name in data.draw(st.lists(st.sampled_from(fields), max_size=3), label=f"fields {i}"):
            record[name] = data.draw(_VALUE, label=name)
        records.append(record)
    got = table_of(_page(entity, _copies(records)))
    want = _record_way(entity, _copies(records))
    assert got.equals(want)
