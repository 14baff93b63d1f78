"""The producer side of a pull: a worker walks one chain at a time.

Pages go to the consumer through one queue of ``(kind, chain, payload)``
messages. A page travels as its raw bytes with a future: the consumer parses
it right before use and answers with the next cursor, so each chain fetches
its next page while the consumer works on the previous one, and no parsed
page outlives a step of the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async import _listing
from makini_async._reading import read_page
from makini_async._send import Tally
from makini_async._walk import Walk
from makini_async.bulk._chain import Chain, ChainEnded, Checkpoints
from makini_async.bulk._report import Outcome
from makini_async.errors import CircuitOpenError, MakiniError, MalformedResponse
from makini_async.pagination import Page, RawPage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["END", "FAILED", "PAGE", "RunSettings", "parse", "run_chain"]

logger = logging.getLogger("makini_async")

#: Queue message kinds: a page (with its hand-back future), a chain's failure, the end.
PAGE: Final = 0
FAILED: Final = 1
END: Final = 2
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
    probe_at = chain.conn.probe_at
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
    await run.sleep(wait)


async def run_chain(
    chain: Chain,
    queue: asyncio.Queue[tuple[int, Chain | None, Any]],
    checkpoints: Checkpoints,
    run: RunSettings,
) -> None:
    """Walk one chain's pages, handing each to the consumer and waiting until it is read."""
    as_dicts = run.as_dicts
    chain.outcome = Outcome.RUNNING
    chain.started_at = run.clock()
    tally = Tally()
    conn = chain.conn
    entity = chain.entity
    loop = asyncio.get_running_loop()
    try:
        cursor, modified_after, learnt = await checkpoints.plan(chain)
        largest = conn.page_size_for(entity)
        walk = Walk(
            cursor,
            min(largest, learnt) if learnt else largest,
            connection=chain.connection,
            sizing=_listing.sizing_for(conn, entity, largest),
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
