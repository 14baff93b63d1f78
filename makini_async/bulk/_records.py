"""A pull's pages as records: one :class:`PulledRecord` per record, built in C."""

from __future__ import annotations

import functools
import itertools
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

from makini_async.bulk._report import PulledPage, PulledRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["records_of"]

_new_pulled_record: Final = functools.partial(tuple.__new__, PulledRecord)


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
            # Build the page's PulledRecords in C (map/zip/tuple.__new__): half
            # the cost of calling the named tuple's constructor per record.
            items: Iterator[PulledRecord[Any]] = map(
                _new_pulled_record,
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
