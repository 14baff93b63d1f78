"""A connection's calls, typed (``conn.work_orders``) and by entity name (``conn.get(...)``).

:class:`EntityCalls` is written once for a :class:`~makini_async.Connection`
and for its views with per-call options (:class:`~makini_async.ConnectionView`):
each says which connection and options its calls use (:meth:`_target`) and
whether they answer dicts by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from makini_async._wire.arguments import AUTO, entity_of
from makini_async.entities import Entity
from makini_async.resources import (
    RESOURCE_TYPES,
    Assets,
    InventoryItems,
    Locations,
    PurchaseOrders,
    Resource,
    ResourceLink,
    Vendors,
    WorkOrders,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from makini_async._client.config import CallOptions
    from makini_async._invalid import OnInvalid
    from makini_async._wire.arguments import _Auto
    from makini_async.entities import EntityLike
    from makini_async.models import Record
    from makini_async.pagination import Listing

__all__ = ["EntityCalls"]


class EntityCalls:
    """The API surface of one connection: its typed resources and the string-entity calls."""

    __slots__ = ()

    def _target(self, entity: Entity) -> tuple[ResourceLink, Entity, CallOptions | None]:
        """The connection, the entity and the options a resource of ``entity`` is made with."""
        raise NotImplementedError

    def _as_dicts(self, as_dicts: bool | None) -> bool:  # noqa: FBT001
        """``as_dicts`` itself, or the pool's default for ``None``."""
        raise NotImplementedError

    # -- typed resources ---------------------------------------------------------

    @property
    def purchase_orders(self) -> PurchaseOrders:
        return PurchaseOrders(*self._target(Entity.PURCHASE_ORDERS))

    @property
    def work_orders(self) -> WorkOrders:
        return WorkOrders(*self._target(Entity.WORK_ORDERS))

    @property
    def assets(self) -> Assets:
        return Assets(*self._target(Entity.ASSETS))

    @property
    def inventory_items(self) -> InventoryItems:
        return InventoryItems(*self._target(Entity.INVENTORY_ITEMS))

    @property
    def vendors(self) -> Vendors:
        return Vendors(*self._target(Entity.VENDORS))

    @property
    def locations(self) -> Locations:
        return Locations(*self._target(Entity.LOCATIONS))

    def resource(self, entity: EntityLike) -> Resource[Record]:
        """The resource of ``entity`` given as an :class:`Entity` or a path name."""
        ent = entity_of(entity)
        return RESOURCE_TYPES[ent](*self._target(ent))

    # -- the string-entity API (the entity chosen at run time) --------------------

    @overload
    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[False],
        on_invalid: Literal["raise", "skip"] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[Record]: ...

    @overload
    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: bool | None = ...,
        on_invalid: OnInvalid = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[Any]: ...

    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = None,
        modified_after: dt.datetime | dt.date | str | None = None,
        created_after: dt.datetime | dt.date | str | None = None,
        cursor: str | None = None,
        as_dicts: bool | None = None,
        on_invalid: OnInvalid = "raise",
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Listing[Any]:
        """List ``entity`` records, oldest cursor first.

        ``page_size`` defaults to the pool's size for the entity (the
        contract's maximum). ``modified_after``/``created_after`` filter
        incrementally; ``cursor`` resumes at a page's ``next_cursor``;
        ``as_dicts`` yields plain dicts (``None``: the pool's default).
        ``on_invalid`` (:data:`~makini_async.OnInvalid`) says what happens to a
        record that does not fit its model: by default it raises
        :class:`RecordStructureError`, which carries the record.
        """
        return self.resource(entity).list(
            page_size=page_size,
            modified_after=modified_after,
            created_after=created_after,
            cursor=cursor,
            as_dicts=self._as_dicts(as_dicts),
            on_invalid=on_invalid,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def get(
        self,
        entity: EntityLike,
        id: str,
        *,
        as_dicts: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """``GET /{entity}/{id}``: one record (or dict). Raises :class:`NotFound`.

        ``timeout`` bounds the whole call, retries included; ``max_retries``
        caps its retries (see :meth:`with_options`).
        """
        return await self.resource(entity).get(
            id, as_dicts=self._as_dicts(as_dicts), timeout=timeout, max_retries=max_retries
        )

    async def create(
        self,
        entity: EntityLike,
        body: Mapping[str, Any] | Any,
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """``POST /{entity}``: see :meth:`Resource.create`."""
        return await self.resource(entity).create(
            body,
            idempotency_key=idempotency_key,
            as_dicts=self._as_dicts(as_dicts),
            timeout=timeout,
            max_retries=max_retries,
        )

    async def update(
        self,
        entity: EntityLike,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """``PATCH /{entity}/{id}`` with ``changes``; returns the updated record."""
        return await self.resource(entity).update(
            id,
            changes,
            idempotency_key=idempotency_key,
            as_dicts=self._as_dicts(as_dicts),
            timeout=timeout,
            max_retries=max_retries,
        )

    async def delete(
        self,
        entity: EntityLike,
        id: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        """``DELETE /{entity}/{id}``. Many systems answer :class:`OperationNotSupported`."""
        await self.resource(entity).delete(id, timeout=timeout, max_retries=max_retries)
