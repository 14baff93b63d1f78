"""``with_options``: a connection or a pool seen with per-call options.

A view holds a :class:`~makini_async.CallOptions` and the connection (or
pool) it was made from; it makes nothing of its own. Every call made
through it uses the connection's one state (429 cooldown, circuit breaker,
reauthorization mark, counters), so a latency-sensitive route can bound its
calls without a second pool that would not share that state::

    fast = conn.with_options(timeout=2.0, max_retries=0)
    order = await fast.work_orders.get("wo_1")      # at most 2 s, one attempt
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makini_async._client.config import CallOptions
from makini_async.entities import Entity
from makini_async.resources import (
    RESOURCE_TYPES,
    Assets,
    InventoryItems,
    Locations,
    PurchaseOrders,
    Vendors,
    WorkOrders,
    entity_of,
)

if TYPE_CHECKING:
    from makini_async._client.config import RetryPolicy
    from makini_async._client.tokens import TokenProvider
    from makini_async.connection import Connection
    from makini_async.entities import EntityLike
    from makini_async.models import Record
    from makini_async.pool import MakiniPool
    from makini_async.resources import Resource

__all__ = ["ConnectionView", "PoolView", "call_options"]


def call_options(
    base: CallOptions | None,
    *,
    timeout: float | None,
    max_retries: int | None,
    retry: RetryPolicy | None = None,
) -> CallOptions:
    """New options over ``base`` (what they leave unset comes from it)."""
    return CallOptions(timeout=timeout, max_retries=max_retries, retry=retry).over(base)


class ConnectionView:
    """A connection whose calls all use ``options`` (see :meth:`Connection.with_options`)."""

    __slots__ = ("_conn", "options")

    def __init__(self, conn: Connection, options: CallOptions) -> None:
        self._conn = conn
        self.options = options

    def __repr__(self) -> str:
        return f"<ConnectionView {self._conn.name!r} {self.options!r}>"

    @property
    def connection(self) -> Connection:
        """The connection itself (its state is this view's)."""
        return self._conn

    @property
    def name(self) -> str:
        return self._conn.name

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> ConnectionView:
        opts = call_options(self.options, timeout=timeout, max_retries=max_retries, retry=retry)
        return ConnectionView(self._conn, opts)

    @property
    def purchase_orders(self) -> PurchaseOrders:
        return PurchaseOrders(self._conn, Entity.PURCHASE_ORDERS, self.options)

    @property
    def work_orders(self) -> WorkOrders:
        return WorkOrders(self._conn, Entity.WORK_ORDERS, self.options)

    @property
    def assets(self) -> Assets:
        return Assets(self._conn, Entity.ASSETS, self.options)

    @property
    def inventory_items(self) -> InventoryItems:
        return InventoryItems(self._conn, Entity.INVENTORY_ITEMS, self.options)

    @property
    def vendors(self) -> Vendors:
        return Vendors(self._conn, Entity.VENDORS, self.options)

    @property
    def locations(self) -> Locations:
        return Locations(self._conn, Entity.LOCATIONS, self.options)

    def resource(self, entity: EntityLike) -> Resource[Record]:
        ent = entity_of(entity)
        return RESOURCE_TYPES[ent](self._conn, ent, self.options)

    # The string-entity calls (``view.get("work-orders", id)``), as on a connection.

    def _dicts(self, as_dicts: bool | None) -> bool:  # noqa: FBT001
        return self._conn.shared.as_dicts if as_dicts is None else as_dicts

    async def get(
        self, entity: EntityLike, id: str, *, as_dicts: bool | None = None, **kw: Any
    ) -> Any:
        """As :meth:`Connection.get`, with this view's options."""
        return await self.resource(entity).get(id, as_dicts=self._dicts(as_dicts), **kw)

    async def create(
        self, entity: EntityLike, body: Any, *, as_dicts: bool | None = None, **kw: Any
    ) -> Any:
        return await self.resource(entity).create(body, as_dicts=self._dicts(as_dicts), **kw)

    async def update(
        self, entity: EntityLike, id: str, changes: Any, *, as_dicts: bool | None = None, **kw: Any
    ) -> Any:
        res = self.resource(entity)
        return await res.update(id, changes, as_dicts=self._dicts(as_dicts), **kw)

    async def delete(self, entity: EntityLike, id: str, **kw: Any) -> None:
        await self.resource(entity).delete(id, **kw)

    def list(self, entity: EntityLike, *, as_dicts: bool | None = None, **kw: Any) -> Any:
        return self.resource(entity).list(as_dicts=self._dicts(as_dicts), **kw)


class PoolView:
    """A pool whose connections' calls all use ``options`` (see :meth:`MakiniPool.with_options`)."""

    __slots__ = ("_pool", "options")

    def __init__(self, pool: MakiniPool, options: CallOptions) -> None:
        self._pool = pool
        self.options = options

    def __repr__(self) -> str:
        return f"<PoolView {self._pool!r} {self.options!r}>"

    @property
    def pool(self) -> MakiniPool:
        return self._pool

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> PoolView:
        opts = call_options(self.options, timeout=timeout, max_retries=max_retries, retry=retry)
        return PoolView(self._pool, opts)

    def connection(
        self,
        token: str | TokenProvider,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> ConnectionView:
        """The pool's own handle (as :meth:`MakiniPool.connection`), seen with these options."""
        conn = self._pool.connection(token, name=name, max_concurrency=max_concurrency)
        return ConnectionView(conn, self.options)
