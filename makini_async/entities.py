"""The entity collections of the Makini API and their page-size limits."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Entity", "EntityLike", "to_entity"]


class Entity(str, enum.Enum):
    """An entity collection, valued by its path name under ``/api/v1/``."""

    PURCHASE_ORDERS = "purchase-orders"
    WORK_ORDERS = "work-orders"
    ASSETS = "assets"
    INVENTORY_ITEMS = "inventory-items"
    VENDORS = "vendors"
    LOCATIONS = "locations"

    def __str__(self) -> str:
        return self.value


EntityLike = Entity | str

#: The largest ``page_size`` the API accepts per entity (contract).
MAX_PAGE_SIZE: Final[dict[Entity, int]] = {
    Entity.PURCHASE_ORDERS: 100,
    Entity.WORK_ORDERS: 200,
    Entity.ASSETS: 500,
    Entity.INVENTORY_ITEMS: 500,
    Entity.VENDORS: 500,
    Entity.LOCATIONS: 500,
}

#: Default page size per entity: the largest one allowed, as Makini advises.
DEFAULT_PAGE_SIZE: Final[dict[Entity, int]] = dict(MAX_PAGE_SIZE)

_BY_NAME: Final[dict[str, Entity]] = {}
for _e in Entity:
    _BY_NAME[_e.value] = _e
    _BY_NAME[_e.name.lower()] = _e
    _BY_NAME[_e.value.replace("-", "_")] = _e


def to_entity(value: EntityLike) -> Entity:
    """Return the :class:`Entity` for an enum member or a path name.

    Accepts ``Entity.WORK_ORDERS``, ``"work-orders"`` and ``"work_orders"``.
    Raises :class:`ValueError` naming the accepted values otherwise.
    """
    if isinstance(value, Entity):
        return value
    try:
        return _BY_NAME[value]
    except (KeyError, TypeError):
        names = ", ".join(e.value for e in Entity)
        msg = f"unknown entity {value!r}; expected one of: {names}"
        raise ValueError(msg) from None
