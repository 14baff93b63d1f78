"""A page of a listing, parsed (:class:`Page`) or not yet (:class:`RawPage`): plain values.

They are public as :mod:`makini_async.pagination`'s; they live here, on the
ground floor, because the client's listing machinery makes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import attrs

if TYPE_CHECKING:
    from makini_async._invalid import InvalidRecord
    from makini_async.entities import Entity

__all__ = ["Page", "RawPage"]

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
    #: Seconds the page took to arrive (its last attempt, on the wire).
    elapsed: float = 0.0

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
    elapsed: float = 0.0
