"""Cursor pagination: ``async for`` over records, ``.pages()`` over pages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from makini_async._constants import MAX_PAGES_PER_LISTING
from makini_async.errors import PaginationError
from makini_async.models import InvalidRecord, invalid_record_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async.connection import Connection
    from makini_async.entities import Entity
    from makini_async.models import OnInvalid

__all__ = ["CursorGuard", "Listing", "Page", "RawPage", "report_invalid"]

logger = logging.getLogger("makini_async")

R = TypeVar("R")


@attrs.frozen(slots=True)
class Page(Generic[R]):
    """One page of a listing.

    ``cursor`` is the cursor that fetched this page (``None`` for the first),
    ``next_cursor`` the one that fetches the next (``None`` on the last page).
    A caller that checkpoints by page stores ``next_cursor`` once it has
    handled ``records``, and resumes with ``list(..., cursor=next_cursor)``.
    ``invalid`` holds the page's records that do not fit their model, as the
    API sent them (never dropped; see :class:`~makini_async.models.InvalidRecord`).
    """

    entity: Entity
    records: list[R]
    cursor: str | None
    next_cursor: str | None
    total_count: int | None
    request_id: str | None
    page_size: int
    invalid: tuple[InvalidRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.records)


@attrs.frozen(slots=True)
class RawPage:
    """A listing answer not parsed yet: its body bytes and what fetched it."""

    entity: Entity
    body: bytes
    cursor: str | None
    request_id: str | None
    page_size: int


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
        "_page_size",
    )

    def __init__(
        self,
        conn: Connection,
        entity: Entity,
        *,
        page_size: int,
        cursor: str | None,
        modified_after: str | None,
        created_after: str | None,
        as_dicts: bool,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        self._conn = conn
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
        cursor = self._cursor
        page_size = self._page_size
        conn = self._conn
        guard = CursorGuard(cursor, connection=conn.name)
        while True:
            page: Page[Any] = await conn.fetch_page(
                self._entity,
                cursor=cursor,
                page_size=page_size,
                modified_after=self._modified_after,
                created_after=self._created_after,
                as_dicts=self._as_dicts,
            )
            if page.invalid:
                report_invalid(page.invalid, self._on_invalid)
            yield page
            if page.next_cursor is None:
                return
            guard.advance(page.next_cursor, page.request_id)
            cursor = page.next_cursor
            # A page that had to shrink (timeout, clamp) keeps the smaller size.
            page_size = page.page_size


class CursorGuard:
    """Stops a walk whose cursors loop or never end, in constant memory.

    A cursor that repeats the one it was fetched with is caught at once;
    longer loops (A -> B -> A) by Brent's cycle detection, which keeps one
    saved cursor and catches a loop of length L entered after M pages within
    3 (L + M) pages; a source that invents new cursors forever by ``max_pages``.
    """

    __slots__ = ("_connection", "_last", "_pages", "_power", "_saved", "_steps", "max_pages")

    def __init__(
        self,
        start: str | None,
        *,
        connection: str | None = None,
        max_pages: int = MAX_PAGES_PER_LISTING,
    ) -> None:
        self._connection = connection
        self._last = start
        self._saved = start
        self._power = 1
        self._steps = 0
        self._pages = 0
        self.max_pages = max_pages

    def advance(self, next_cursor: str, request_id: str | None = None) -> None:
        """Take the next cursor, or raise :class:`PaginationError`."""
        self._pages += 1
        if next_cursor == self._last:
            msg = "listing response repeats the cursor it was fetched with"
        elif next_cursor == self._saved:
            msg = f"listing cursors loop (a cursor came back after {self._steps + 1} pages)"
        elif self._pages >= self.max_pages:
            msg = f"listing still has more after {self._pages:,} pages (the page-count guard)"
        else:
            self._last = next_cursor
            self._steps += 1
            if self._steps == self._power:
                self._saved = next_cursor
                self._power *= 2
                self._steps = 0
            return
        raise PaginationError(msg, request_id=request_id, connection=self._connection)


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
