"""Real-world data variation for the mock server's generated records.

Makini fronts thousands of source systems whose data drifts from the contract.
With ``MockMakini(variations=RATE, unreadable=RATE2)`` a seeded share of the
generated records is served in such shapes, so clients can be tested against
them:

- with probability ``RATE`` a record gets one or more *readable* variations:
  the same meaning in a shape a tolerant client must accept
  (:data:`READABLE_KINDS`);
- with probability ``RATE2`` a record gets one *unreadable* variation: a value
  no rule can interpret, which a typed client must report as an invalid record
  without crashing (:data:`UNREADABLE_KINDS`).

Each applied variation is logged as ``"kind:path"``, e.g.
``"datetime_offset:created_at"`` or ``"decimal_as_number:lines[1].unit_price"``.
Variations depend only on ``(seed, entity, record index)`` and use their own
random streams, so the base records are the same with variations on or off.
:data:`VARIATION_EXAMPLES` shows every kind.
"""

from __future__ import annotations

import hashlib
import random
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

from makini_async.testing._data import format_datetime, parse_instant

if TYPE_CHECKING:
    from collections.abc import Collection

    from makini_async.entities import Entity

__all__ = [
    "READABLE_KINDS",
    "UNREADABLE_KINDS",
    "VARIATION_EXAMPLES",
    "VARIATION_KINDS",
    "apply_variations",
    "check_rate",
    "vary",
]

#: Variations a tolerant client reads with the contract's meaning.
READABLE_KINDS: Final[tuple[str, ...]] = (
    "datetime_offset", "datetime_fraction", "datetime_space", "datetime_naive",
    "date_as_datetime", "decimal_as_number", "null_container", "unknown_enum",
    "string_as_number", "number_as_string", "extra_field", "extra_nested_key",
)  # fmt: skip
#: Variations no rule can read: the record is invalid as served.
UNREADABLE_KINDS: Final[tuple[str, ...]] = (
    "datetime_garbled", "date_garbled", "decimal_garbled", "decimal_as_bool",
    "object_as_string", "list_as_object", "list_as_number",
)  # fmt: skip
#: Every variation kind, readable first.
VARIATION_KINDS: Final[tuple[str, ...]] = READABLE_KINDS + UNREADABLE_KINDS

#: One example per kind: (path, contract value, varied value).
VARIATION_EXAMPLES: Final[dict[str, tuple[str, Any, Any]]] = {
    "datetime_offset": ("created_at", "2024-03-01T12:00:00Z", "2024-03-01T07:00:00-05:00"),
    "datetime_fraction": ("updated_at", "2024-03-01T12:00:00Z", "2024-03-01T12:00:00.123456Z"),
    "datetime_space": ("created_at", "2024-03-01T12:00:00Z", "2024-03-01 12:00:00Z"),
    "datetime_naive": ("updated_at", "2024-03-01T12:00:00Z", "2024-03-01T12:00:00"),
    "date_as_datetime": ("order_date", "2024-03-01", "2024-03-01T23:30:00-05:00"),
    "decimal_as_number": ("lines[0].unit_price", "12.50", 12.5),
    "null_container": ("assignees", ["a.meyer"], None),
    "unknown_enum": ("status", "open", "awaiting_parts"),
    "string_as_number": ("ship_to.postal_code", "20457", 20457),
    "number_as_string": ("lines[0].line_number", 10, "10"),
    "extra_field": ("x_source_revision", None, 7),
    "extra_nested_key": ("vendor.tax_id", None, "DE812345678"),
    "datetime_garbled": ("created_at", "2024-12-31T14:00:00Z", "31/12/2024 14:00"),
    "date_garbled": ("due_date", "2024-03-01", "not a date"),
    "decimal_garbled": ("total_amount", "12.50", "12,50"),
    "decimal_as_bool": ("unit_cost", "12.50", True),
    "object_as_string": ("vendor", {"id": "ven_000123", "name": "..."}, "ven_000123"),
    "list_as_object": ("lines", [{"line_number": 10}], {"item": [{"line_number": 10}]}),
    "list_as_number": ("assignees", ["a.meyer", "j.smith"], 2),
}

Path = tuple[str | int, ...]
_SPAN: Final = 2**64

_ISO_Z: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_DATE: Final = re.compile(r"^\d{4}-\d\d-\d\d$")
_DATETIME_FIELDS: Final = ("created_at", "updated_at", "completed_at")
_DATE_FIELDS: Final = ("order_date", "required_date", "delivery_date", "due_date")
_DECIMAL_FIELDS: Final = ("total_amount", "quantity_on_hand", "unit_cost", "reorder_point")
_LINE_DECIMALS: Final = ("quantity", "unit_price")
_CONTAINERS: Final = ("lines", "assignees", "custom_fields", "raw")
_OBJECTS: Final = ("vendor", "ship_to", "bill_to", "address")
_LISTS: Final = ("lines", "assignees")
_DIGIT_FIELDS: Final[tuple[Path, ...]] = (
    ("number",), ("phone",), ("ship_to", "postal_code"), ("bill_to", "postal_code"),
    ("address", "postal_code"),
)  # fmt: skip
_OFFSETS: Final = (120, -300, 330, 60, -480, 540, -210, 0)
#: Values sources send that the contract does not list, per entity and field.
_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "purchase-orders.status": ("RELEASED", "awaiting_approval", "Approved", "invoiced"),
    "work-orders.status": ("awaiting_parts", "scheduled", "IN PROGRESS", "on_hold_vendor"),
    "work-orders.priority": ("critical", "P1", "emergency", "Medium"),
    "assets.status": ("STANDBY", "decommissioned", "in_repair"),
}
_EXTRA_TOP: Final[tuple[tuple[str, Any], ...]] = (
    ("x_source_revision", 7),
    ("zz_batch", "B-2024-11"),
    ("x_flags", {"audited": True, "locked": False}),
    ("x_tags", ["imported", "legacy"]),
    ("Plant_Name", "Hamburg North"),
)
_EXTRA_NESTED: Final[dict[str, tuple[tuple[str, Any], ...]]] = {
    "vendor": (("tax_id", "DE812345678"), ("x_rating", 4)),
    "address": (("x_dock", "Dock 4"), ("x_geo", {"lat": 53.55, "lon": 9.99})),
    "line": (("x_cost_center", "CC-12"), ("x_discount", None)),
}


def _text(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _get(record: dict[str, Any], path: Path) -> Any:
    value: Any = record
    for step in path:
        value = value[step]
    return value


def _put(record: dict[str, Any], path: Path, value: Any) -> None:
    """Set ``path`` in ``record``, copying every container on the way (inputs are shared)."""
    parent: Any = record
    for step in path[:-1]:
        child = parent[step]
        child = dict(child) if isinstance(child, dict) else list(child)
        parent[step] = child
        parent = child
    parent[path[-1]] = value


def _lines(record: dict[str, Any]) -> list[int]:
    lines = record.get("lines")
    if not isinstance(lines, list):
        return []
    return [i for i, line in enumerate(lines) if isinstance(line, dict)]


def _is_decimal(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _as_number(text: str) -> int | float | None:
    """``text`` as a JSON number with the same value, or ``None`` if a float would change it."""
    value = Decimal(text)
    if value == value.to_integral_value():
        return int(value)
    number = float(text)
    return number if Decimal(repr(number)) == value else None


def _candidates(entity: Entity, record: dict[str, Any], kind: str) -> list[Path]:
    """The paths of ``record`` that ``kind`` can vary (values in contract shape only)."""
    lines = _lines(record)
    if kind.startswith("datetime_"):
        return [(k,) for k in _DATETIME_FIELDS if _ISO_Z.match(str(record.get(k)))]
    if kind in ("date_as_datetime", "date_garbled"):
        paths: list[Path] = [(k,) for k in _DATE_FIELDS if _DATE.match(str(record.get(k)))]
        paths += [
            ("lines", i, "delivery_date")
            for i in lines
            if _DATE.match(str(record["lines"][i].get("delivery_date")))
        ]
        return paths
    if kind.startswith("decimal_"):
        paths = [(k,) for k in _DECIMAL_FIELDS if _is_decimal(record.get(k))]
        paths += [
            ("lines", i, k)
            for i in lines
            for k in _LINE_DECIMALS
            if _is_decimal(record["lines"][i].get(k))
        ]
        if kind == "decimal_as_number":
            paths = [p for p in paths if _as_number(_get(record, p)) is not None]
        return paths
    if kind == "null_container":
        return [(k,) for k in _CONTAINERS if isinstance(record.get(k), (list, dict))]
    if kind == "unknown_enum":
        fields = ("status", "priority")
        return [(k,) for k in fields if f"{entity.value}.{k}" in _ENUMS and record.get(k)]
    if kind == "string_as_number":
        return [p for p in _DIGIT_FIELDS if _digits(_find(record, p), p) is not None]
    if kind == "number_as_string":
        return [
            ("lines", i, "line_number")
            for i in lines
            if type(record["lines"][i].get("line_number")) is int
        ]
    if kind == "extra_field":
        return [(key,) for key, _ in _EXTRA_TOP if key not in record]
    if kind == "extra_nested_key":
        paths = [(k,) for k in _OBJECTS if isinstance(record.get(k), dict)]
        return paths + [("lines", i) for i in lines]
    if kind == "object_as_string":
        return [(k,) for k in (*_OBJECTS, "custom_fields") if isinstance(record.get(k), dict)]
    if kind in ("list_as_object", "list_as_number"):
        return [(k,) for k in _LISTS if isinstance(record.get(k), list)]
    msg = f"unknown variation kind {kind!r}"
    raise ValueError(msg)


def _find(record: dict[str, Any], path: Path) -> Any:
    parent = record.get(str(path[0])) if len(path) > 1 else record
    return parent.get(str(path[-1])) if isinstance(parent, dict) else None


def _digits(text: object, path: Path) -> int | None:
    """``text`` as the integer a source sends for a numeric id or phone, else ``None``.

    Only when the digits are the whole meaning: no leading zero, no letters,
    and for phone numbers only the usual separators besides digits.
    """
    if not isinstance(text, str):
        return None
    digits = "".join(c for c in text if c.isdigit())
    plain = text == digits or (path[-1] == "phone" and not text.strip("+0123456789 -()/"))
    return int(digits) if plain and digits and not digits.startswith("0") else None


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _readable(
    entity: Entity, kind: str, value: Any, path: Path, rng: random.Random
) -> tuple[Path, Any]:
    """The varied value for ``kind`` (and the path it goes to, which may be a new key)."""
    if kind == "datetime_offset":
        minutes = rng.choice(_OFFSETS)
        epoch = parse_instant(value)
        assert epoch is not None  # noqa: S101 - candidates are contract date-times
        wall = format_datetime(epoch + minutes * 60)[:-1]
        return path, wall + _offset_text(minutes)
    if kind == "datetime_fraction":
        digits = rng.randint(1, 9)
        fraction = f"{rng.randrange(1, 10**digits):0{digits}d}"
        return path, f"{value[:-1]}.{fraction}Z"
    if kind == "datetime_space":
        return path, value.replace("T", " ")
    if kind == "datetime_naive":
        return path, value[:-1]
    if kind == "date_as_datetime":
        if rng.random() < 0.4:
            return path, f"{value}T00:00:00Z"
        hour, minute = rng.randrange(24), rng.choice((0, 15, 30, 45))
        return path, f"{value}T{hour:02d}:{minute:02d}:00{_offset_text(rng.choice(_OFFSETS))}"
    if kind == "decimal_as_number":
        return path, _as_number(value)
    if kind == "null_container":
        return path, None
    if kind == "unknown_enum":
        return path, rng.choice(_ENUMS[f"{entity.value}.{path[0]}"])
    if kind == "string_as_number":
        return path, _digits(value, path)
    if kind == "number_as_string":
        return path, str(value)
    if kind == "extra_field":
        return path, dict(_EXTRA_TOP)[str(path[0])]
    # extra_nested_key: a key the contract does not list inside a nested object
    table = "line" if path[0] == "lines" else ("vendor" if path[0] == "vendor" else "address")
    key, extra = rng.choice(_EXTRA_NESTED[table])
    return (*path, key), extra


def _unreadable(kind: str, value: Any, rng: random.Random) -> Any:
    if kind == "datetime_garbled":
        epoch = parse_instant(value)
        choices = ["0000-00-00T00:00:00Z", "N/A"]
        if epoch is not None:
            iso = format_datetime(epoch)
            choices.append(f"{iso[8:10]}/{iso[5:7]}/{iso[:4]} {iso[11:16]}")
        return rng.choice(choices)
    if kind == "date_garbled":
        return rng.choice(
            ("not a date", f"{value[:4]}-02-30", f"{value[8:]}/{value[5:7]}/{value[:4]}")
        )
    if kind == "decimal_garbled":
        return rng.choice((value.replace(".", ","), "N/A", ""))
    if kind == "decimal_as_bool":
        return rng.random() < 0.5
    if kind == "object_as_string":
        if "id" in value:
            return str(value["id"])
        return ", ".join(str(v) for v in value.values() if v is not None)
    if kind == "list_as_object":
        return {"item": value}
    return len(value)  # list_as_number


def _overlaps(path: str, others: Collection[str]) -> bool:
    for other in others:
        short, long_ = sorted((path, other), key=len)
        if long_ == short or long_.startswith((short + ".", short + "[")):
            return True
    return False


def vary(
    entity: Entity,
    record: dict[str, Any],
    rng: random.Random,
    *,
    readable: bool,
    avoid: Collection[str] = (),
) -> tuple[dict[str, Any], list[str]]:
    """Vary one record: ``(new record, ["kind:path", ...])``; ``record`` is not mutated.

    ``readable=True`` applies one to three readable kinds, ``False`` one
    unreadable kind, each to a random field where it applies. Paths in
    ``avoid`` (and their parents and children) are left alone. ``id`` is never
    varied.
    """
    kinds = READABLE_KINDS if readable else UNREADABLE_KINDS
    count = rng.choice((1, 1, 1, 2, 2, 3)) if readable else 1
    out = dict(record)
    used = list(avoid)
    applied: list[str] = []
    # The first kinds of a shuffle that apply: a uniform choice among the
    # applicable kinds, without looking for candidates of every kind.
    for kind in rng.sample(kinds, len(kinds)):
        if len(applied) == count:
            break
        free = [p for p in _candidates(entity, record, kind) if not _overlaps(_text(p), used)]
        if not free:
            continue
        path = rng.choice(free)
        value = None if kind == "extra_field" else _get(record, path)
        if readable:
            target, new = _readable(entity, kind, value, path, rng)
        else:
            target, new = path, _unreadable(kind, value, rng)
        _put(out, target, new)
        used.append(_text(path))
        applied.append(f"{kind}:{_text(target)}")
    return (out if applied else record), applied


def apply_variations(
    entity: Entity,
    records: list[dict[str, Any]],
    seed: int,
    *,
    variations: float,
    unreadable: float,
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Vary generated records at the given rates: ``(records, {record id: entries})``.

    Record ``i`` draws from its own stream seeded by ``(seed, entity, i)``, so
    the outcome does not depend on how many records were generated or on the
    other rate's value. The unreadable
    variation is applied first so a readable one never hides it.
    """
    if variations <= 0 and unreadable <= 0:
        return records, {}
    out: list[dict[str, Any]] = []
    log: dict[str, list[str]] = {}
    prefix = f"makini-mock-variations:{seed}:{entity.value}:"
    for i, generated in enumerate(records):
        record = generated
        # A hash rather than a seeded Random per record: most records are not
        # varied, and seeding a Random costs several times the hash.
        digest = hashlib.blake2b(f"{prefix}{i}".encode(), digest_size=32).digest()
        roll_readable, roll_unreadable, seed_readable, seed_unreadable = (
            int.from_bytes(digest[k : k + 8], "big") for k in (0, 8, 16, 24)
        )
        entries: list[str] = []
        if roll_unreadable < unreadable * _SPAN:
            record, applied = vary(entity, record, random.Random(seed_unreadable), readable=False)
            entries += applied
        if roll_readable < variations * _SPAN:
            avoid = [e.partition(":")[2] for e in entries]
            record, applied = vary(
                entity, record, random.Random(seed_readable), readable=True, avoid=avoid
            )
            entries += applied
        out.append(record)
        if entries:
            log[record["id"]] = entries
    return out, log


def check_rate(name: str, rate: float) -> float:
    """``rate`` as a float in [0, 1], else :class:`ValueError` naming ``name``."""
    value = float(rate)
    if not 0.0 <= value <= 1.0:
        msg = f"{name} must be a rate from 0 to 1, got {rate!r}"
        raise ValueError(msg)
    return value
