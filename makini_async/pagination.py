"""Cursor pagination: ``async for`` over records, ``.pages()`` over pages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from makini_async._client.walk import CursorGuard, Sizing, Walk
from makini_async._wire.pages import Page, RawPage
from makini_async.errors import RecordStructureError
from makini_async.models import invalid_record_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async._client.config import CallOptions
    from makini_async._invalid import InvalidRecord, OnInvalid
    from makini_async.entities import Entity

__all__ = ["CursorGuard", "Listing", "Page", "PageSource", "RawPage", "report_invalid"]

logger = logging.getLogger("makini_async")

R = TypeVar("R")


class PageSource(Protocol):
    """What a listing needs from its connection: one page at a time."""

    @property
    def name(self) -> str: ...

    async def fetch_page(
        self,
        entity: Entity,
        *,
        cursor: str | None,
        page_size: int,
        modified_after: str | None,
        created_after: str | None,
        as_dicts: bool,
    ) -> Page[Any]:
        """The page at ``cursor``, parsed and finished (records that fit, invalid ones)."""
        ...

    def sizing(self, entity: Entity, largest: int) -> Sizing:
        """How a walk of ``entity`` adapts its page size, up to ``largest``."""
        ...


class Listing(Generic[R]):
    """A lazy listing of one entity on one connection.

    ``async for record in listing`` yields records; ``async for page in
    listing.pages()`` yields :class:`Page` objects. Each iteration starts
    again from the listing's starting cursor. Pages are fetched one at a
    time, in order, with the connection's retries, rate-limit pauses and
    page-size adaptation. A record that does not fit its model is handled by
    ``on_invalid`` (:data:`~makini_async.models.OnInvalid`): raised by
    default; with ``"deliver"`` it is yielded as an
    :class:`~makini_async.models.InvalidRecord` after the page's records.
    """

    __slots__ = (
        "_as_dicts",
        "_conn",
        "_created_after",
        "_cursor",
        "_entity",
        "_modified_after",
        "_on_invalid",
        "_options",
        "_page_size",
    )

    def __init__(
        self,
        conn: PageSource,
        entity: Entity,
        *,
        page_size: int,
        cursor: str | None,
        modified_after: str | None,
        created_after: str | None,
        as_dicts: bool,
        on_invalid: OnInvalid = "raise",
        options: CallOptions | None = None,
    ) -> None:
        self._conn = conn
        self._options = options
        self._entity = entity
        self._page_size = page_size
        self._cursor = cursor
        self._modified_after = modified_after
        self._created_after = created_after
        self._as_dicts = as_dicts
        self._on_invalid = on_invalid

    @property
    def entity(self) -> Entity:
        return self._entity

    def __repr__(self) -> str:
        return (
            f"<Listing {self._entity.value} on {self._conn.name!r} "
            f"page_size={self._page_size} cursor={self._cursor!r}>"
        )

    def __aiter__(self) -> AsyncIterator[R]:
        return self._records()

    async def _records(self) -> AsyncIterator[R]:
        deliver = self._on_invalid == "deliver"
        async for page in self.pages():
            for record in page.records:
                yield record
            if deliver:
                for invalid in page.invalid:
                    yield invalid  # type: ignore[misc]  # R includes InvalidRecord then

    async def pages(self) -> AsyncIterator[Page[R]]:
        """Yield the pages in order, from the starting cursor to the last."""
        conn = self._conn
        walk = Walk(
            self._cursor,
            self._page_size,
            connection=conn.name,
            sizing=conn.sizing(self._entity, self._page_size),
        )
        # Per-call options only when given: a PageSource of the caller's need not take them.
        extra: dict[str, Any] = {} if self._options is None else {"options": self._options}
        while not walk.done:
            page: Page[Any] = await conn.fetch_page(
                self._entity,
                cursor=walk.cursor,
                page_size=walk.page_size,
                modified_after=self._modified_after,
                created_after=self._created_after,
                as_dicts=self._as_dicts,
                **extra,
            )
            if page.invalid:
                try:
                    report_invalid(page.invalid, self._on_invalid)
                except RecordStructureError as exc:
                    # The page's valid records and where to go on: nothing need be fetched twice.
                    exc.page_records = list(page.records)
                    exc.page_invalid = list(page.invalid)
                    exc.next_cursor = page.next_cursor
                    raise
            yield page
            walk.advance(page.next_cursor, page.page_size, page.request_id, page.elapsed)


def report_invalid(invalid: tuple[InvalidRecord, ...], on_invalid: OnInvalid) -> None:
    """Apply the ``raise`` policy, or log a page's invalid records (one line per page)."""
    if on_invalid == "raise":
        raise invalid_record_error(invalid[0])
    first = invalid[0]
    level = logging.WARNING if on_invalid == "skip" else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%d invalid %s record(s) %s (connection=%s, request_id=%s); first: %s",
            len(invalid),
            first.entity.value,
            "skipped" if on_invalid == "skip" else "delivered as InvalidRecord",
            first.connection,
            first.request_id,
            first.describe(),
        )
