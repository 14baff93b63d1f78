"""Tests for makini_async.models: structuring, errors, round trips."""

from __future__ import annotations

import copy
import datetime as dt
import sys
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makini_async import models
from makini_async.entities import Entity
from makini_async.errors import RecordStructureError
from makini_async.models import (
    RECORD_TYPES,
    Address,
    Asset,
    InventoryItem,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    Vendor,
    VendorRef,
    WorkOrder,
    record_type,
    structure,
    structure_in_place,
    structure_many,
    unstructure,
)

UTC = dt.timezone.utc
BASE = {
    "created_at": "2024-03-01T12:00:00Z",
    "updated_at": "2024-03-02T08:30:15Z",
    "custom_fields": {"cost_center": "CC-12", "flag": True},
}
ADDRESS = {
    "line1": "1 Industrial Way",
    "line2": None,
    "city": "Rotterdam",
    "region": "ZH",
    "postal_code": "3011 AA",
    "country": "NL",
}


def po_dict() -> dict[str, Any]:
    return {
        "id": "po_1",
        **copy.deepcopy(BASE),
        "raw": {"EBELN": "4500000001"},
        "number": "PO-1",
        "status": "approved",
        "vendor": {"id": "ven_1", "name": "Acme"},
        "currency": "EUR",
        "order_date": "2024-03-01",
        "required_date": "2024-03-10",
        "delivery_date": None,
        "payment_terms": "NET30",
        "ship_to": dict(ADDRESS),
        "bill_to": dict(ADDRESS, line2="Floor 2"),
        "lines": [
            {
                "line_number": i,
                "product_code": f"P-{i}",
                "description": "Bolt",
                "quantity": "2.50",
                "unit_of_measure": "EA",
                "unit_price": "1250.00",
                "delivery_date": "2024-03-09" if i % 2 else None,
            }
            for i in (1, 2, 3)
        ],
        "total_amount": "9375.00",
        "sap_document_type": "NB",
    }


def wo_dict() -> dict[str, Any]:
    return {
        "id": "wo_1",
        **copy.deepcopy(BASE),
        "number": "WO-1",
        "title": "Replace bearing",
        "description": "Drive end",
        "status": "in_progress",
        "priority": "high",
        "asset_id": "as_1",
        "location_id": "loc_1",
        "assignees": ["u1", "u2"],
        "due_date": "2024-03-05",
        "completed_at": "2024-03-04T10:00:00+02:00",
        "x_site_code": "S1",
    }


SAMPLES: dict[Entity, dict[str, Any]] = {
    Entity.PURCHASE_ORDERS: po_dict(),
    Entity.WORK_ORDERS: wo_dict(),
    Entity.ASSETS: {
        "id": "as_1",
        **BASE,
        "name": "Conveyor 3",
        "asset_tag": "A-3",
        "serial_number": "SN9",
        "manufacturer": "Siemens",
        "model": "X1",
        "status": "operational",
        "location_id": "loc_1",
        "parent_id": None,
    },
    Entity.INVENTORY_ITEMS: {
        "id": "inv_1",
        **BASE,
        "part_number": "BRG-6204",
        "description": "Bearing",
        "quantity_on_hand": "12.000",
        "unit_of_measure": "EA",
        "unit_cost": "7.35",
        "location_id": "loc_1",
        "reorder_point": "4",
    },
    Entity.VENDORS: {
        "id": "ven_1",
        **BASE,
        "name": "Acme",
        "code": "ACME",
        "email": "ap@acme.test",
        "phone": "+31 10 000",
        "address": dict(ADDRESS, x_geo="51.9,4.4"),
    },
    Entity.LOCATIONS: {
        "id": "loc_1",
        **BASE,
        "name": "Plant 1",
        "code": "P1",
        "parent_id": "loc_0",
        "address": dict(ADDRESS),
    },
}


def err(entity: Entity, data: Any, request_id: str = "req_42") -> RecordStructureError:
    with pytest.raises(RecordStructureError) as info:
        structure_many(entity, [data], request_id=request_id)
    return info.value


# --- structuring every entity ---


def test_record_types_cover_every_entity() -> None:
    assert set(RECORD_TYPES) == set(Entity)
    assert record_type("work-orders") is WorkOrder
    assert record_type(Entity.PURCHASE_ORDERS) is PurchaseOrder


def test_all_is_sorted_and_complete() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert models.__all__ == sorted(models.__all__, key=kind)
    public = {n for n in dir(models) if not n.startswith("_")}
    assert set(models.__all__) <= public


@pytest.mark.parametrize("entity", list(Entity))
def test_every_entity_structures_and_round_trips(entity: Entity) -> None:
    data = SAMPLES[entity]
    record = structure(entity, data)
    assert type(record) is RECORD_TYPES[entity]
    assert record.id == data["id"]
    assert record.created_at == dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert record.updated_at is not None
    assert record.updated_at.tzinfo is not None
    assert record.custom_fields == {"cost_center": "CC-12", "flag": True}
    assert unstructure(record) == data


def test_purchase_order_types() -> None:
    po = structure(Entity.PURCHASE_ORDERS, po_dict())
    assert isinstance(po, PurchaseOrder)
    assert po.vendor == VendorRef(id="ven_1", name="Acme")
    assert isinstance(po.ship_to, Address)
    assert po.bill_to is not None
    assert po.bill_to.line2 == "Floor 2"
    assert po.order_date == dt.date(2024, 3, 1)
    assert po.delivery_date is None
    assert po.total_amount == Decimal("9375.00")
    assert str(po.total_amount) == "9375.00"
    assert len(po.lines) == 3
    line = po.lines[0]
    assert isinstance(line, PurchaseOrderLine)
    assert line.line_number == 1
    assert type(line.quantity) is Decimal
    assert line.quantity == Decimal("2.50")
    assert line.unit_price == Decimal("1250.00")
    assert line.delivery_date == dt.date(2024, 3, 9)
    assert po.lines[1].delivery_date is None
    assert po.raw == {"EBELN": "4500000001"}
    assert po.extra == {"sap_document_type": "NB"}


def test_work_order_types() -> None:
    wo = structure(Entity.WORK_ORDERS, wo_dict())
    assert isinstance(wo, WorkOrder)
    assert wo.assignees == ("u1", "u2")
    assert wo.due_date == dt.date(2024, 3, 5)
    assert wo.completed_at == dt.datetime(2024, 3, 4, 8, tzinfo=UTC)
    assert wo.completed_at is not None
    assert wo.completed_at.utcoffset() == dt.timedelta(hours=2)  # offset kept
    assert wo.extra == {"x_site_code": "S1"}
    assert wo.raw is None
    assert wo.status in models.WORK_ORDER_STATUSES
    assert wo.priority in models.WORK_ORDER_PRIORITIES


def test_inventory_and_nested_extra() -> None:
    data = dict(SAMPLES[Entity.INVENTORY_ITEMS], reorder_point=4)
    inv = structure(Entity.INVENTORY_ITEMS, data)
    assert isinstance(inv, InventoryItem)
    assert inv.quantity_on_hand == Decimal("12.000")
    assert inv.reorder_point == Decimal(4)  # int accepted...
    assert unstructure(inv)["reorder_point"] == "4"  # ...and written back as a string
    vendor = structure(Entity.VENDORS, SAMPLES[Entity.VENDORS])
    assert isinstance(vendor, Vendor)
    assert vendor.address is not None
    assert vendor.address.extra == {"x_geo": "51.9,4.4"}
    assert isinstance(structure(Entity.ASSETS, SAMPLES[Entity.ASSETS]), Asset)
    assert isinstance(structure(Entity.LOCATIONS, SAMPLES[Entity.LOCATIONS]), Location)


def test_minimal_record_defaults() -> None:
    wo = structure(Entity.WORK_ORDERS, {"id": "w"})
    assert isinstance(wo, WorkOrder)
    assert wo.created_at is None
    assert wo.number is None
    assert wo.due_date is None
    assert wo.assignees == ()
    assert wo.custom_fields == {}
    assert wo.raw is None
    assert wo.extra == {}
    po = structure(Entity.PURCHASE_ORDERS, {"id": "p", "lines": None, "custom_fields": None})
    assert isinstance(po, PurchaseOrder)
    assert po.lines == ()
    assert po.vendor is None
    assert po.custom_fields == {}


def test_unknown_status_kept() -> None:
    wo = structure(Entity.WORK_ORDERS, {"id": "w", "status": "awaiting_parts"})
    assert isinstance(wo, WorkOrder)
    assert wo.status == "awaiting_parts"


def test_naive_datetime_is_utc_and_z_for_310() -> None:
    wo = structure(Entity.WORK_ORDERS, {"id": "w", "created_at": "2024-03-01T12:00:00"})
    assert wo.created_at == dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    data = {"id": "w", "created_at": "2024-03-01T12:00:00.250Z"}
    wo = structure(Entity.WORK_ORDERS, data)
    assert wo.created_at == dt.datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert unstructure(wo)["created_at"] == "2024-03-01T12:00:00.250Z"


def test_structure_many_and_input_untouched() -> None:
    page = [wo_dict() for _ in range(5)]
    before = copy.deepcopy(page)
    records = structure_many(Entity.WORK_ORDERS, page, request_id="r")
    assert len(records) == 5
    assert all(isinstance(r, WorkOrder) for r in records)
    assert page == before
    assert structure_many("work_orders", iter(page))[0] == records[0]


def test_unstructure_omits_absent_raw_and_puts_extra_top_level() -> None:
    out = unstructure(structure(Entity.WORK_ORDERS, wo_dict()))
    assert "raw" not in out
    assert "extra" not in out
    assert out["x_site_code"] == "S1"
    assert out["completed_at"] == "2024-03-04T10:00:00+02:00"


# --- records are frozen, equal and hashable by value ---


def test_frozen_equal_hashable() -> None:
    a = structure(Entity.PURCHASE_ORDERS, po_dict())
    b = structure(Entity.PURCHASE_ORDERS, po_dict())
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.number = "x"  # type: ignore[misc]
    assert a != attrs.evolve(a, number="PO-2")
    assert structure(Entity.WORK_ORDERS, wo_dict()) == WorkOrder(
        id="wo_1",
        created_at=dt.datetime(2024, 3, 1, 12, tzinfo=UTC),
        updated_at=dt.datetime(2024, 3, 2, 8, 30, 15, tzinfo=UTC),
        custom_fields={"cost_center": "CC-12", "flag": True},
        number="WO-1",
        title="Replace bearing",
        description="Drive end",
        status="in_progress",
        priority="high",
        asset_id="as_1",
        location_id="loc_1",
        assignees=("u1", "u2"),
        due_date=dt.date(2024, 3, 5),
        completed_at=dt.datetime(2024, 3, 4, 8, tzinfo=UTC),
        extra={"x_site_code": "S1"},
    )


# --- errors ---


def _po_with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = po_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "needle"),
    [
        (("order_date",), "2024-13-01", "order_date", "date"),
        (("created_at",), "yesterday", "created_at", "date-time"),
        (("created_at",), 1709294400, "created_at", "date-time"),
        (("lines", 2, "quantity"), "two", "lines[2].quantity", "decimal"),
        (("lines", 1, "unit_price"), "12,50", "lines[1].unit_price", "decimal"),
        (("lines", 1, "unit_price"), True, "lines[1].unit_price", "bool"),
        (("total_amount",), "NaN", "total_amount", "finite"),
        (("lines",), "oops", "lines", "list"),
        (("lines",), {"line_number": 1}, "lines", "list"),
        (("lines", 0), "x", "lines[0]", "object"),
        (("lines", 0, "line_number"), "one", "lines[0].line_number", "integer"),
        (("lines", 0, "line_number"), 1.5, "lines[0].line_number", "integer"),
        (("vendor",), ["ven_1"], "vendor", "object"),
        (("vendor",), "V123", "vendor", "object"),
        (("vendor", "name"), True, "vendor.name", "string"),
        (("ship_to", "city"), ["Rotterdam"], "ship_to.city", "string"),
        (("number",), {"n": 1}, "number", "string"),
        (("custom_fields",), [1], "custom_fields", "object"),
        (("raw",), "x", "raw", "object"),
        (("id",), None, "id", "string"),
    ],
)
def test_bad_values_raise_one_typed_error(
    path: tuple[Any, ...], value: Any, field: str, needle: str
) -> None:
    e = err(Entity.PURCHASE_ORDERS, _po_with(path, value))
    assert type(e) is RecordStructureError
    assert e.field == field
    assert e.request_id == "req_42"
    text = str(e)
    assert "purchase-orders" in text
    assert field in text
    assert "req_42" in text
    assert needle in text
    if path != ("id",):
        assert "po_1" in text
    # The record itself travels with the error: raising never loses it.
    assert e.invalid_record is not None
    assert e.invalid_record.data == _po_with(path, value)
    assert e.invalid_record.field == field


@pytest.mark.parametrize(
    ("path", "value", "attr", "expected"),
    [
        # Numbers where the contract documents decimal strings.
        (("total_amount",), 1234.5, ("total_amount",), Decimal("1234.5")),
        (("total_amount",), 0.1, ("total_amount",), Decimal("0.1")),
        (("total_amount",), 1250, ("total_amount",), Decimal("1250")),
        (("lines", 1, "unit_price"), 12.5, ("lines", 1, "unit_price"), Decimal("12.5")),
        # Numbers where text is documented.
        (("number",), 4500000017, ("number",), "4500000017"),
        (("vendor", "name"), 7, ("vendor", "name"), "7"),
        (("ship_to", "postal_code"), 3011, ("ship_to", "postal_code"), "3011"),
        (("id",), 5, ("id",), "5"),
        # Integers given as text or integral floats.
        (("lines", 0, "line_number"), "10", ("lines", 0, "line_number"), 10),
        (("lines", 0, "line_number"), 20.0, ("lines", 0, "line_number"), 20),
        # Dates given date-times: the date as written, no time-zone shift.
        (("order_date",), "2024-03-01T23:30:00-05:00", ("order_date",), dt.date(2024, 3, 1)),
        (("order_date",), "2024-03-01T00:00:00Z", ("order_date",), dt.date(2024, 3, 1)),
        (("order_date",), "2024-03-01 08:00:00", ("order_date",), dt.date(2024, 3, 1)),
        (
            ("lines", 0, "delivery_date"),
            "2024-03-09T12:00:00.123+02:00",
            ("lines", 0, "delivery_date"),
            dt.date(2024, 3, 9),
        ),
        # Date-times in the shapes sources send.
        (
            ("created_at",),
            "2024-03-01T14:00:00+02:00",
            ("created_at",),
            dt.datetime(2024, 3, 1, 12, tzinfo=UTC),
        ),
        (
            ("created_at",),
            "2024-03-01 12:00:00.123456789Z",
            ("created_at",),
            dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        (
            ("created_at",),
            "2024-03-01T07:00:00-0500",
            ("created_at",),
            dt.datetime(2024, 3, 1, 12, tzinfo=UTC),
        ),
        (
            ("created_at",),
            "2024-03-01T12:00:00",
            ("created_at",),
            dt.datetime(2024, 3, 1, 12, tzinfo=UTC),
        ),
        (("created_at",), "2024-03-01", ("created_at",), dt.datetime(2024, 3, 1, tzinfo=UTC)),
        # null for lists and objects; statuses the contract does not list.
        (("lines",), None, ("lines",), ()),
        (("custom_fields",), None, ("custom_fields",), {}),
        (("raw",), None, ("raw",), None),
        (("vendor",), None, ("vendor",), None),
        (("status",), "awaiting_parts", ("status",), "awaiting_parts"),
    ],
)
def test_source_shaped_values_are_read_by_one_rule(
    path: tuple[Any, ...], value: Any, attr: tuple[Any, ...], expected: Any
) -> None:
    record = structure(Entity.PURCHASE_ORDERS, _po_with(path, value), request_id="req_42")
    got: Any = record
    for step in attr:
        got = got[step] if isinstance(step, int) else getattr(got, step)
    assert got == expected
    assert type(got) is type(expected)


def test_work_order_assignees_and_unknown_priority() -> None:
    wo = structure(Entity.WORK_ORDERS, dict(wo_dict(), assignees=["a", 101], priority="critical"))
    assert wo.assignees == ("a", "101")
    assert wo.priority == "critical"
    wo = structure(Entity.WORK_ORDERS, dict(wo_dict(), assignees=None, due_date=None))
    assert wo.assignees == ()
    assert wo.due_date is None


def test_a_float_decimal_keeps_its_shortest_text() -> None:
    # 0.1 + 0.2 as a float prints 0.30000000000000004: that is what the source sent.
    record = structure(Entity.INVENTORY_ITEMS, {"id": "i", "unit_cost": 0.1 + 0.2})
    assert record.unit_cost == Decimal("0.30000000000000004")
    with pytest.raises(RecordStructureError, match="decimal"):
        structure(Entity.INVENTORY_ITEMS, {"id": "i", "unit_cost": float("inf")})


def test_missing_id() -> None:
    data = wo_dict()
    del data["id"]
    e = err(Entity.WORK_ORDERS, data)
    assert e.field == "id"
    assert "missing" in str(e)
    assert "req_42" in str(e)


def test_bad_work_order_fields() -> None:
    e = err(Entity.WORK_ORDERS, dict(wo_dict(), assignees=["a", None]))
    assert e.field == "assignees"
    e = err(Entity.WORK_ORDERS, dict(wo_dict(), assignees=7))
    assert e.field == "assignees"
    e = err(Entity.WORK_ORDERS, dict(wo_dict(), due_date=20240301))
    assert e.field == "due_date"


def test_record_not_an_object() -> None:
    e = err(Entity.ASSETS, ["not", "a", "dict"])
    assert e.field is None
    assert "object" in str(e)


def test_error_names_failing_record_in_page() -> None:
    page = [wo_dict() for _ in range(4)]
    page[2]["id"] = "wo_bad"
    page[2]["due_date"] = "nope"
    with pytest.raises(RecordStructureError) as info:
        structure_many(Entity.WORK_ORDERS, page, request_id="rq")
    assert "wo_bad" in str(info.value)
    assert info.value.field == "due_date"


def test_structure_single_also_typed_error() -> None:
    with pytest.raises(RecordStructureError) as info:
        structure(Entity.WORK_ORDERS, {"id": "w", "completed_at": 5}, request_id="r1")
    assert info.value.field == "completed_at"
    assert info.value.request_id == "r1"


# --- hypothesis round trip ---

_text = st.text(max_size=12)
_opt_text = st.none() | _text
_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31))
_ts = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=0).isoformat() + "Z"
)
_dec = st.decimals(
    allow_nan=False, allow_infinity=False, places=2, max_value=10**9, min_value=-(10**9)
).map(str)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=6,
)
_extra_keys = st.dictionaries(
    st.text(min_size=1, max_size=8).map(lambda s: "x_" + s), _json, max_size=3
)
_address = st.fixed_dictionaries(
    dict.fromkeys(("line1", "line2", "city", "region", "postal_code", "country"), _opt_text)
)
_base = {
    "id": _text,
    "created_at": _ts,
    "updated_at": _ts,
    "custom_fields": st.dictionaries(_text, _json, max_size=3),
}
_line = st.fixed_dictionaries(
    {
        "line_number": st.none() | st.integers(),
        "product_code": _opt_text,
        "description": _opt_text,
        "quantity": st.none() | _dec,
        "unit_of_measure": _opt_text,
        "unit_price": st.none() | _dec,
        "delivery_date": st.none() | _dates.map(str),
    }
)
_po = st.fixed_dictionaries(
    {
        **_base,
        "number": _opt_text,
        "status": st.none() | st.sampled_from(sorted(models.PURCHASE_ORDER_STATUSES)) | _text,
        "vendor": st.none() | st.fixed_dictionaries({"id": _opt_text, "name": _opt_text}),
        "currency": _opt_text,
        "order_date": st.none() | _dates.map(str),
        "required_date": st.none() | _dates.map(str),
        "delivery_date": st.none() | _dates.map(str),
        "payment_terms": _opt_text,
        "ship_to": st.none() | _address,
        "bill_to": st.none() | _address,
        "lines": st.lists(_line, max_size=3),
        "total_amount": st.none() | _dec,
    },
    optional={"raw": st.dictionaries(_text, _json, max_size=3)},
)
_wo = st.fixed_dictionaries(
    {
        **_base,
        "number": _opt_text,
        "title": _opt_text,
        "description": _opt_text,
        "status": _opt_text,
        "priority": _opt_text,
        "asset_id": _opt_text,
        "location_id": _opt_text,
        "assignees": st.lists(_text, max_size=3),
        "due_date": st.none() | _dates.map(str),
        "completed_at": st.none() | _ts,
    },
    optional={"raw": st.dictionaries(_text, _json, max_size=3)},
)


@settings(max_examples=150, deadline=None)
@given(data=_po, extra=_extra_keys)
def test_round_trip_purchase_orders(data: dict[str, Any], extra: dict[str, Any]) -> None:
    data = {**data, **extra}
    record = structure(Entity.PURCHASE_ORDERS, data)
    assert record.extra == extra
    assert unstructure(record) == data
    assert structure(Entity.PURCHASE_ORDERS, unstructure(record)) == record


@settings(max_examples=150, deadline=None)
@given(data=_wo, extra=_extra_keys)
def test_round_trip_work_orders(data: dict[str, Any], extra: dict[str, Any]) -> None:
    data = {**data, **extra}
    record = structure(Entity.WORK_ORDERS, data)
    assert unstructure(record) == data


def test_python_310_z_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from makini_async.models import _fields

    # What Python 3.10 runs: the shared rule in place of fromisoformat.
    monkeypatch.setattr(_fields, "_fromisoformat", _fields.parse_datetime)
    assert _fields.to_datetime("2024-03-01T12:00:00Z") == dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert _fields.to_datetime("2024-03-01T12:00:00+01:00").utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="date-time"):
        _fields.to_datetime("2024-03-01T12:00:00+01:00Z")
    assert _fields.to_datetime("2024-03-01 12:00:00.1234567") == dt.datetime(
        2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC
    )
    assert _fields.to_date("2024-03-01T23:00:00-05:00") == dt.date(2024, 3, 1)
    # The generated structuring holds its own reference to the fast path.
    from makini_async.models._converter import structure_fn
    from makini_async.models._records import WorkOrder

    fn = structure_fn(WorkOrder)
    monkeypatch.setitem(fn.__globals__, "_fromiso", _fields.parse_datetime)
    wo = fn({"id": "w", "created_at": "2024-03-01 12:00:00.1234567", "completed_at": "2024-03-01"})
    assert wo.created_at == dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert wo.completed_at == dt.datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="date-time"):
        fn({"id": "w", "created_at": "2024-03-01T12:00:00+01:00Z"})


def test_an_empty_extra_is_a_fresh_small_dict() -> None:
    # Not the emptied copy of the API object, which keeps its full-size table.
    wo = structure(Entity.WORK_ORDERS, dict.fromkeys(("id", *(f"k{i}" for i in range(20))), "x"))
    assert len(wo.extra) == 20
    wo = structure(Entity.WORK_ORDERS, {"id": "w", "title": "t", "status": "open", "raw": {}})
    assert wo.extra == {}
    assert sys.getsizeof(wo.extra) == sys.getsizeof({})


def test_structure_in_place_reuses_the_list_and_names_the_bad_record() -> None:
    page = [{**BASE, "id": f"w{i}", "status": "open"} for i in range(4)]
    records = structure_in_place(Entity.WORK_ORDERS, page, request_id="req_9")
    assert records is page
    assert [type(r) for r in records] == [WorkOrder] * 4
    assert records == structure_many(
        Entity.WORK_ORDERS, [{**BASE, "id": f"w{i}", "status": "open"} for i in range(4)]
    )
    bad = [{**BASE, "id": f"w{i}"} for i in range(4)]
    bad[2]["due_date"] = "next tuesday"
    with pytest.raises(RecordStructureError) as info:
        structure_in_place(Entity.WORK_ORDERS, bad, request_id="req_9")
    assert info.value.field == "due_date"
    assert "record (id='w2')" in str(info.value)
    assert "req_9" in str(info.value)
    assert isinstance(bad[0], WorkOrder)
    assert isinstance(bad[2], dict)


def test_a_list_of_pairs_is_not_an_object() -> None:
    # dict() would accept it; the models must not.
    with pytest.raises(RecordStructureError, match="expected an object"):
        structure(Entity.WORK_ORDERS, [("id", "w")])  # type: ignore[arg-type]
    with pytest.raises(RecordStructureError, match="expected an object"):
        structure(Entity.PURCHASE_ORDERS, {"id": "p", "vendor": [["id", "v"]]})


def test_structure_page_keeps_what_does_not_fit() -> None:
    page: list[Any] = [{**BASE, "id": f"w{i}", "status": "open"} for i in range(5)]
    page[1]["due_date"] = "next tuesday"
    page[3] = ["not", "an", "object"]
    original = copy.deepcopy(page)
    records, invalid = models.structure_page(
        Entity.WORK_ORDERS, page, request_id="req_7", connection="plant-1"
    )
    assert [r.id for r in records] == ["w0", "w2", "w4"]
    assert all(type(r) is WorkOrder for r in records)
    assert [(i.field, i.id, i.request_id, i.connection) for i in invalid] == [
        ("due_date", "w1", "req_7", "plant-1"),
        (None, None, "req_7", "plant-1"),
    ]
    # The data is what the API sent, untouched.
    assert [i.data for i in invalid] == [original[1], original[3]]
    assert "next tuesday" in invalid[0].reason
    assert "object" in invalid[1].reason
    assert "plant-1" in str(invalid[0])
    assert "req_7" in str(invalid[0])


def test_structure_page_without_failures_returns_the_same_list() -> None:
    page = [{**BASE, "id": f"w{i}"} for i in range(3)]
    records, invalid = models.structure_page(Entity.WORK_ORDERS, page)
    assert records is page
    assert invalid == []


def test_a_huge_bad_value_is_cut_short_in_the_reason() -> None:
    _, invalid = models.structure_page(Entity.WORK_ORDERS, [{"id": "w", "due_date": "x" * 100_000}])
    assert len(invalid[0].reason) < 200
    assert len(invalid[0].data["due_date"]) == 100_000


def test_unstructure_of_a_record_nested_too_deeply_is_a_typed_error() -> None:
    value: dict[str, Any] = {}
    for _ in range(5000):
        value = {"n": value}
    record = WorkOrder(id="w", custom_fields=value)
    with pytest.raises(RecordStructureError, match="nested too deeply"):
        unstructure(record)
