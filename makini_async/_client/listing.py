"""Fetching listing pages for a connection: page sizes, retries, reading.

A listing (``Listing.pages()``) and a bulk-pull chain fetch their pages here,
each page with the connection's send loop; page-size limits the API gives
are remembered on the connection for the rest of its life.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from makini_async._client.call import Call, Link, Tally
from makini_async._client.reading import announce_page, finish_page, read_page
from makini_async._client.send import send
from makini_async._client.walk import Sizing, adapt_page_size
from makini_async._wire.pages import Page, RawPage
from makini_async._wire.requests import list_params
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from makini_async._client.config import CallOptions
    from makini_async._client.transport import RawResponse
    from makini_async.entities import Entity
    from makini_async.errors import MakiniError

__all__ = ["ListingLink", "fetch_page", "fetch_raw", "finish", "page_size_for", "sizing_for"]


class ListingLink(Link, Protocol):
    """A connection as listing needs it: the send loop's view plus page-size memory."""

    @property
    def _secrets(self) -> tuple[str, ...]: ...
    def _learnt_page_size(self, entity: Entity) -> int | None: ...
    def _learn_page_size(self, entity: Entity, limit: int) -> None: ...


def page_size_for(conn: ListingLink, entity: Entity, page_size: int | None = None) -> int:
    """The page size to ask for: ``page_size``, else the pool's, within any learnt limit."""
    if page_size is None:
        size = conn.shared.page_sizes.for_entity(entity)
    elif isinstance(page_size, int) and not isinstance(page_size, bool) and page_size >= 1:
        size = page_size
    else:
        msg = f"page_size must be an integer >= 1, got {page_size!r}"
        raise UsageError(msg)
    learnt = conn._learnt_page_size(entity)
    return size if learnt is None else min(size, learnt)


def sizing_for(conn: ListingLink, entity: Entity, largest: int) -> Sizing:
    """How a walk of ``entity`` on ``conn`` adapts its page size, up to ``largest``."""
    shared = conn.shared
    sizes = shared.page_sizes
    timeouts = shared.timeouts
    read = timeouts.read if timeouts.read is not None else timeouts.total / 2
    return Sizing(
        largest=largest,
        floor=min(sizes.min_page_size, largest),
        slow=sizes.slow_page if sizes.slow_page is not None else read / 2,
        fast=sizes.fast_page if sizes.fast_page is not None else read / 10,
        grow_after=sizes.grow_after,
        limit=lambda: conn._learnt_page_size(entity),
    )


async def fetch_raw(
    conn: ListingLink,
    entity: Entity,
    *,
    cursor: str | None,
    page_size: int,
    modified_after: str | None = None,
    created_after: str | None = None,
    tally: Tally | None = None,
    patient: bool = False,
) -> RawPage:
    """Fetch one listing page's bytes, unparsed (a bulk pull parses in its consumer).

    If :func:`~makini_async._client.reading.read_page` then finds the body is not the
    contract's JSON, fetch the page again with :func:`fetch_page`, which
    retries such a body like a failed request. ``patient`` calls wait out an
    outage of the API for the pool's whole outage budget.
    """
    raw: RawPage = await _fetch(
        conn,
        entity,
        cursor=cursor,
        page_size=page_size,
        modified_after=modified_after,
        created_after=created_after,
        tally=tally,
        patient=patient,
        parse=False,
    )
    return raw


async def fetch_page(
    conn: ListingLink,
    entity: Entity,
    *,
    cursor: str | None,
    page_size: int,
    modified_after: str | None = None,
    created_after: str | None = None,
    as_dicts: bool = False,
    tally: Tally | None = None,
    patient: bool = False,
    options: CallOptions | None = None,
) -> Page[Any]:
    """Fetch one page, parsed and finished (records that fit, and invalid ones)."""
    page: Page[Any] = await _fetch(
        conn,
        entity,
        cursor=cursor,
        page_size=page_size,
        modified_after=modified_after,
        created_after=created_after,
        tally=tally,
        patient=patient,
        parse=True,
        options=options,
    )
    return await finish(conn, page, as_dicts=as_dicts)


async def finish(conn: ListingLink, page: Page[Any], *, as_dicts: bool) -> Page[Any]:
    """Structure a parsed page (unless ``as_dicts``) and tell the ``on_page`` hooks."""
    page = finish_page(page, as_dicts=as_dicts, connection=conn.name, secrets=conn._secrets)
    shared = conn.shared
    telemetry = shared.telemetry
    if telemetry is not None and telemetry.live():
        # Counted here, not as a hook: with no provider set, a page builds no event.
        telemetry.records(page.entity.value, len(page.records))
    if shared.hooks.on_page:
        await announce_page(shared.hooks.on_page, conn.name, page)
    return page


async def _fetch(
    conn: ListingLink,
    entity: Entity,
    *,
    cursor: str | None,
    page_size: int,
    modified_after: str | None,
    created_after: str | None,
    tally: Tally | None,
    patient: bool,
    parse: bool,
    options: CallOptions | None = None,
) -> Any:
    params = list_params(page_size, cursor, modified_after, created_after)
    floor = min(conn.shared.page_sizes.min_page_size, page_size)

    def learn(limit: int) -> None:
        conn._learn_page_size(entity, limit)

    def adapt(error: MakiniError, params: dict[str, str]) -> bool:
        return adapt_page_size(error, params, floor=floor, learn=learn)

    def answer(resp: RawResponse, request_id: str | None) -> RawPage | Page[dict[str, Any]]:
        raw = RawPage(entity, resp.body, cursor, request_id, int(params["page_size"]), resp.elapsed)
        return read_page(raw) if parse else raw

    call = Call("GET", "/" + entity.value, params)
    return await send(
        conn, call, answer, adapt=adapt, tally=tally, patient=patient, options=options
    )
