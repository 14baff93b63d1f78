"""The one cursor walk that listings and bulk-pull chains share.

A :class:`Walk` is where a walk over one entity's cursors stands: the cursor
of the next page, the page size to ask for, and a :class:`CursorGuard` that
ends a walk whose cursors loop or never end. ``Listing.pages()`` and a bulk
pull's chain both run the same loop::

    walk = Walk(cursor, page_size, connection=name)
    while not walk.done:
        page = await fetch(walk.cursor, walk.page_size)
        ...
        walk.advance(page.next_cursor, page.page_size, page.request_id)

:func:`adapt_page_size` is how a page size is corrected while a page is
fetched (the API's ``INVALID_PAGE_SIZE`` limit, a timeout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from makini_async._wire.constants import MAX_PAGES_PER_LISTING
from makini_async.errors import InvalidPageSizeError, PaginationError, RequestTimeout

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.errors import MakiniError

__all__ = ["CursorGuard", "Sizing", "Walk", "adapt_page_size"]


@attrs.frozen(slots=True)
class Sizing:
    """How a walk's page size adapts (see :class:`~makini_async.PageSizes`).

    ``largest`` is the size asked for (the entity's, or the caller's),
    ``limit()`` the API's own limit learnt so far (or ``None``).
    """

    largest: int
    floor: int
    slow: float
    fast: float
    grow_after: int
    limit: Callable[[], int | None] = lambda: None


class Walk:
    """The cursor and page size of the next page of one walk, and its guard."""

    __slots__ = ("_fast_run", "_guard", "_sizing", "cursor", "done", "page_size")

    def __init__(
        self,
        cursor: str | None,
        page_size: int,
        *,
        connection: str | None,
        sizing: Sizing | None = None,
    ) -> None:
        self.cursor = cursor
        self.page_size = page_size
        self.done = False
        self._guard = CursorGuard(cursor, connection=connection)
        self._sizing = sizing
        self._fast_run = 0

    def advance(
        self,
        next_cursor: str | None,
        page_size: int,
        request_id: str | None,
        elapsed: float = 0.0,
    ) -> None:
        """Move past a page: to ``next_cursor``, or to the end when it is ``None``.

        ``page_size`` is the size that fetched the page (smaller than asked
        when a timeout or the API's limit made it shrink) and ``elapsed`` how
        long it took: the next page's size follows from both.
        """
        if next_cursor is None:
            self.done = True
            return
        self._guard.advance(next_cursor, request_id)
        self.cursor = next_cursor
        self.page_size = self._next_size(page_size, elapsed)

    def _next_size(self, size: int, elapsed: float) -> int:
        sizing = self._sizing
        if sizing is None:
            return size
        if elapsed > sizing.slow:
            self._fast_run = 0
            return max(sizing.floor, min(size, size // 2))
        if elapsed >= sizing.fast:
            self._fast_run = 0
            return size
        self._fast_run += 1
        largest = sizing.largest
        limit = sizing.limit()
        if limit is not None:
            largest = min(largest, limit)
        if self._fast_run >= sizing.grow_after and size < largest:
            self._fast_run = 0
            return min(largest, size * 2)
        return min(size, largest)


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


def adapt_page_size(
    error: MakiniError,
    params: dict[str, str],
    *,
    floor: int,
    learn: Callable[[int], None],
) -> bool:
    """Correct a listing's ``page_size`` after ``error``; True means send it again now.

    ``INVALID_PAGE_SIZE`` with the API's ``max_page_size`` clamps to it (and
    ``learn`` is told, to remember it): a correction, not a retry. A
    timeout halves the size, down to ``floor``, for the retry the send loop
    makes anyway.
    """
    current = int(params["page_size"])
    if isinstance(error, InvalidPageSizeError):
        limit = error.max_page_size
        if limit is not None and limit < current:
            learn(limit)
            params["page_size"] = str(limit)
            return True
    elif isinstance(error, RequestTimeout) and current > floor:
        params["page_size"] = str(max(floor, current // 2))
    return False
