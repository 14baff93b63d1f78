"""Deterministic data: shapes, seeds, sharing and copy-on-write."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import pytest

from makini_async.entities import Entity
from makini_async.testing import MockMakini
from makini_async.testing._data import ID_PREFIX, generate_records

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
ADDRESS_KEYS = {"line1", "line2", "city", "region", "postal_code", "country"}

FIELDS = {
    Entity.PURCHASE_ORDERS: {
        "number", "status", "vendor", "currency", "order_date", "required_date",
        "delivery_date", "payment_terms", "ship_to", "bill_to", "lines", "total_amount",
    },
    Entity.WORK_ORDERS: {
        "number", "title", "description", "status", "priority", "asset_id", "location_id",
        "assignees", "due_date", "completed_at",
    },
    Entity.ASSETS: {
        "name", "asset_tag", "serial_number", "manufacturer", "model", "status",
        "location_id", "parent_id",
    },
    Entity.INVENTORY_ITEMS: {
        "part_number", "description", "quantity_on_hand", "unit_of_measure", "unit_cost",
        "location_id", "reorder_point",
    },
    Entity.VENDORS: {"name", "code", "email", "phone", "address"},
    Entity.LOCATIONS: {"name", "code", "parent_id", "address"},
}  # fmt: skip


@pytest.mark.parametrize("entity", list(Entity))
def test_record_shapes(entity: Entity) -> None:
    records = generate_records(entity, 7, 300)
    assert len(records) == 300
    assert any("raw" in r for r in records)
    assert any("raw" not in r for r in records)
    base = {"id", "created_at", "updated_at", "custom_fields", "raw"} | FIELDS[entity]
    assert any(set(r) - base for r in records), "some records carry unknown extra fields"
    for i, r in enumerate(records):
        assert r["id"] == f"{ID_PREFIX[entity]}{i:06d}"
        assert ISO.match(r["created_at"])
        assert ISO.match(r["updated_at"])
        assert r["updated_at"] >= r["created_at"]
        assert isinstance(r["custom_fields"], dict)
        assert FIELDS[entity] <= set(r)
        if "raw" in r:
            assert isinstance(r["raw"], dict)
    assert [r["created_at"] for r in records] == sorted(r["created_at"] for r in records)


def test_purchase_order_details() -> None:
    statuses = {"draft", "approved", "sent", "partially_received", "received", "closed",
                "cancelled"}  # fmt: skip
    for po in generate_records(Entity.PURCHASE_ORDERS, 1, 200):
        assert po["status"] in statuses
        assert set(po["vendor"]) == {"id", "name"}
        assert set(po["ship_to"]) == ADDRESS_KEYS
        assert set(po["bill_to"]) == ADDRESS_KEYS
        assert DATE.match(po["order_date"])
        assert DATE.match(po["required_date"])
        assert po["delivery_date"] is None or DATE.match(po["delivery_date"])
        total = Decimal(0)
        for line in po["lines"]:
            assert isinstance(line["line_number"], int)
            assert re.match(r"^\d+\.\d{3}$", line["quantity"])
            assert re.match(r"^\d+\.\d{2}$", line["unit_price"])
            assert line["delivery_date"] is None or DATE.match(line["delivery_date"])
            total += Decimal(line["quantity"]) * Decimal(line["unit_price"])
        expected = total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert po["total_amount"] == str(expected)


def test_work_order_details() -> None:
    for wo in generate_records(Entity.WORK_ORDERS, 2, 300):
        assert wo["status"] in {"open", "in_progress", "on_hold", "completed", "cancelled"}
        assert wo["priority"] in {"low", "medium", "high", "urgent"}
        assert (wo["completed_at"] is not None) == (wo["status"] == "completed")
        assert wo["completed_at"] is None or ISO.match(wo["completed_at"])
        assert wo["due_date"] is None or DATE.match(wo["due_date"])
        assert all(isinstance(a, str) for a in wo["assignees"])


def test_same_seed_same_records_other_seed_differs() -> None:
    a = generate_records(Entity.ASSETS, 5, 50)
    assert a == generate_records(Entity.ASSETS, 5, 50)
    assert a != generate_records(Entity.ASSETS, 6, 50)


def test_shared_dataset_and_copy_on_write() -> None:
    server = MockMakini(records_per_entity=20)
    a = server.records("tok-a", Entity.ASSETS)
    b = server.records("tok-b", Entity.ASSETS)
    assert a == b
    # Shared: the same store object backs both tokens until one mutates.
    assert (
        server._conn("tok-a").stores[Entity.ASSETS] is server._conn("tok-b").stores[Entity.ASSETS]
    )
    server.update("tok-a", Entity.ASSETS, "ast_000003", {"name": "changed"})
    assert server.record("tok-a", "assets", "ast_000003")["name"] == "changed"  # type: ignore[index]
    assert server.record("tok-b", "assets", "ast_000003")["name"] != "changed"  # type: ignore[index]
    assert server.records("tok-c", Entity.ASSETS) == b


def test_distinct_data_per_token() -> None:
    server = MockMakini(records_per_entity=10, distinct_data=True)
    assert server.records("x", "vendors") != server.records("y", "vendors")
    assert server.records("x", "vendors") == MockMakini(
        records_per_entity=10, distinct_data=True
    ).records("x", "vendors")


def test_per_connection_counts() -> None:
    server = MockMakini(records_per_entity=10)
    server.configure_connection("big", records_per_entity={Entity.WORK_ORDERS: 33})
    assert len(server.records("big", "work-orders")) == 33
    assert len(server.records("big", "assets")) == 100
    assert len(server.records("small", "work-orders")) == 10


def test_helpers_insert_update_delete() -> None:
    server = MockMakini(records_per_entity=5)
    rec = server.insert("t", "work-orders", {"title": "new one", "x_custom": 1})
    assert rec["id"] == "wo_000005"
    assert rec["title"] == "new one"
    assert rec["x_custom"] == 1
    assert server.records("t", "work-orders")[-1] == rec
    before = server.record("t", "work-orders", "wo_000001")
    assert before is not None
    after = server.update("t", "work-orders", "wo_000001", {"priority": "urgent"})
    assert after["updated_at"] > before["updated_at"]
    server.delete("t", "work-orders", "wo_000002")
    assert "wo_000002" not in {r["id"] for r in server.records("t", "work-orders")}
    with pytest.raises(KeyError):
        server.delete("t", "work-orders", "wo_000002")
    with pytest.raises(KeyError):
        server.update("t", "work-orders", "wo_999999", {})
