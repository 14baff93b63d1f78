"""Typed records for the Makini entities, and the functions that build them.

::

    records = structure_many(Entity.WORK_ORDERS, page["data"], request_id=rid)
    data = unstructure(records[0])   # back to the API's JSON shape

Each entity has a frozen attrs class (:class:`PurchaseOrder`,
:class:`WorkOrder`, :class:`Asset`, :class:`InventoryItem`, :class:`Vendor`,
:class:`Location`), all subclasses of :class:`Record`. Conversion rules are
described in ``makini_async.models._converter``; in short: money and
quantities are :class:`~decimal.Decimal`, dates are :class:`datetime.date`, date-times are aware
:class:`datetime.datetime` (naive ones are taken as UTC), unknown keys are
kept in ``extra`` and written back by :func:`unstructure`.

Structuring is tolerant of the shapes real source systems send (numbers
where decimal strings are documented, date-times in date fields, offsets and
long fractions, ``null`` for lists; see ``_converter``). A record that still
does not fit is never lost: :func:`structure_page` hands it back as an
:class:`InvalidRecord` (its data, the field path such as
``lines[2].quantity``, the reason and the request ID), and
:func:`structure` / :func:`structure_many` raise one
:class:`~makini_async.errors.RecordStructureError` carrying it.

Round trip: ``unstructure(structure(e, d)) == d`` holds for records as the
API sends them (every model key present, ``null`` where empty, date-times
``...Z`` with whole seconds or 3/6 fraction digits, decimals as strings).
Normalisations: absent keys come back as ``null`` (except ``raw``, which is
omitted when absent or ``null``); ``custom_fields: null`` comes back as
``{}``; ``lines``/``assignees`` ``null`` come back as ``[]``; int money comes
back as a string; ``+00:00`` and naive date-times come back as ``Z``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from makini_async._invalid import ON_INVALID, InvalidRecord, OnInvalid
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import RecordStructureError

from ._converter import CONVERTER, locate_error, structure_fn
from ._fields import type_name
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

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "ON_INVALID",
    "PURCHASE_ORDER_STATUSES",
    "RECORD_TYPES",
    "WORK_ORDER_PRIORITIES",
    "WORK_ORDER_STATUSES",
    "Address",
    "Asset",
    "InvalidRecord",
    "InventoryItem",
    "Location",
    "OnInvalid",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "PurchaseOrderStatus",
    "Record",
    "Vendor",
    "VendorRef",
    "WorkOrder",
    "WorkOrderPriority",
    "WorkOrderStatus",
    "invalid_record_error",
    "record_type",
    "split_objects",
    "structure",
    "structure_in_place",
    "structure_many",
    "structure_page",
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

    ``items`` is the page's ``data`` list. If a record does not fit, one
    :class:`~makini_async.errors.RecordStructureError` names the first such
    record, the path to its bad value (``field``) and the page's request ID.
    Use :func:`structure_page` to keep the records that do not fit instead.
    """
    # A new list: the caller's list and its dicts stay as they are.
    return structure_in_place(entity, list(items), request_id=request_id)


def structure_in_place(
    entity: EntityLike, items: list[Any], *, request_id: str | None = None
) -> list[Record]:
    """Like :func:`structure_many`, replacing each dict of ``items`` by its record.

    For a page the caller owns and no longer needs as dicts (see
    :func:`structure_page`). On an error, ``items`` is left part records,
    part dicts (the ones that do not fit).
    """
    records, invalid = structure_page(entity, items, request_id=request_id)
    if invalid:
        raise invalid_record_error(invalid[0])
    return records


def structure_page(
    entity: EntityLike,
    items: list[Any],
    *,
    request_id: str | None = None,
    connection: str | None = None,
) -> tuple[list[Record], list[InvalidRecord]]:
    """Structure a page's records in place; return ``(records, invalid)``.

    Each API object of ``items`` is replaced by its record as soon as it is
    built, so a page never holds both (half the young objects, and the
    garbage collector seldom runs). A record that does not fit is never
    dropped: it comes back in ``invalid`` as an :class:`InvalidRecord` with
    its data, the path to the bad value, the reason, the request ID and
    ``connection``. When every record fits, ``records`` is ``items`` itself
    (a sequence that is not a list is copied into one first).
    """
    if type(items) is not list:
        items = list(items)
    ent = to_entity(entity)
    fn = _FNS[ent]
    failed: list[tuple[int, BaseException]] | None = None
    for index, item in enumerate(items):
        try:
            items[index] = fn(item)
        # Any failure at all makes the record invalid, never the page: a source can
        # send anything. (A try in a loop costs nothing on 3.11+.)
        except Exception as exc:  # noqa: BLE001, PERF203
            if failed is None:
                failed = []
            failed.append((index, exc))
    if failed is None:
        return items, []
    invalid = [_invalid(ent, items[index], exc, request_id, connection) for index, exc in failed]
    bad = {index for index, _ in failed}
    return [r for i, r in enumerate(items) if i not in bad], invalid


_DICT_ONLY: Final = {dict}


def split_objects(
    entity: EntityLike,
    items: list[Any],
    *,
    request_id: str | None = None,
    connection: str | None = None,
) -> tuple[list[Any], list[InvalidRecord]]:
    """Set apart the items of a page that are not JSON objects (dict pages).

    When every item is an object (one pass in C), ``items`` itself comes back.
    """
    if not items or {*map(type, items)} == _DICT_ONLY:
        return items, []
    ent = to_entity(entity)
    invalid = [
        InvalidRecord(
            entity=ent,
            data=item,
            field=None,
            reason=f"expected an object, got {type_name(item)}",
            request_id=request_id,
            connection=connection,
        )
        for item in items
        if type(item) is not dict
    ]
    return [item for item in items if type(item) is dict], invalid


def invalid_record_error(invalid: InvalidRecord) -> RecordStructureError:
    """The typed error for a record that does not fit (the ``raise`` policy)."""
    error = RecordStructureError(
        invalid.describe(),
        field=invalid.field,
        request_id=invalid.request_id,
        connection=invalid.connection,
    )
    error.invalid_record = invalid
    return error


def unstructure(record: Record) -> dict[str, Any]:
    """Turn a record back into the API's JSON shape (``extra`` at the top level).

    Date-times become ``...Z`` strings (or keep their offset), dates
    ``YYYY-MM-DD`` and decimals strings; the result is ready for ``orjson``.
    """
    try:
        result: dict[str, Any] = CONVERTER.unstructure(record)
    except RecursionError:
        # A source can nest custom_fields or raw deeper than Python recurses.
        msg = f"{type(record).__name__} {record.id!r} is nested too deeply to unstructure"
        raise RecordStructureError(msg) from None
    return result


Record._unstructure = unstructure


def _invalid(
    entity: Entity,
    item: Any,
    exc: BaseException,
    request_id: str | None,
    connection: str | None,
) -> InvalidRecord:
    found = locate_error(RECORD_TYPES[entity], item)
    if found is None:
        # The fast path failed where the field-by-field walk did not: say so as is.
        field, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        field, reason = found
    return InvalidRecord(
        entity=entity,
        data=item,
        field=field,
        reason=reason,
        request_id=request_id,
        connection=connection,
    )
