"""The pull itself: workers that walk chains, one consumer that reads their pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import weakref
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from makini_async.bulk._chain import (
    Chain,
    Checkpoints,
    ConnectionSource,
    ConnectionSpec,
    connections_of,
    entities_of,
)
from makini_async.bulk._options import PullKeywords, PullOptions, options_of
from makini_async.bulk._records import records_of
from makini_async.bulk._report import ChainReport, Outcome, PulledPage, PulledRecord, PullReport
from makini_async.bulk._sink import report_failures
from makini_async.bulk._state import (
    bind,
    checkpoint_of,
    identity_of,
    start_over,
    warn_unclosed,
)
from makini_async.bulk._worker import (
    END,
    FAILED,
    PAGE,
    RESTART,
    RunSettings,
    receive,
    restart,
    run_chain,
)
from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore, open_checkpoint
from makini_async.errors import (
    CheckpointError,
    MakiniError,
    SinkError,
    UsageError,
)

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
    )
    from types import TracebackType

    from typing_extensions import Unpack

    from makini_async._invalid import InvalidRecord, OnInvalid
    from makini_async.bulk._options import CheckpointSpec
    from makini_async.bulk._sink import Sink
    from makini_async.entities import Entity, EntityLike

__all__ = ["Pull"]

logger = logging.getLogger("makini_async")


R = TypeVar("R")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Pull(Generic[R]):
    """A bulk pull in progress. Iterate it once; use it as ``async with`` for prompt cleanup.

    ``R`` is what a record is: a typed record, or a ``dict`` with
    ``as_dicts=True`` (a record that does not fit its model arrives as an
    :class:`~makini_async.InvalidRecord` whatever ``R`` is).

    With a checkpoint, the pull uses one of its states: ``state_name`` (by
    default the destination, such as ``jsonl:/data/out``); a state recorded
    for another destination or ``layout`` (a sharded pull's units) raises
    :class:`~makini_async.checkpoint.CheckpointMismatch` unless ``fresh``
    starts it over. ``report.state`` says which state was used and how.

    :meth:`run`, iterating to the end, and an iteration that raises close
    the pull; a pull collected unclosed warns (``ResourceWarning``).
    """

    def __init__(
        self,
        pool: ConnectionSource,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        checkpoint: CheckpointSpec = None,
        sink: Sink | None = None,
        as_dicts: bool | None = None,
        options: PullOptions | None = None,
        layout: str | None = None,
        **keywords: Unpack[PullKeywords],
    ) -> None:
        shared = pool.shared
        ents = entities_of(entities)
        conns = connections_of(pool, connections)
        opts = options_of(options, keywords)
        #: The options this pull runs with.
        self.options = opts
        self._shared = shared
        self._clock = shared.clock
        self._on_invalid: OnInvalid = opts.on_invalid
        checkpoint, sink_commits = checkpoint_of(sink, checkpoint)
        self._sink = sink
        self._identity = identity_of(
            sink,
            checkpoint,
            ents,
            name=opts.state_name,
            since=opts.modified_after,
            since_sync_status=opts.since_sync_status,
            layout=layout,
        )
        self._fresh = opts.fresh
        self._owns_store = checkpoint is not None and not isinstance(
            checkpoint, (CheckpointStore, AsyncCheckpointStore)
        )
        self._as_dicts = shared.as_dicts if as_dicts is None else as_dicts
        self._run = RunSettings(self._as_dicts, shared.clock, shared.sleep, float(opts.patience))
        self._dedupe = opts.dedupe
        self._raise = opts.raise_on_error
        clock = self._clock
        self._chains = tuple(
            Chain(conn=conn, connection=conn.name, entity=ent, clock=clock)
            for conn in conns
            for ent in ents
        )
        # The report's list is the user's to sort or filter; workers keep their own tuple.
        self.report = PullReport(list[ChainReport](self._chains), clock=clock)
        limit = opts.concurrency or shared.limits.max_in_flight
        self._concurrency = min(limit, len(self._chains)) or 1
        # Unbounded, yet bounded by the protocol: each worker has at most one page
        # in it, and waits until the consumer has parsed that page.
        self._queue: asyncio.Queue[tuple[int, Chain | None, Any]] = asyncio.Queue()
        self._pending = iter(self._chains)  # chains start in order, as workers free up
        self._current: Chain | None = None  # the chain of the page the consumer holds
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0
        self._stopping = False
        self._started = False
        self._telemetry = self._shared.telemetry
        self._span: Any = None  # the pull's OpenTelemetry span, while it runs
        # Weakly: an iteration its consumer abandons (an exception out of ``async for``)
        # is then collected at once, and the event loop closes it (``aclose``).
        self._gen: weakref.ref[AsyncIterator[Any]] | None = None
        # Last: a store opened from a path holds its lock until the pull is closed.
        self._checkpoints = Checkpoints(
            None if checkpoint is None else open_checkpoint(checkpoint, clock=shared.clock),
            sink_commits=sink_commits,
            modified_after=opts.modified_after,
            overlap=opts.overlap,
            since_sync_status=opts.since_sync_status,
            wall_clock=opts.wall_clock or _utc_now,
        )
        self._closed = False

    def __del__(self, _warn: Callable[..., None] = warn_unclosed) -> None:
        # A pull left open holds what only closing releases: running workers, the
        # checkpoint's lock. Say so, and release what can be released here (the
        # default argument keeps the function at hand while the interpreter exits).
        if not getattr(self, "_closed", True):
            store = self._checkpoints.store if self._owns_store else None
            _warn(self, len(self._chains), store, started=self._started)

    # -- public iteration ------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[PulledRecord[R | InvalidRecord]]:
        gen = self._records()
        self._gen = weakref.ref(gen)
        return gen

    def pages(self) -> AsyncIterator[PulledPage[R]]:
        """Iterate pages instead of records (fewer objects: the fastest way)."""
        gen = self._pages()
        self._gen = weakref.ref(gen)
        return gen

    async def run(
        self, on_page: Callable[[PulledPage[R]], Awaitable[None] | None] | None = None
    ) -> PullReport:
        """Pull everything, calling ``on_page`` for each page; return the report.

        The pull is closed when ``run`` returns or raises (an ``on_page`` that
        raises included): no request left in flight, the checkpoint released.
        """
        try:
            async for page in self.pages():
                if on_page is not None:
                    result = on_page(page)
                    if result is not None:
                        await result
        finally:
            await self.aclose()
        return self.report

    async def __aenter__(self) -> Pull[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def fail(self, page: PulledPage[Any], error: BaseException) -> None:
        """End the chain ``page`` came from with ``error``: the consumer cannot take it.

        For a consumer that could not store a page (a record it cannot
        serialise, a full disk): the chain's checkpoint stays before this page,
        so a later run delivers it again, and every other chain goes on. Call
        it before asking for the next item. With a sink that commits its own
        checkpoint (Parquet, PostgreSQL) the page has already landed with its
        cursor: ``fail`` then only ends the chain.
        """
        key = (page.connection, page.entity)
        chain = self._current
        if chain is None or (chain.connection, chain.entity) != key:
            chain = next((c for c in self._chains if (c.connection, c.entity) == key), None)
        if chain is None:
            msg = f"no chain {page.connection} {page.entity.value} in this pull"
            raise UsageError(msg)
        if not chain.done:
            if isinstance(error, MakiniError) and error.connection is None:
                error.connection = chain.connection
            self._fail(chain, error)
            if self._raise:
                raise error

    def stop(self) -> None:
        """Stop fetching, gracefully: the iteration ends once what was fetched has landed.

        No chain starts and requests in flight are dropped; pages already
        fetched are still delivered (and stored in the sink, checkpoint
        included), then the iteration ends. Chains not finished end
        ``CANCELLED`` and resume from their checkpoint on the next run. Safe to
        call at any time, from a signal handler's callback on the pull's loop.
        """
        self._stopping = True
        for task in self._workers:
            task.cancel()

    async def aclose(self) -> None:
        """Stop every request in flight and release everything. Idempotent.

        From another task than the one iterating, it cancels the workers and
        the iteration ends (its chains reported ``CANCELLED``).
        """
        gen = None if self._gen is None else self._gen()
        if gen is not None and not gen.ag_running:  # type: ignore[attr-defined]
            await gen.aclose()  # type: ignore[attr-defined]
        await self._shutdown()
        # A consumer waiting in another task wakes up and stops.
        self._queue.put_nowait((END, None, None))

    # -- the consumer side -------------------------------------------------------

    def _records(self) -> AsyncIterator[PulledRecord[R | InvalidRecord]]:
        return records_of(self._pages(), deliver_invalid=self._on_invalid == "deliver")

    async def _pages(self) -> AsyncIterator[PulledPage[R]]:
        if self._started or self._closed:
            msg = "a Pull can be iterated only once (and not after aclose); start a new pull"
            raise UsageError(msg)
        self._shared.ensure_open()
        self._started = True
        self.report.started_at = self._clock()
        queue = self._queue
        as_dicts = self._as_dicts
        checkpoints = self._checkpoints
        sink = self._sink
        has_store = checkpoints.store is not None
        texts = as_dicts and bool(getattr(sink, "reads_texts", False))
        try:
            await checkpoints.open()
            if has_store:
                self.report.state = await bind(
                    checkpoints, self._identity, self._chains, fresh=self._fresh
                )
            if sink is not None:
                await sink.open(list(dict.fromkeys(c.entity for c in self._chains)))
                report_failures(sink, self._landing_failed)
            if self._fresh and has_store:
                await start_over(checkpoints, sink, self._chains)
            self._live = self._concurrency
            telemetry = self._telemetry
            scope: Any = nullcontext()
            if telemetry is not None and telemetry.live():
                entities = [e.value for e in dict.fromkeys(c.entity for c in self._chains)]
                self._span = telemetry.start_pull(len(self._chains), entities)
                scope = telemetry.current(self._span)
            # Workers made while the pull's span is current trace their chains under it.
            with scope:
                self._workers = [
                    asyncio.create_task(self._worker(), name=f"makini-pull-{i}")
                    for i in range(self._concurrency)
                ]
            for task in self._workers:
                # A callback, not a finally: it runs for a task cancelled before it started.
                task.add_done_callback(self._worker_done)
            while True:
                kind, chain, payload = await queue.get()
                if kind == PAGE:
                    assert chain is not None  # noqa: S101 - invariant of the queue protocol
                    got = await receive(
                        chain,
                        payload,
                        as_dicts=as_dicts,
                        dedupe=self._dedupe,
                        on_invalid=self._on_invalid,
                        texts=texts,
                    )
                    # No reference to a parsed page may outlive this step (see parse).
                    del payload
                    if got is None:
                        continue
                    pulled, page_size = got
                    del got
                    next_cursor = pulled.next_cursor
                    state = (
                        checkpoints.after(chain, next_cursor, page_size, pulled.records)
                        if has_store
                        else None
                    )
                    if sink is not None:
                        if not await self._store(sink, chain, pulled, state):
                            continue
                        if pulled.texts is not None:
                            # The texts were the sink's: they hold the page's whole body.
                            pulled = attrs.evolve(pulled, texts=None)
                    self._current = chain
                    yield pulled
                    # The consumer asked for more: that page is handled (unless it
                    # failed the chain instead: then its checkpoint stays before it).
                    self._current = None
                    del pulled
                    committed = not chain.done and (
                        state is None or await self._commit(checkpoints, chain, state)
                    )
                    if committed and next_cursor is None:
                        chain.complete(self._clock(), self._telemetry)
                elif kind == FAILED:
                    assert chain is not None  # noqa: S101
                    if chain.done:
                        continue  # ended by the consumer already
                    self._fail(chain, payload)
                    if self._raise:
                        raise payload
                elif kind == RESTART:
                    assert chain is not None  # noqa: S101
                    await restart(chain, payload, checkpoints, sink)
                else:
                    return
        finally:
            await self._shutdown()

    async def _store(self, sink: Sink, chain: Chain, page: PulledPage[Any], state: Any) -> bool:
        """Write a page to the sink; a :class:`SinkError` fails only its chain."""
        return await self._chain_step(chain, sink.write(page, state), SinkError)

    async def _commit(self, checkpoints: Checkpoints, chain: Chain, state: Any) -> bool:
        """Save a chain's cursor; a :class:`CheckpointError` fails only that chain.

        Its page was delivered but its cursor not saved: it comes again on the
        next run (at least once), and the other chains go on.
        """
        return await self._chain_step(chain, checkpoints.commit(chain, state), CheckpointError)

    async def _chain_step(
        self, chain: Chain, step: Awaitable[None], errors: type[MakiniError]
    ) -> bool:
        """Await one step of a chain's page; ``errors`` fail only that chain (False)."""
        try:
            await step
        except errors as exc:
            if exc.connection is None:
                exc.connection = chain.connection
            self._fail(chain, exc)
            if self._raise:
                raise
            return False
        return True

    def _landing_failed(self, connection: str, entity: Entity, error: SinkError) -> None:
        """A page the sink took earlier failed to commit: its chain ends with ``error``."""
        for chain in self._chains:
            if chain.connection == connection and chain.entity is entity:
                if chain.outcome is not Outcome.FAILED:
                    self._fail(chain, error)
                return

    def _fail(self, chain: Chain, error: BaseException) -> None:
        chain.fail(error, self._clock(), self._telemetry)

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        now = self._clock()
        for chain in self._chains:
            if not chain.done:
                chain.outcome = Outcome.CANCELLED
                chain.finished_at = now if chain.started_at is not None else None
        self.report.finished_at = now
        span, self._span = self._span, None
        if span is not None and self._telemetry is not None:
            self._telemetry.end_pull(span, self.report, self._chains)
        try:
            if self._sink is not None and self._started:
                # First: a sink that commits its own states flushes them with its data.
                await self._sink.close()
        finally:
            await self._checkpoints.close(owned=self._owns_store)

    # -- the producer side ----------------------------------------------------------

    async def _worker(self) -> None:
        # One iterator shared by the workers: each takes the next chain in order.
        for chain in self._pending:
            if self._stopping:
                break
            await run_chain(chain, self._queue, self._checkpoints, self._run)

    def _worker_done(self, _task: asyncio.Task[None]) -> None:
        self._live -= 1
        if self._live == 0 and not self._closed:
            self._queue.put_nowait((END, None, None))
