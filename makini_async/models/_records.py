"""The attrs record classes, one per Makini entity, and their nested values.

Every class is ``frozen``, ``slots`` and keyword-only. Records compare by
value and are hashable: the free-form mappings (``custom_fields``, ``raw``,
``extra``) take part in ``==`` but not in ``hash()``, so two equal records
always hash alike. Sequences are tuples so that records stay hashable.

Statuses and priorities are plain ``str``: connected systems add their own
values, and an unknown status is kept, never rejected. The known values are
exported as ``Literal`` aliases and ``frozenset`` constants.
"""

from __future__ import annotations

import datetime as _dt  # noqa: TC003 - attrs.resolve_types needs it at runtime
from collections.abc import Callable  # noqa: TC003 - same (resolve_types reads every annotation)
from decimal import Decimal  # noqa: TC003 - same
from typing import Any, ClassVar, Final, Literal

import attrs

__all__ = [
    "PURCHASE_ORDER_STATUSES",
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
]

PurchaseOrderStatus = Literal[
    "draft", "approved", "sent", "partially_received", "received", "closed", "cancelled"
]
WorkOrderStatus = Literal["open", "in_progress", "on_hold", "completed", "cancelled"]
WorkOrderPriority = Literal["low", "medium", "high", "urgent"]

#: The purchase-order statuses the contract names (others may appear).
PURCHASE_ORDER_STATUSES: Final[frozenset[str]] = frozenset(
    {"draft", "approved", "sent", "partially_received", "received", "closed", "cancelled"}
)
#: The work-order statuses the contract names (others may appear).
WORK_ORDER_STATUSES: Final[frozenset[str]] = frozenset(
    {"open", "in_progress", "on_hold", "completed", "cancelled"}
)
#: The work-order priorities the contract names (others may appear).
WORK_ORDER_PRIORITIES: Final[frozenset[str]] = frozenset({"low", "medium", "high", "urgent"})


@attrs.define(frozen=True, slots=True, kw_only=True)
class Address:
    """A postal address. Unknown keys of the API object are kept in ``extra``."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.define(frozen=True, slots=True, kw_only=True)
class VendorRef:
    """A purchase order's vendor: ``{id, name}`` (unknown keys in ``extra``)."""

    id: str | None = None
    name: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.define(frozen=True, slots=True, kw_only=True)
class PurchaseOrderLine:
    """One line of a purchase order; ``quantity`` and ``unit_price`` are exact."""

    line_number: int | None = None
    product_code: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    unit_of_measure: str | None = None
    unit_price: Decimal | None = None
    delivery_date: _dt.date | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.define(frozen=True, slots=True, kw_only=True)
class Record:
    """Fields every record has; the base class of the entity records.

    ``created_at``/``updated_at`` are timezone-aware. ``extra`` holds the
    top-level keys the model does not know (customer mappings such as
    ``x_site_code``); they are written back by ``unstructure``.
    """

    id: str
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
    custom_fields: dict[str, Any] = attrs.field(factory=dict, hash=False)
    raw: dict[str, Any] | None = attrs.field(default=None, hash=False)
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The record in the API's JSON shape: what a web framework can serialise.

        Date-times as ``...Z`` strings, dates as ``YYYY-MM-DD``, decimals as
        strings, ``extra`` back at the top level (see
        :func:`makini_async.models.unstructure`). Return it from a FastAPI or
        aiohttp handler, or ``orjson.dumps`` it.
        """
        return Record._unstructure(self)

    #: :func:`makini_async.models.unstructure`, which installs itself here: the
    #: converter is built over these classes, so this module cannot import it.
    _unstructure: ClassVar[Callable[[Record], dict[str, Any]]]


@attrs.define(frozen=True, slots=True, kw_only=True)
class PurchaseOrder(Record):
    """A purchase order (``purchase-orders``)."""

    number: str | None = None
    status: str | None = None
    vendor: VendorRef | None = None
    currency: str | None = None
    order_date: _dt.date | None = None
    required_date: _dt.date | None = None
    delivery_date: _dt.date | None = None
    payment_terms: str | None = None
    ship_to: Address | None = None
    bill_to: Address | None = None
    lines: tuple[PurchaseOrderLine, ...] = ()
    total_amount: Decimal | None = None


@attrs.define(frozen=True, slots=True, kw_only=True)
class WorkOrder(Record):
    """A work order (``work-orders``)."""

    number: str | None = None
    title: str | None = None
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    asset_id: str | None = None
    location_id: str | None = None
    assignees: tuple[str, ...] = ()
    due_date: _dt.date | None = None
    completed_at: _dt.datetime | None = None


@attrs.define(frozen=True, slots=True, kw_only=True)
class Asset(Record):
    """An asset (``assets``)."""

    name: str | None = None
    asset_tag: str | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    status: str | None = None
    location_id: str | None = None
    parent_id: str | None = None


@attrs.define(frozen=True, slots=True, kw_only=True)
class InventoryItem(Record):
    """An inventory item (``inventory-items``); quantities and cost are exact."""

    part_number: str | None = None
    description: str | None = None
    quantity_on_hand: Decimal | None = None
    unit_of_measure: str | None = None
    unit_cost: Decimal | None = None
    location_id: str | None = None
    reorder_point: Decimal | None = None


@attrs.define(frozen=True, slots=True, kw_only=True)
class Vendor(Record):
    """A vendor (``vendors``)."""

    name: str | None = None
    code: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None


@attrs.define(frozen=True, slots=True, kw_only=True)
class Location(Record):
    """A location (``locations``)."""

    name: str | None = None
    code: str | None = None
    parent_id: str | None = None
    address: Address | None = None
