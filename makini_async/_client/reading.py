"""Reading a listing answer: bytes to a page of records, and what does not fit.

Pure functions (no I/O): a listing and a bulk pull read pages the same way,
in the same two steps, with a bulk pull doing the second one in its
consumer, right before the page is used::

    page = read_page(raw)                       # JSON -> dicts, next cursor
    page = finish_page(page, as_dicts=..., connection=name, secrets=(token,))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from makini_async._wire.pages import Page
from makini_async._wire.responses import parse_page
from makini_async._wire.scrub import clean
from makini_async.instrumentation import PageEvent, emit
from makini_async.models import split_objects, structure_page

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from makini_async._wire.pages import RawPage
    from makini_async.instrumentation import Listener

__all__ = ["announce_page", "finish_page", "page_event", "read_page"]


def read_page(raw: RawPage) -> Page[dict[str, Any]]:
    """Parse a listing answer (records still as the API sent them).

    Raises :class:`~makini_async.errors.MalformedResponse` for a body that is
    not the contract's JSON.
    """
    data, next_cursor, total = parse_page(raw.body, request_id=raw.request_id)
    return Page(
        raw.entity,
        data,
        raw.cursor,
        next_cursor,
        total,
        raw.request_id,
        raw.page_size,
        elapsed=raw.elapsed,
    )


def finish_page(
    page: Page[Any], *, as_dicts: bool, connection: str, secrets: Iterable[str] = ()
) -> Page[Any]:
    """Set apart the records that do not fit, and structure the rest (unless ``as_dicts``).

    Structuring takes over ``page.records`` when it is a list: each dict in
    it is replaced by its record (see :func:`~makini_async.models.structure_page`).
    Records that do not fit (not an object; with ``as_dicts=False``, any value
    the model cannot read) go to ``page.invalid``, never lost; their reasons,
    which quote the server's values, are scrubbed of ``secrets``.
    """
    split = split_objects if as_dicts else structure_page
    records, invalid = split(
        page.entity, page.records, request_id=page.request_id, connection=connection
    )
    if not invalid and records is page.records:
        return page
    kept = tuple(attrs.evolve(i, reason=clean(i.reason, secrets)) for i in invalid)
    return attrs.evolve(page, records=records, invalid=kept)


def page_event(connection: str, page: Page[Any]) -> PageEvent:
    return PageEvent(
        connection,
        page.entity.value,
        len(page.records),
        page.page_size,
        page.next_cursor is not None,
        page.request_id,
        len(page.invalid),
    )


async def announce_page(listeners: Sequence[Listener], connection: str, page: Page[Any]) -> None:
    """Tell the ``on_page`` hooks (the event is built only when someone listens)."""
    if listeners:
        await emit(listeners, page_event(connection, page))
