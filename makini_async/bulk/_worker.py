"""The producer side of a pull: a worker walks one chain at a time.

Pages go to the consumer through one queue of ``(kind, chain, payload)``
messages. A page travels as its raw bytes with a future: the consumer parses
it right before use and answers with the next cursor, so each chain fetches
its next page while the consumer works on the previous one, and no parsed
page outlives a step of the event loop.

A cursor the API rejects (400 ``INVALID_REQUEST``: "the cursor has expired;
start the listing again", after a re-sync of the source or 24 hours) starts
its chain again from the beginning of its run, once per run: the worker asks
the consumer (a ``RESTART`` message, handled after the chain's previous page
is committed) to have the sink forget the chain and its checkpoint go back to
the start, then walks the listing again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async._client import listing as _listing
from makini_async._client.call import Tally
from makini_async._client.reading import read_page
from makini_async._client.walk import Walk
from makini_async._wire.texts import record_texts
from makini_async.bulk._chain import Chain, ChainEnded, Checkpoints, fresh
from makini_async.bulk._report import Outcome, PulledPage
from makini_async.errors import CircuitOpenError, MakiniError, MalformedResponse
from makini_async.pagination import Page, RawPage, report_invalid

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from makini_async._invalid import OnInvalid
    from makini_async.bulk._sink import Sink

__all__ = ["END", "FAILED", "PAGE", "RESTART", "RunSettings", "parse", "restart", "run_chain"]

logger = logging.getLogger("makini_async")

#: Queue message kinds: a page (with its hand-back future), a chain's failure, the end.
PAGE: Final = 0
FAILED: Final = 1
END: Final = 2
#: A chain whose cursor the API rejected asks the consumer to take it back to its start.
RESTART: Final = 3
#: The codes of a 400 that rejects a cursor (the contract's, and a clearer one some gateways send).
_CURSOR_REJECTED: Final = frozenset({"INVALID_REQUEST", "INVALID_CURSOR"})
# A chain deferred by an open breaker comes back no sooner than this: while
# another chain's call is the breaker's probe, the breaker's time is past but
# its answer is not in yet.
_MIN_DEFERRAL: Final = 1.0


@attrs.frozen(slots=True)
class RunSettings:
    """What every chain of one pull runs with."""

    as_dicts: bool
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    #: Seconds a chain may spend, in all, waiting for its connection's breaker.
    patience: float


async def _defer(chain: Chain, error: MakiniError, run: RunSettings) -> None:
    """Wait for an open breaker's cool-down instead of failing the chain, within patience.

    The connection's breaker opened (its source system keeps failing): the
    chain comes back after the cool-down, when the breaker lets a probe
    through. A chain that has waited ``patience`` seconds in all fails with
    the breaker's error.
    """
    now = run.clock()
    probe_at = chain.conn._probe_at
    wait = max(_MIN_DEFERRAL, (probe_at if probe_at is not None else now) - now)
    if chain.deferred_for + wait > run.patience:
        raise error
    chain.deferred_for += wait
    chain.deferrals += 1
    logger.info(
        "%s %s: circuit breaker open, chain deferred for %.1fs (%.0fs of patience left)",
        chain.connection,
        chain.entity.value,
        wait,
        run.patience - chain.deferred_for,
    )
    telemetry = chain.conn.shared.telemetry
    if telemetry is not None:
        telemetry.event("makini.breaker_wait", wait)
    await run.sleep(wait)


async def run_chain(
    chain: Chain,
    queue: asyncio.Queue[tuple[int, Chain | None, Any]],
    checkpoints: Checkpoints,
    run: RunSettings,
) -> None:
    """Walk one chain's pages, handing each to the consumer and waiting until it is read."""
    telemetry = chain.conn.shared.telemetry
    if telemetry is None or not telemetry.live():
        await _walk(chain, queue, checkpoints, run)
        return
    # The chain's span is current while it is walked (its calls are its children);
    # the consumer ends it with the chain's outcome.
    with telemetry.chain_scope(chain):
        await _walk(chain, queue, checkpoints, run)


async def _walk(
    chain: Chain,
    queue: asyncio.Queue[tuple[int, Chain | None, Any]],
    checkpoints: Checkpoints,
    run: RunSettings,
) -> None:
    as_dicts = run.as_dicts
    chain.outcome = Outcome.RUNNING
    chain.started_at = run.clock()
    tally = Tally()
    conn = chain.conn
    entity = chain.entity
    loop = asyncio.get_running_loop()
    try:
        cursor, modified_after, learnt = await checkpoints.plan(chain)
        largest = conn._page_size_for(entity)
        sizing = _listing.sizing_for(conn, entity, largest)
        walk = Walk(
            cursor,
            min(largest, learnt) if learnt else largest,
            connection=chain.connection,
            sizing=sizing,
        )
        while not walk.done:
            try:
                item: RawPage | Page[Any] = await _listing.fetch_raw(
                    conn,
                    entity,
                    cursor=walk.cursor,
                    page_size=walk.page_size,
                    modified_after=modified_after,
                    tally=tally,
                    patient=True,
                )
            except MakiniError as exc:
                if walk.cursor is not None and _rejects_cursor(exc) and chain.restarts == 0:
                    await _restart(chain, exc, modified_after, queue)
                    walk = Walk(None, walk.page_size, connection=chain.connection, sizing=sizing)
                    continue
                if not (isinstance(exc, CircuitOpenError) or (exc.retryable and conn.breaker_open)):
                    raise
                await _defer(chain, exc, run)
                continue
            handed: asyncio.Future[tuple[str | None, int, str | None]] = loop.create_future()
            queue.put_nowait((PAGE, chain, (item, handed)))
            elapsed = item.elapsed
            del item
            try:
                next_cursor, page_size, request_id = await handed
            except MalformedResponse:
                # Rare: fetch again, parsing (and structuring) here so a bad
                # body is retried. The consumer takes this page as it is.
                item = await _listing.fetch_page(
                    conn,
                    entity,
                    cursor=walk.cursor,
                    page_size=walk.page_size,
                    modified_after=modified_after,
                    as_dicts=as_dicts,
                    tally=tally,
                    patient=True,
                )
                handed = loop.create_future()
                queue.put_nowait((PAGE, chain, (item, handed)))
                del item
                next_cursor, page_size, request_id = await handed
            chain.retries = tally.retries
            chain.rate_limited = tally.rate_limited
            # The last page: the consumer completes the chain once done with it.
            walk.advance(next_cursor, page_size, request_id, elapsed)
            chain.page_size = walk.page_size
    except asyncio.CancelledError:
        raise
    except ChainEnded:
        return
    except Exception as exc:  # noqa: BLE001 - every failure is reported per chain
        # Including the consumer's, handed back here: all name their connection.
        if isinstance(exc, MakiniError) and exc.connection is None:
            exc.connection = chain.connection
        chain.retries = tally.retries
        chain.rate_limited = tally.rate_limited
        queue.put_nowait((FAILED, chain, exc))


def _rejects_cursor(error: MakiniError) -> bool:
    return error.status == 400 and error.code in _CURSOR_REJECTED


async def _restart(
    chain: Chain,
    error: MakiniError,
    modified_after: str | None,
    queue: asyncio.Queue[tuple[int, Chain | None, Any]],
) -> None:
    """Have the consumer take ``chain`` back to its start (see :func:`restart`), and wait."""
    logger.warning(
        "%s %s: the API rejected the chain's cursor after %d records (%s %s, request_id=%s); "
        "starting the chain again from its beginning with modified_after=%s",
        chain.connection,
        chain.entity.value,
        chain.resumed_records + chain.records,
        error.status,
        error.code,
        error.request_id,
        modified_after,
    )
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    queue.put_nowait((RESTART, chain, done))
    await done


async def restart(
    chain: Chain, done: asyncio.Future[None], checkpoints: Checkpoints, sink: Sink | None
) -> None:
    """In the consumer: the sink forgets ``chain``, its checkpoint goes back to its start.

    The consumer handles messages in order, so the chain's previous page is
    committed by now. A failure (the sink cannot forget) fails the chain.
    """
    if chain.done:  # ended by the consumer (fail): stop its worker
        if not done.done():
            done.set_exception(ChainEnded())
        return
    try:
        await checkpoints.restart(chain, sink)
    except Exception as exc:  # noqa: BLE001 - the chain's failure, reported by its worker
        if not done.done():
            done.set_exception(exc)
        return
    if not done.done():
        done.set_result(None)


async def parse(chain: Chain, raw: RawPage | Page[Any], *, as_dicts: bool) -> Page[Any]:
    """Parse (and structure) a page in the consumer, right before it is used.

    Parsed pages are many small objects. Parsed in the workers they would
    stay alive across awaits, get promoted to the GC's oldest generation and
    make every collection slower (about a third of the throughput); parsed
    here, they die young.
    """
    if isinstance(raw, Page):
        return raw  # fetched again by the worker with fetch_page: finished already
    return await _listing.finish(chain.conn, read_page(raw), as_dicts=as_dicts)


async def receive(
    chain: Chain,
    payload: Any,
    *,
    as_dicts: bool,
    dedupe: bool,
    on_invalid: OnInvalid,
    texts: bool = False,
) -> tuple[PulledPage[Any], int] | None:
    """A chain's queued page parsed, de-duplicated and counted, with its page size.

    ``payload`` is what the worker queued: the raw page and the future that
    hands the next cursor back, at once, so that the chain fetches its next
    page while this one is consumed. A page that fails goes back to the
    worker as its exception (it fetches again, or reports the chain), and
    this returns ``None``, as it does for a chain the consumer ended.
    With ``texts`` (a dict pull into a sink that reads them), the page
    carries each record's JSON text as sent
    (:func:`~makini_async._wire.texts.record_texts`).
    """
    raw, handed = payload
    if chain.done:  # ended by the consumer (fail): stop its worker
        handed.set_exception(ChainEnded())
        return None
    try:
        page = await parse(chain, raw, as_dicts=as_dicts)
        records, invalid = page.records, page.invalid
        # Only a page with nothing set apart: its records are the body's data, in order.
        sent = (
            record_texts(raw.body, len(records))
            if texts and as_dicts and not invalid and isinstance(raw, RawPage)
            else None
        )
        if dedupe:
            records, invalid = fresh(
                chain, records, invalid, as_dicts=as_dicts, request_id=page.request_id
            )
        if sent is not None and records is not page.records:
            sent = _kept(sent, page.records, records)
        if invalid:
            report_invalid(invalid, on_invalid)
    except Exception as exc:  # noqa: BLE001 - the chain's failure, not the pull's
        if not handed.done():
            handed.set_exception(exc)
        return None
    if not handed.done():
        handed.set_result((page.next_cursor, page.page_size, page.request_id))
    if chain.pages == 0 and page.total_count is not None:
        chain.total = max(0, page.total_count - chain.resumed_records)
    chain.records += len(records)
    chain.pages += 1
    if invalid:
        chain.invalid += len(invalid)
    pulled = PulledPage(
        chain.connection,
        chain.entity,
        records,
        page.cursor,
        page.next_cursor,
        page.request_id,
        invalid,
        page.total_count,
        sent,
    )
    return pulled, page.page_size


def _kept(texts: list[Any], sent: list[Any], kept: list[Any]) -> list[Any]:
    """The texts of the records de-duplication kept (found by identity: they are dicts)."""
    where = {id(record): i for i, record in enumerate(sent)}
    return [texts[where[id(record)]] for record in kept]
