"""Records as heavy as real ones: what a source system's purchase or work order weighs.

The mock's default records are light (about 400 bytes for a work order). Real
Makini records carry more: a purchase order has several lines, two full
addresses, a dozen custom fields and ``raw``, the source system's own record
with dozens of columns (SAP's EKKO/EKPO, Maximo's WORKORDER). With
``MockMakini(shape="realistic")`` every record is widened that way,
deterministically from ``(seed, entity, index)``: purchase orders weigh
1.9-3 KB of JSON, work orders about 1.2 KB, the other entities 0.8-0.95 KB.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Final

from makini_async.entities import Entity

__all__ = ["SHAPES", "widen"]

#: Record shapes the mock serves: the light default, or realistic widths.
SHAPES: Final[frozenset[str]] = frozenset({"light", "realistic"})

_PLANTS: Final = ("1000", "1100", "2000", "3100")
_GROUPS: Final = ("P01", "P02", "M10", "S20")
_MATERIAL_GROUPS: Final = ("MECH-PUMPS", "ELEC-MOTORS", "CONSUMABLES", "SAFETY", "SPARES")
_ACCOUNTS: Final = ("400100", "400200", "410000", "520300")
_CRAFTS: Final = ("MECH", "ELEC", "INST", "HVAC")
_TEXT: Final = (
    "Replace worn mechanical seal and check shaft alignment",
    "Quarterly lubrication round per maintenance plan",
    "Vibration above alarm limit on drive end bearing",
    "Calibrate pressure transmitter after process upset",
    "Inspect coupling guard and tighten anchor bolts",
)


def _rng(seed: int, entity: Entity, index: int) -> random.Random:
    digest = hashlib.sha256(f"realistic:{seed}:{entity.value}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def widen(entity: Entity, record: dict[str, Any], seed: int, index: int) -> dict[str, Any]:
    """A copy of ``record`` widened to a real source record's size (never mutates it)."""
    rng = _rng(seed, entity, index)
    out = dict(record)
    out["custom_fields"] = {**record.get("custom_fields", {}), **_custom_fields(rng)}
    if entity is Entity.PURCHASE_ORDERS:
        out["lines"] = [{**line, **_po_line_extra(rng)} for line in record.get("lines", [])] + [
            _po_line(rng, n) for n in range(len(record.get("lines", [])), rng.randint(2, 5))
        ]
        out["raw"] = _ekko(rng, index)
        out["payment_terms"] = rng.choice(("NET30", "NET60", "2/10 NET30"))
    elif entity is Entity.WORK_ORDERS:
        out["description"] = " ".join(rng.sample(_TEXT, 3))
        out["raw"] = _workorder(rng, index)
    else:
        out["raw"] = {**(record.get("raw") or {}), **_generic_raw(rng, entity, index)}
    return out


def _custom_fields(rng: random.Random) -> dict[str, Any]:
    return {
        "cost_center": f"CC-{rng.randint(1000, 9999)}",
        "plant": rng.choice(_PLANTS),
        "purchasing_group": rng.choice(_GROUPS),
        "gl_account": rng.choice(_ACCOUNTS),
        "project": f"PRJ-{rng.randint(100, 999)}",
        "requester": f"user{rng.randint(1, 400):03d}",
        "approved_by": f"mgr{rng.randint(1, 40):02d}",
        "criticality": rng.choice(("A", "B", "C")),
        "budget_year": rng.choice((2024, 2025)),
        "contract": None if rng.random() < 0.5 else f"CT-{rng.randint(10000, 99999)}",
        "hazardous": rng.random() < 0.1,
        "notes": rng.choice(_TEXT),
    }


def _po_line_extra(rng: random.Random) -> dict[str, Any]:
    return {
        "plant": rng.choice(_PLANTS),
        "storage_location": f"SL{rng.randint(1, 40):02d}",
        "material_group": rng.choice(_MATERIAL_GROUPS),
        "account_assignment": rng.choice(("K", "F", "P")),
        "gl_account": rng.choice(_ACCOUNTS),
        "tax_code": rng.choice(("V0", "V1", "V2")),
    }


def _po_line(rng: random.Random, n: int) -> dict[str, Any]:
    quantity = rng.randint(1, 500)
    price = rng.randint(50, 500_000) / 100
    return {
        "line_number": (n + 1) * 10,
        "product_code": f"P-{rng.randint(1000, 9999)}",
        "description": rng.choice(_TEXT)[:40],
        "quantity": f"{quantity}.000",
        "unit_of_measure": rng.choice(("EA", "KG", "M", "L")),
        "unit_price": f"{price:.2f}",
        "delivery_date": None,
        **_po_line_extra(rng),
    }


def _ekko(rng: random.Random, index: int) -> dict[str, Any]:
    """SAP purchasing document header (EKKO): the columns a real extract carries."""
    return {
        "EBELN": f"45{index:08d}",
        "BUKRS": rng.choice(("1000", "2000")),
        "BSTYP": "F",
        "BSART": rng.choice(("NB", "FO", "UB")),
        "LOEKZ": "",
        "STATU": rng.choice(("9", "A", "B")),
        "AEDAT": f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "ERNAM": f"USER{rng.randint(1, 400):03d}",
        "LIFNR": f"{rng.randint(100000, 999999):010d}",
        "ZTERM": rng.choice(("0001", "0002", "Z030")),
        "EKORG": rng.choice(("1000", "2000")),
        "EKGRP": rng.choice(_GROUPS),
        "WAERS": rng.choice(("EUR", "USD")),
        "WKURS": "1.00000",
        "BEDAT": f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "INCO1": rng.choice(("FCA", "DAP", "EXW")),
        "INCO2": rng.choice(("Hamburg", "Rotterdam", "Munich")),
        "KNUMV": f"{rng.randint(10**9, 10**10 - 1)}",
        "KALSM": "RM0000",
        "UNSEZ": "",
        "LOGSY": "PRDCLNT100",
        "FRGKE": rng.choice(("R", "2")),
        "FRGZU": "X",
        "PROCSTAT": rng.choice(("02", "05")),
        "RLWRT": f"{rng.randint(100, 10**6)}.00",
        "MEMORY": "",
    }


def _workorder(rng: random.Random, index: int) -> dict[str, Any]:
    """A Maximo WORKORDER row: the columns a real extract carries."""
    return {
        "WONUM": f"{1000000 + index}",
        "SITEID": rng.choice(("BEDFORD", "TEXAS", "NASHUA")),
        "ORGID": "EAGLENA",
        "WORKTYPE": rng.choice(("PM", "CM", "EM")),
        "WOPRIORITY": rng.randint(1, 5),
        "STATUSDATE": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T08:00:00",
        "LEAD": f"LEAD{rng.randint(1, 40):02d}",
        "CREWID": f"CREW{rng.randint(1, 9)}",
        "CRAFT": rng.choice(_CRAFTS),
        "GLACCOUNT": f"{rng.choice(_ACCOUNTS)}-{rng.randint(100, 999)}",
        "ESTDUR": round(rng.uniform(0.5, 16.0), 2),
        "ESTLABHRS": round(rng.uniform(0.5, 40.0), 2),
        "ESTMATCOST": round(rng.uniform(0, 5000), 2),
        "ACTLABHRS": round(rng.uniform(0, 40.0), 2),
        "FAILURECODE": rng.choice(("PUMPS", "MOTORS", "VALVES")),
        "PROBLEMCODE": rng.choice(("LEAK", "NOISE", "VIBR", "OVHT")),
        "JPNUM": f"JP{rng.randint(100, 999)}",
        "PMNUM": f"PM{rng.randint(1000, 9999)}",
        "SUPERVISOR": f"SUP{rng.randint(1, 20):02d}",
        "REPORTEDBY": f"USER{rng.randint(1, 400):03d}",
        "DOWNTIME": rng.random() < 0.2,
        "SAFETYPLANID": None if rng.random() < 0.6 else f"SP{rng.randint(10, 99)}",
    }


def _generic_raw(rng: random.Random, entity: Entity, index: int) -> dict[str, Any]:
    return {
        "source_key": f"{entity.value[:3].upper()}{index:08d}",
        "changed_by": f"USER{rng.randint(1, 400):03d}",
        "changed_on": f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "client": "100",
        "plant": rng.choice(_PLANTS),
        "deletion_flag": "",
        "class": rng.choice(_MATERIAL_GROUPS),
        "long_text": rng.choice(_TEXT),
    }
