"""Micro-benchmark: typed structuring of one page next to orjson parsing.

Run::

    python benchmarks/structure_bench.py [--records 200] [--repeat 7]

For work orders (200 per page) and purchase orders (100 per page, 3 lines
each) it times, per record:

* ``orjson``: ``orjson.loads(page_bytes)`` alone (plain dicts);
* ``cattrs``: loads + a straightforward ``cattrs.Converter()`` (detailed
  validation on, hooks for datetime/date/Decimal), as a baseline;
* ``models``: loads + ``makini_async.models.structure_many`` (the library).

and prints microseconds per record and the ratio to ``orjson`` alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import random
import sys
import timeit
from decimal import Decimal
from typing import Any

import cattrs
import orjson

from makini_async.entities import Entity
from makini_async.models import PurchaseOrder, WorkOrder, structure_many


def _ts(rng: random.Random) -> str:
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    moment = base + dt.timedelta(seconds=rng.randrange(0, 86400 * 365))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(rng: random.Random) -> str:
    return (dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(0, 400))).isoformat()


def work_order(rng: random.Random, i: int) -> dict[str, Any]:
    """A realistic work-order dict, as the API sends it."""
    completed = rng.random() < 0.3
    return {
        "id": f"wo_{i:08d}",
        "created_at": _ts(rng),
        "updated_at": _ts(rng),
        "custom_fields": {"crew": f"C{rng.randrange(9)}"} if rng.random() < 0.5 else {},
        "number": f"WO-{100000 + i}",
        "title": "Replace bearing on conveyor",
        "description": "Vibration above threshold; replace drive-end bearing.",
        "status": rng.choice(["open", "in_progress", "on_hold", "completed", "cancelled"]),
        "priority": rng.choice(["low", "medium", "high", "urgent"]),
        "asset_id": f"as_{rng.randrange(10**6):06d}",
        "location_id": f"loc_{rng.randrange(500):04d}",
        "assignees": [f"user_{rng.randrange(100)}" for _ in range(rng.randrange(3))],
        "due_date": _day(rng) if rng.random() < 0.8 else None,
        "completed_at": _ts(rng) if completed else None,
        "x_site_code": f"S{rng.randrange(40)}",
    }


def _address(rng: random.Random) -> dict[str, Any]:
    return {
        "line1": f"{rng.randrange(1, 999)} Industrial Way",
        "line2": None,
        "city": "Rotterdam",
        "region": "ZH",
        "postal_code": "3011 AA",
        "country": "NL",
    }


def purchase_order(rng: random.Random, i: int, lines: int = 3) -> dict[str, Any]:
    """A realistic purchase-order dict with ``lines`` lines."""
    rows = []
    total = Decimal(0)
    for n in range(1, lines + 1):
        qty = Decimal(rng.randrange(1, 50))
        price = Decimal(rng.randrange(100, 100000)) / 100
        total += qty * price
        rows.append(
            {
                "line_number": n,
                "product_code": f"P-{rng.randrange(10**5):05d}",
                "description": "Hex bolt M8x40, zinc plated",
                "quantity": f"{qty}.00",
                "unit_of_measure": "EA",
                "unit_price": str(price),
                "delivery_date": _day(rng) if rng.random() < 0.5 else None,
            }
        )
    return {
        "id": f"po_{i:08d}",
        "created_at": _ts(rng),
        "updated_at": _ts(rng),
        "custom_fields": {},
        "raw": {"EBELN": f"45000{i:05d}", "BSART": "NB"},
        "number": f"PO-{200000 + i}",
        "status": rng.choice(["draft", "approved", "sent", "received", "closed"]),
        "vendor": {"id": f"ven_{rng.randrange(1000):04d}", "name": "Acme Fasteners BV"},
        "currency": "EUR",
        "order_date": _day(rng),
        "required_date": _day(rng),
        "delivery_date": None,
        "payment_terms": "NET30",
        "ship_to": _address(rng),
        "bill_to": _address(rng),
        "lines": rows,
        "total_amount": str(total.quantize(Decimal("0.01"))),
        "sap_document_type": "NB",
    }


def _baseline_converter() -> cattrs.Converter:
    conv = cattrs.Converter()  # detailed validation on: the straightforward setup
    conv.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))
    conv.register_structure_hook(dt.date, lambda v, _: dt.date.fromisoformat(v))
    conv.register_structure_hook(Decimal, lambda v, _: Decimal(v))
    return conv


def _best(fn: Any, repeat: int) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def bench(name: str, entity: Entity, cls: type, page: list[dict[str, Any]], repeat: int) -> None:
    """Time one page three ways and print µs per record."""
    body = orjson.dumps({"data": page, "next_cursor": None})
    n = len(page)
    loads = orjson.loads
    conv = _baseline_converter()
    check = conv.structure(loads(body)["data"][0], cls)
    assert isinstance(check, cls)

    def plain() -> object:
        return loads(body)["data"]

    def baseline() -> object:
        return [conv.structure(d, cls) for d in loads(body)["data"]]

    def models() -> object:
        return structure_many(entity, loads(body)["data"], request_id="req_bench")

    t_plain = _best(plain, repeat) / n * 1e6
    t_base = _best(baseline, repeat) / n * 1e6
    t_models = _best(models, repeat) / n * 1e6
    print(f"{name}: {n} records/page, {len(body) / n:.0f} bytes/record")
    print(f"  orjson.loads alone            {t_plain:7.2f} us/record")
    print(
        f"  loads + cattrs (baseline)     {t_base:7.2f} us/record  "
        f"ratio {t_base / t_plain:4.2f}x  (structuring {t_base - t_plain:.2f})"
    )
    print(
        f"  loads + structure_many        {t_models:7.2f} us/record  "
        f"ratio {t_models / t_plain:4.2f}x  (structuring {t_models - t_plain:.2f})"
    )


def main() -> None:
    """Parse arguments and run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="work orders per page")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(1234)
    version = importlib.metadata.version("cattrs")
    print(f"Python {sys.version.split()[0]}, cattrs {version}")
    wos = [work_order(rng, i) for i in range(args.records)]
    bench("work orders", Entity.WORK_ORDERS, WorkOrder, wos, args.repeat)
    pos = [purchase_order(rng, i) for i in range(max(1, args.records // 2))]
    bench("purchase orders", Entity.PURCHASE_ORDERS, PurchaseOrder, pos, args.repeat)


if __name__ == "__main__":
    main()
