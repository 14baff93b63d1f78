"""Cursor pagination: ``async for`` over records, ``.pages()`` over pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async.connection import Connection
    from makini_async.entities import Entity

__all__ = ["Listing", "Page", "RawPage"]

R = TypeVar("R")


@attrs.frozen(slots=True)
class Page(Generic[R]):
    """One page of a listing.

    ``cursor`` is the cursor that fetched this page (``None`` for the first),
    ``next_cursor`` the one that fetches the next (``None`` on the last page).
    A caller that checkpoints by page stores ``next_cursor`` once it has
    handled ``records``, and resumes with ``list(..., cursor=next_cursor)``.
    """

    entity: Entity
    records: list[R]
    cursor: str | None
    next_cursor: str | None
    total_count: int | None
    request_id: str | None
    page_size: int

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
    page-size adaptation.
    """

    __slots__ = (
        "_as_dicts",
        "_conn",
        "_created_after",
        "_cursor",
        "_entity",
        "_modified_after",
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
    ) -> None:
        self._conn = conn
        self._entity = entity
        self._page_size = page_size
        self._cursor = cursor
        self._modified_after = modified_after
        self._created_after = created_after
        self._as_dicts = as_dicts

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
        async for page in self.pages():
            for record in page.records:
                yield record

    async def pages(self) -> AsyncIterator[Page[R]]:
        """Yield the pages in order, from the starting cursor to the last."""
        cursor = self._cursor
        page_size = self._page_size
        conn = self._conn
        while True:
            page: Page[Any] = await conn.fetch_page(
                self._entity,
                cursor=cursor,
                page_size=page_size,
                modified_after=self._modified_after,
                created_after=self._created_after,
                as_dicts=self._as_dicts,
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
            # A page that had to shrink (timeout, clamp) keeps the smaller size.
            page_size = page.page_size
