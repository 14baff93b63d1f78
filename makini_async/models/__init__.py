"""Typed records for the Makini entities, and the functions that build them.

::

    records = structure_many(Entity.WORK_ORDERS, page["data"], request_id=rid)
    data = unstructure(records[0])   # back to the API's JSON shape

Each entity has a frozen attrs class (:class:`PurchaseOrder`,
:class:`WorkOrder`, :class:`Asset`, :class:`InventoryItem`, :class:`Vendor`,
:class:`Location`), all subclasses of :class:`Record`. Conversion rules are
described in ``makini_async.models._converter``; in short: money and
quantities are :class:`~decimal.Decimal` (from decimal strings or ints, never
floats), dates are :class:`datetime.date`, date-times are aware
:class:`datetime.datetime` (naive ones are taken as UTC), unknown keys are
kept in ``extra`` and written back by :func:`unstructure`.

Any record that does not fit raises one
:class:`~makini_async.errors.RecordStructureError` naming the entity, the
record id, the field path (``lines[2].quantity``) and the request ID.

Round trip: ``unstructure(structure(e, d)) == d`` holds for records as the
API sends them (every model key present, ``null`` where empty, date-times
``...Z`` with whole seconds or 3/6 fraction digits, decimals as strings).
Normalisations: absent keys come back as ``null`` (except ``raw``, which is
omitted when absent or ``null``); ``custom_fields: null`` comes back as
``{}``; ``lines``/``assignees`` ``null`` come back as ``[]``; int money comes
back as a string; ``+00:00`` and naive date-times come back as ``Z``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import RecordStructureError

from ._converter import CONVERTER, locate_error, structure_fn
from ._records import (
    PURCHASE_ORDER_STATUSES,
    WORK_ORDER_PRIORITIES,
    WORK_ORDER_STATUSES,
    Address,
    Asset,
    InventoryItem,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    PurchaseOrderStatus,
    Record,
    Vendor,
    VendorRef,
    WorkOrder,
    WorkOrderPriority,
    WorkOrderStatus,
)

__all__ = [
    "PURCHASE_ORDER_STATUSES",
    "RECORD_TYPES",
    "WORK_ORDER_PRIORITIES",
    "WORK_ORDER_STATUSES",
    "Address",
    "Asset",
    "InventoryItem",
    "Location",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "PurchaseOrderStatus",
    "Record",
    "Vendor",
    "VendorRef",
    "WorkOrder",
    "WorkOrderPriority",
    "WorkOrderStatus",
    "record_type",
    "structure",
    "structure_in_place",
    "structure_many",
    "unstructure",
]

#: The record class of each entity.
RECORD_TYPES: Final[Mapping[Entity, type[Record]]] = {
    Entity.PURCHASE_ORDERS: PurchaseOrder,
    Entity.WORK_ORDERS: WorkOrder,
    Entity.ASSETS: Asset,
    Entity.INVENTORY_ITEMS: InventoryItem,
    Entity.VENDORS: Vendor,
    Entity.LOCATIONS: Location,
}

_FNS: Final = {entity: structure_fn(cls) for entity, cls in RECORD_TYPES.items()}


def record_type(entity: EntityLike) -> type[Record]:
    """The record class for an entity (an :class:`Entity` or its path name)."""
    return RECORD_TYPES[to_entity(entity)]


def structure(
    entity: EntityLike, data: Mapping[str, Any], *, request_id: str | None = None
) -> Record:
    """Build the typed record of ``entity`` from one API object.

    Raises :class:`~makini_async.errors.RecordStructureError` if it does not fit.
    """
    return structure_many(entity, (data,), request_id=request_id)[0]


def structure_many(
    entity: EntityLike, items: Iterable[Mapping[str, Any]], *, request_id: str | None = None
) -> list[Record]:
    """Build the typed records of one page, leaving ``items`` as it is.

    ``items`` is the page's ``data`` list. The first record that does not fit
    raises one :class:`~makini_async.errors.RecordStructureError` whose
    ``field`` is the path to the bad value and ``request_id`` the page's.
    """
    # A new list: the caller's list and its dicts stay as they are.
    return structure_in_place(entity, list(items), request_id=request_id)


def structure_in_place(
    entity: EntityLike, items: list[Any], *, request_id: str | None = None
) -> list[Record]:
    """Like :func:`structure_many`, replacing each dict of ``items`` by its record.

    For a page the caller owns and no longer needs as dicts: each API object
    is released as soon as its record exists, so a page never holds both
    (half the young objects, and the garbage collector seldom runs). On an
    error, ``items`` is left part records, part dicts.
    """
    ent = to_entity(entity)
    fn = _FNS[ent]
    index = 0
    try:
        for index, item in enumerate(items):
            items[index] = fn(item)
    except Exception as exc:  # re-raised as one typed error below
        raise _structure_error(ent, items[index:], request_id, exc, first=index) from exc
    return items


def unstructure(record: Record) -> dict[str, Any]:
    """Turn a record back into the API's JSON shape (``extra`` at the top level).

    Date-times become ``...Z`` strings (or keep their offset), dates
    ``YYYY-MM-DD`` and decimals strings; the result is ready for ``orjson``.
    """
    result: dict[str, Any] = CONVERTER.unstructure(record)
    return result


def _structure_error(
    entity: Entity,
    items: list[Any],
    request_id: str | None,
    exc: BaseException,
    *,
    first: int = 0,
) -> RecordStructureError:
    cls = RECORD_TYPES[entity]
    for index, item in enumerate(items, first):
        found = locate_error(cls, item)
        if found is None:
            continue
        field, reason = found
        record_id = item.get("id") if isinstance(item, Mapping) else None
        where = f"field {field!r}" if field else "the record"
        message = (
            f"cannot structure {entity.value} record #{index} (id={record_id!r}): {where}: {reason}"
        )
        if request_id:
            message += f" [request {request_id}]"
        return RecordStructureError(message, field=field, request_id=request_id)
    # The fast path failed where the field-by-field walk did not: report it as is.
    message = f"cannot structure {entity.value} records: {type(exc).__name__}: {exc}"
    if request_id:
        message += f" [request {request_id}]"
    return RecordStructureError(message, field=None, request_id=request_id)
