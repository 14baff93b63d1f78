"""A pull's pages as records: one :class:`PulledRecord` per record, built in C."""

from __future__ import annotations

import itertools
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

from makini_async.bulk._report import PulledPage, PulledRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["records_of"]

_tuple_new: Final = tuple.__new__


async def records_of(
    pages: AsyncIterator[PulledPage[Any]], *, deliver_invalid: bool
) -> AsyncIterator[PulledRecord[Any]]:
    """Every record of ``pages`` (and, with ``deliver_invalid``, each page's invalid ones)."""
    try:
        while True:
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return
            # Build the page's PulledRecords in C: map calls tuple.__new__ with the
            # class and each (connection, entity, record), half the cost of the
            # named tuple's constructor. (Through functools.partial it cost 700
            # more instructions a record, the partial's argument tuples; cachegrind.)
            items: Iterator[PulledRecord[Any]] = map(
                _tuple_new,
                repeat(PulledRecord),
                zip(repeat(page.connection), repeat(page.entity), page.records),
            )
            if page.invalid and deliver_invalid:
                # After the page's records: what the API sent, typed as what it is.
                items = itertools.chain(
                    items,
                    [PulledRecord(page.connection, page.entity, i) for i in page.invalid],
                )
            # Drop every reference to the page before the next await (see _parse).
            del page
            item: PulledRecord[Any] | None
            for item in items:
                yield item
            del items
            item = None
    finally:
        await pages.aclose()  # type: ignore[attr-defined]
