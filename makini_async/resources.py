"""Typed per-entity resources: ``conn.work_orders.list()`` is a ``Listing[WorkOrder]``.

::

    async for order in conn.work_orders.list(modified_after="2024-01-01"):
        order.title                      # a WorkOrder, as far as mypy is concerned
    order = await conn.work_orders.get("wo_000123")
    row = await conn.assets.get("ast_000001", as_dicts=True)    # dict[str, Any]

Each connection has one resource per entity (``purchase_orders``,
``work_orders``, ``assets``, ``inventory_items``, ``vendors``,
``locations``). A resource returns typed records unless ``as_dicts=True`` is
passed (the pool's ``as_dicts`` default applies to the string-entity calls,
``conn.list("work-orders")``, whose type is ``Any``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar, cast, overload

from makini_async._client.call import Call
from makini_async._client.config import CallOptions
from makini_async._client.listing import ListingLink
from makini_async._client.send import send
from makini_async._wire import arguments as args
from makini_async._wire.arguments import AUTO
from makini_async._wire.requests import check_record_id
from makini_async.entities import Entity
from makini_async.errors import UsageError
from makini_async.models import (
    Asset,
    InventoryItem,
    Location,
    PurchaseOrder,
    Record,
    Vendor,
    WorkOrder,
    invalid_record_error,
    structure_page,
)
from makini_async.pagination import Listing, PageSource
from makini_async.responses import Answer, RawResource, answer, no_body

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Coroutine, Mapping

    from makini_async._client.config import RetryPolicy
    from makini_async._invalid import InvalidRecord, OnInvalid
    from makini_async._invalid import InvalidRecord as _Invalid
    from makini_async._wire.arguments import _Auto

__all__ = [
    "AUTO",
    "Assets",
    "InventoryItems",
    "Locations",
    "PurchaseOrders",
    "Resource",
    "Vendors",
    "WorkOrders",
]

R = TypeVar("R", bound=Record)
_Res = TypeVar("_Res", bound="Resource[Any]")


class ResourceLink(ListingLink, PageSource, Protocol):
    """A connection as a resource needs it (:class:`~makini_async.Connection` is one)."""

    def _page_size_for(self, entity: Entity, page_size: int | None = None) -> int: ...
    def _cleaned(self, invalid: list[_Invalid]) -> tuple[_Invalid, ...]: ...


class Resource(Generic[R]):
    """One entity of one connection: list, get, create, update, delete."""

    __slots__ = ("_conn", "_options", "_path", "entity")

    def __init__(
        self, conn: ResourceLink, entity: Entity, options: CallOptions | None = None
    ) -> None:
        self._conn = conn
        self.entity = entity
        self._options = options
        self._path = "/" + entity.value + "/"  # an enum's value costs two calls to read

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._conn.name!r}>"

    # -- listing ----------------------------------------------------------------

    @overload
    def list(
        self,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[False] = ...,
        on_invalid: Literal["raise", "skip"] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[R]: ...

    @overload
    def list(
        self,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[False] = ...,
        on_invalid: Literal["deliver"],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[R | InvalidRecord]: ...

    @overload
    def list(
        self,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[True],
        on_invalid: Literal["raise", "skip"] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[dict[str, Any]]: ...

    @overload
    def list(
        self,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[True],
        on_invalid: Literal["deliver"],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[dict[str, Any] | InvalidRecord]: ...

    @overload
    def list(
        self,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: bool = ...,
        on_invalid: OnInvalid = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Listing[Any]: ...

    def list(
        self,
        *,
        page_size: int | None = None,
        modified_after: dt.datetime | dt.date | str | None = None,
        created_after: dt.datetime | dt.date | str | None = None,
        cursor: str | None = None,
        as_dicts: bool = False,
        on_invalid: OnInvalid = "raise",
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Listing[Any]:
        """List records, oldest cursor first (see :meth:`Connection.list`).

        ``timeout`` and ``max_retries`` bound each page's call (see
        :meth:`with_options`).
        """
        args.check_on_invalid(on_invalid)
        if not isinstance(as_dicts, bool):
            msg = f"as_dicts must be True or False, got {as_dicts!r}"
            raise UsageError(msg)
        return Listing(
            self._conn,
            self.entity,
            page_size=self._conn._page_size_for(self.entity, page_size),
            cursor=args.cursor(cursor),
            modified_after=args.when(modified_after, "modified_after"),
            created_after=args.when(created_after, "created_after"),
            as_dicts=as_dicts,
            on_invalid=on_invalid,
            options=self._options_for(timeout, max_retries),
        )

    # -- single records ---------------------------------------------------------

    @overload
    async def get(
        self,
        id: str,
        *,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R: ...
    @overload
    async def get(
        self,
        id: str,
        *,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> dict[str, Any]: ...
    @overload
    async def get(
        self,
        id: str,
        *,
        as_dicts: bool,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R | dict[str, Any]: ...

    async def get(
        self,
        id: str,
        *,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> R | dict[str, Any]:
        """``GET /{entity}/{id}``: one record (or dict). Raises :class:`NotFound`."""
        answer = await self._call(Call("GET", self._record_path(id)), timeout, max_retries)
        return self._shape(answer, as_dicts)

    @overload
    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R: ...
    @overload
    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> dict[str, Any]: ...
    @overload
    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: bool,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R | dict[str, Any]: ...

    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> R | dict[str, Any]:
        """``POST /{entity}``: create a record, return it as the API stored it.

        An idempotency key is generated unless one is given, and kept
        identical across retries, so a retried create never creates twice.
        ``idempotency_key=None`` sends none and disables retries. The key
        used and the request ID are on :attr:`with_raw_response`'s answer.
        """
        call = self._create_call(body, idempotency_key)
        return self._shape(await self._call(call, timeout, max_retries), as_dicts)

    @overload
    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R: ...
    @overload
    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> dict[str, Any]: ...
    @overload
    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: bool,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> R | dict[str, Any]: ...

    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> R | dict[str, Any]:
        """``PATCH /{entity}/{id}`` with ``changes``; returns the updated record."""
        call = self._update_call(id, changes, idempotency_key)
        return self._shape(await self._call(call, timeout, max_retries), as_dicts)

    async def delete(
        self, id: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> None:
        """``DELETE /{entity}/{id}``. Many systems answer :class:`OperationNotSupported`."""
        await self._call(Call("DELETE", self._record_path(id)), timeout, max_retries, body=False)

    # -- options and raw answers ----------------------------------------------------

    def with_options(
        self: _Res,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> _Res:
        """This resource with per-call options (a cheap view sharing the connection's state).

        ``timeout`` bounds each call, retries and waits included
        (:class:`~makini_async.errors.RequestTimeout` past it);
        ``max_retries`` is the retries after the first attempt (``0``: none);
        ``retry`` replaces the pool's :class:`RetryPolicy`. The connection's
        cooldown, breaker and reauthorization state are the same for every view.
        """
        options = CallOptions(timeout=timeout, max_retries=max_retries, retry=retry)
        return type(self)(self._conn, self.entity, options.over(self._options))

    @property
    def with_raw_response(self) -> RawResource[R]:
        """The same calls, answering :class:`Response` (status, headers, request ID, key)."""
        return RawResource(self)

    def _options_for(self, timeout: float | None, max_retries: int | None) -> CallOptions | None:
        if timeout is None and max_retries is None:
            return self._options
        return CallOptions(timeout=timeout, max_retries=max_retries).over(self._options)

    def _call(
        self, call: Call, timeout: float | None, max_retries: int | None, *, body: bool = True
    ) -> Coroutine[Any, Any, Answer]:
        # Not a coroutine itself: the caller awaits the send loop's, one frame fewer.
        options = self._options_for(timeout, max_retries)
        return send(self._conn, call, answer if body else no_body, options=options)

    def _create_call(self, body: Mapping[str, Any] | Record, key: str | _Auto | None) -> Call:
        return Call(
            "POST", "/" + self.entity.value, None, args.encode(body), args.idempotency_key(key)
        )

    def _update_call(self, id: str, changes: Mapping[str, Any], key: str | _Auto | None) -> Call:
        path = self._record_path(id)
        return Call("PATCH", path, None, args.encode(changes), args.idempotency_key(key))

    def _record_path(self, id: str) -> str:
        return self._path + check_record_id(id)

    def _shape(
        self,
        answer: Answer,
        as_dicts: bool,  # noqa: FBT001
    ) -> R | dict[str, Any]:
        data, request_id, _status, _headers = answer
        if as_dicts:
            return data
        conn = self._conn
        records, invalid = structure_page(
            self.entity, [data], request_id=request_id, connection=conn.name
        )
        if invalid:
            raise invalid_record_error(conn._cleaned(invalid)[0])
        return cast("R", records[0])


class PurchaseOrders(Resource[PurchaseOrder]):
    """``purchase-orders`` of one connection."""

    __slots__ = ()


class WorkOrders(Resource[WorkOrder]):
    """``work-orders`` of one connection."""

    __slots__ = ()


class Assets(Resource[Asset]):
    """``assets`` of one connection."""

    __slots__ = ()


class InventoryItems(Resource[InventoryItem]):
    """``inventory-items`` of one connection."""

    __slots__ = ()


class Vendors(Resource[Vendor]):
    """``vendors`` of one connection."""

    __slots__ = ()


class Locations(Resource[Location]):
    """``locations`` of one connection."""

    __slots__ = ()


RESOURCE_TYPES: Final[dict[Entity, type[Resource[Any]]]] = {
    Entity.PURCHASE_ORDERS: PurchaseOrders,
    Entity.WORK_ORDERS: WorkOrders,
    Entity.ASSETS: Assets,
    Entity.INVENTORY_ITEMS: InventoryItems,
    Entity.VENDORS: Vendors,
    Entity.LOCATIONS: Locations,
}
