"""Deterministic, seeded record generation for the mock server.

Records depend only on ``(seed, entity, index)`` plus the generator's fixed
tables, so two processes (or two runs) with the same seed serve the same data.
Generation is lazy: the server calls :func:`generate_records` the first time
an entity of a connection is read.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from makini_async.entities import Entity

__all__ = [
    "ID_PREFIX",
    "READ_ONLY_FIELDS",
    "REQUIRED_FIELDS",
    "format_datetime",
    "generate_records",
    "make_record",
    "now_iso",
    "parse_instant",
    "record_id",
]

#: Record id prefix per entity.
ID_PREFIX: Final[dict[Entity, str]] = {
    Entity.PURCHASE_ORDERS: "po_",
    Entity.WORK_ORDERS: "wo_",
    Entity.ASSETS: "ast_",
    Entity.INVENTORY_ITEMS: "inv_",
    Entity.VENDORS: "ven_",
    Entity.LOCATIONS: "loc_",
}

#: Fields a POST body must carry, per entity (else 400 VALIDATION_FAILED).
REQUIRED_FIELDS: Final[dict[Entity, tuple[str, ...]]] = {
    Entity.PURCHASE_ORDERS: ("vendor",),
    Entity.WORK_ORDERS: ("title",),
    Entity.ASSETS: ("name",),
    Entity.INVENTORY_ITEMS: ("part_number",),
    Entity.VENDORS: ("name",),
    Entity.LOCATIONS: ("name",),
}

#: Fields the server owns; a POST or PATCH body carrying them is rejected.
READ_ONLY_FIELDS: Final[frozenset[str]] = frozenset({"id", "created_at", "updated_at"})

_BASE_EPOCH: Final[int] = calendar.timegm((2024, 1, 1, 0, 0, 0, 0, 0, 0))
_STEP_SECONDS: Final[int] = 300
_CENT: Final[Decimal] = Decimal("0.01")
_INSTANT: Final = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(Z|[+-]\d\d:\d\d)?$"
)

_CITIES: Final[tuple[tuple[str, str, str], ...]] = (
    ("Hamburg", "HH", "DE"),
    ("Munich", "BY", "DE"),
    ("Lyon", "ARA", "FR"),
    ("Houston", "TX", "US"),
    ("Detroit", "MI", "US"),
    ("Rotterdam", "ZH", "NL"),
    ("Gothenburg", "VG", "SE"),
    ("Monterrey", "NLE", "MX"),
)
_STREETS: Final[tuple[str, ...]] = ("Industrial Way", "Harbour Road", "Mill Lane", "Plant Street")
_CURRENCIES: Final[tuple[str, ...]] = ("EUR", "USD", "SEK", "GBP")
_UOM: Final[tuple[str, ...]] = ("EA", "KG", "M", "L", "BOX")
_PO_STATUS: Final[tuple[str, ...]] = (
    "draft",
    "approved",
    "sent",
    "partially_received",
    "received",
    "closed",
    "cancelled",
)
_WO_STATUS: Final[tuple[str, ...]] = ("open", "in_progress", "on_hold", "completed", "cancelled")
_PRIORITY: Final[tuple[str, ...]] = ("low", "medium", "high", "urgent")
_ASSET_STATUS: Final[tuple[str, ...]] = ("operational", "down", "maintenance", "retired")
_MANUFACTURERS: Final[tuple[str, ...]] = ("Siemens", "ABB", "Grundfos", "SKF", "Atlas Copco")
_WORDS: Final[tuple[str, ...]] = (
    "pump",
    "bearing",
    "conveyor",
    "valve",
    "motor",
    "compressor",
    "filter",
    "gearbox",
    "seal",
    "sensor",
)
_PEOPLE: Final[tuple[str, ...]] = ("a.meyer", "j.smith", "l.nguyen", "k.olsen", "m.garcia")
_EXTRA_FIELDS: Final[tuple[tuple[str, Any], ...]] = (
    ("x_site_code", "S-7"),
    ("sap_document_type", "NB"),
    ("x_shift", "night"),
    ("legacy_ref", "L-0042"),
)


def format_datetime(epoch: float) -> str:
    """Format Unix seconds as ISO 8601 UTC, e.g. ``2024-03-01T12:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_instant(value: object) -> int | None:
    """Unix seconds of a contract or readably varied date-time, else ``None``.

    Accepts ``T`` or a space, 1-9 fraction digits (dropped), ``Z``, a numeric
    offset or no zone (UTC).
    """
    if not isinstance(value, str):
        return None
    m = _INSTANT.match(value)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    zone = m.group(7)
    offset = 0
    if zone and zone != "Z":
        offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * (-1 if zone[0] == "-" else 1)
    try:
        moment = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    return calendar.timegm(moment.utctimetuple()) - offset * 60


def _date(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def now_iso(skew: float = 0.0) -> str:
    """The wall-clock time (plus ``skew`` seconds), formatted like the records' timestamps."""
    return format_datetime(time.time() + skew)


def record_id(entity: Entity, index: int) -> str:
    """The id of the ``index``-th record of ``entity``, e.g. ``wo_000123``."""
    return f"{ID_PREFIX[entity]}{index:06d}"


def _address(rng: random.Random) -> dict[str, Any]:
    city, region, country = rng.choice(_CITIES)
    return {
        "line1": f"{rng.randint(1, 400)} {rng.choice(_STREETS)}",
        "line2": None if rng.random() < 0.7 else f"Building {rng.randint(1, 9)}",
        "city": city,
        "region": region,
        "postal_code": f"{rng.randint(10000, 99999)}",
        "country": country,
    }


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _purchase_order(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    n_lines = rng.randint(1, 4)
    lines = []
    total = Decimal(0)
    for ln in range(1, n_lines + 1):
        qty = Decimal(rng.randint(1, 500)) / 10
        price = Decimal(rng.randint(50, 500_000)) / 100
        total += qty * price
        lines.append(
            {
                "line_number": ln * 10,
                "product_code": f"P-{rng.randint(1000, 9999)}",
                "description": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS)}",
                "quantity": f"{qty:.3f}",
                "unit_of_measure": rng.choice(_UOM),
                "unit_price": f"{price:.2f}",
                "delivery_date": None if rng.random() < 0.3 else _date(created + 86400 * 20),
            }
        )
    vendor_index = rng.randrange(max(1, counts.get(Entity.VENDORS, 100)))
    return {
        "number": f"45{index:08d}",
        "status": rng.choice(_PO_STATUS),
        "vendor": {
            "id": record_id(Entity.VENDORS, vendor_index),
            "name": f"Vendor {vendor_index} GmbH",
        },
        "currency": rng.choice(_CURRENCIES),
        "order_date": _date(created),
        "required_date": _date(created + 86400 * rng.randint(7, 60)),
        "delivery_date": None if rng.random() < 0.5 else _date(created + 86400 * 30),
        "payment_terms": rng.choice(("NET30", "NET60", "NET15")),
        "ship_to": _address(rng),
        "bill_to": _address(rng),
        "lines": lines,
        "total_amount": _money(total),
    }


def _work_order(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    status = rng.choice(_WO_STATUS)
    word = rng.choice(_WORDS)
    return {
        "number": f"WO-{index:07d}",
        "title": f"Inspect {word} #{index}",
        "description": f"Scheduled maintenance of {word} on line {rng.randint(1, 12)}.",
        "status": status,
        "priority": rng.choice(_PRIORITY),
        "asset_id": record_id(Entity.ASSETS, rng.randrange(max(1, counts.get(Entity.ASSETS, 100)))),
        "location_id": None
        if rng.random() < 0.2
        else record_id(Entity.LOCATIONS, rng.randrange(max(1, counts.get(Entity.LOCATIONS, 100)))),
        "assignees": rng.sample(_PEOPLE, rng.randint(0, 2)),
        "due_date": None if rng.random() < 0.25 else _date(created + 86400 * rng.randint(1, 30)),
        "completed_at": format_datetime(created + 3600 * rng.randint(1, 72))
        if status == "completed"
        else None,
    }


def _asset(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    del created
    return {
        "name": f"{rng.choice(_WORDS).title()} {index}",
        "asset_tag": f"AT-{index:06d}",
        "serial_number": f"SN{rng.randint(10**8, 10**9 - 1)}",
        "manufacturer": rng.choice(_MANUFACTURERS),
        "model": f"M{rng.randint(100, 999)}",
        "status": rng.choice(_ASSET_STATUS),
        "location_id": record_id(
            Entity.LOCATIONS, rng.randrange(max(1, counts.get(Entity.LOCATIONS, 100)))
        ),
        "parent_id": None
        if index == 0 or rng.random() < 0.7
        else record_id(Entity.ASSETS, rng.randrange(index)),
    }


def _inventory_item(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    del created
    return {
        "part_number": f"PN-{index:06d}",
        "description": f"{rng.choice(_WORDS).title()} spare part",
        "quantity_on_hand": f"{Decimal(rng.randint(0, 100_000)) / 100:.2f}",
        "unit_of_measure": rng.choice(_UOM),
        "unit_cost": f"{Decimal(rng.randint(10, 99_999)) / 100:.2f}",
        "location_id": record_id(
            Entity.LOCATIONS, rng.randrange(max(1, counts.get(Entity.LOCATIONS, 100)))
        ),
        "reorder_point": f"{Decimal(rng.randint(0, 5000)) / 100:.2f}",
    }


def _vendor(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    del created, counts
    return {
        "name": f"Vendor {index} GmbH",
        "code": f"V{index:06d}",
        "email": f"orders@vendor{index}.example",
        "phone": f"+49 40 {rng.randint(1000000, 9999999)}",
        "address": _address(rng),
    }


def _location(
    rng: random.Random, index: int, created: int, counts: dict[Entity, int]
) -> dict[str, Any]:
    del created, counts
    return {
        "name": f"Plant {index}",
        "code": f"L{index:05d}",
        "parent_id": None
        if index == 0 or rng.random() < 0.5
        else record_id(Entity.LOCATIONS, rng.randrange(index)),
        "address": _address(rng),
    }


_BUILDERS: Final = {
    Entity.PURCHASE_ORDERS: _purchase_order,
    Entity.WORK_ORDERS: _work_order,
    Entity.ASSETS: _asset,
    Entity.INVENTORY_ITEMS: _inventory_item,
    Entity.VENDORS: _vendor,
    Entity.LOCATIONS: _location,
}


def _raw(entity: Entity, index: int, rng: random.Random) -> dict[str, Any]:
    if entity is Entity.WORK_ORDERS:
        return {"AUFNR": f"{4000000 + index:012d}", "AUART": "PM01", "IWERK": "P100"}
    if entity is Entity.PURCHASE_ORDERS:
        return {"EBELN": f"45{index:08d}", "BSART": "NB", "EKORG": "1000"}
    return {"source_id": f"{rng.randint(10**5, 10**6 - 1)}", "source_table": entity.value}


def make_record(
    entity: Entity,
    index: int,
    rng: random.Random,
    *,
    created: int | None = None,
    counts: dict[Entity, int] | None = None,
) -> dict[str, Any]:
    """Build the ``index``-th record of ``entity`` from ``rng``.

    ``created`` (Unix seconds) defaults to the generator's timeline, in which
    ``created_at`` grows with ``index``.
    """
    if created is None:
        created = _BASE_EPOCH + index * _STEP_SECONDS + rng.randrange(_STEP_SECONDS)
    updated = created + (0 if rng.random() < 0.3 else rng.randint(1, 86400 * 90))
    record: dict[str, Any] = {
        "id": record_id(entity, index),
        "created_at": format_datetime(created),
        "updated_at": format_datetime(updated),
    }
    record.update(_BUILDERS[entity](rng, index, created, counts or {}))
    record["custom_fields"] = {
        "plant": f"P{100 + rng.randrange(5) * 100}",
        "cost_center": f"CC-{rng.randint(1, 99)}",
    }
    if rng.random() < 0.8:
        record["raw"] = _raw(entity, index, rng)
    if rng.random() < 0.3:
        record.update(rng.sample(_EXTRA_FIELDS, rng.randint(1, 2)))
    return record


def generate_records(
    entity: Entity, seed: int, count: int, counts: dict[Entity, int] | None = None
) -> list[dict[str, Any]]:
    """``count`` deterministic records of ``entity`` for ``seed``, in creation order."""
    rng = random.Random(f"makini-mock:{seed}:{entity.value}")
    return [make_record(entity, i, rng, counts=counts) for i in range(count)]
