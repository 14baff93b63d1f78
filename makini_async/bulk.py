"""Bulk pulls: entities from many connections, with checkpoints and resume.

::

    async with MakiniPool() as pool:
        async with pool.pull(["work-orders", "assets"], tokens, checkpoint="pull.sqlite") as pull:
            async for item in pull:            # PulledRecord(connection, entity, record)
                handle(item)
        print(pull.report.summary())

Every (connection, entity) pair is a *chain*: its pages are walked in order,
one at a time; up to ``concurrency`` chains run at once. Pages pass to the
consumer through a bounded queue, so a slow consumer slows the fetching and
memory stays flat whatever the number of connections; each chain may fetch
its next page while the consumer works on the previous one.

Delivery is **at least once** across restarts and exactly once within a run:

* the checkpoint records, per chain, the cursor after the last page the
  consumer has *finished with* (asked for the next item after), so a process
  killed at any instant re-delivers at most the pages it had in hand;
* within one run, records are de-duplicated by id per chain (``dedupe``).

A record that does not fit its model never ends its chain: by default it is
delivered as an :class:`~makini_async.models.InvalidRecord` (the data as
sent, the field path, the reason, the request ID) and counted in the report
(``on_invalid`` chooses ``"skip"`` or ``"raise"`` instead).

A failing, stalled or reauthorization-needing connection only ends its own
chains: the report says what happened, the other chains carry on
(``raise_on_error=True`` raises the first failure instead).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import enum
import functools
import itertools
import logging
import operator
import time
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import attrs

from makini_async._sansio import format_when
from makini_async.checkpoint import ChainState, CheckpointStore, open_checkpoint
from makini_async.connection import Connection, Tally, check_on_invalid
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import (
    CheckpointError,
    CircuitOpenError,
    MakiniError,
    MalformedResponse,
    ReauthorizationRequired,
    UsageError,
)
from makini_async.models import InvalidRecord
from makini_async.pagination import CursorGuard, Page, RawPage, report_invalid

if TYPE_CHECKING:
    import os
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Iterator,
        Sequence,
    )
    from types import TracebackType

    from makini_async.models import OnInvalid
    from makini_async.pool import MakiniPool

__all__ = [
    "ChainReport",
    "Outcome",
    "Pull",
    "PullReport",
    "PulledPage",
    "PulledRecord",
    "pull",
]

logger = logging.getLogger("makini_async")

DEFAULT_OVERLAP: Final = 300.0

ConnectionSpec = str | Connection | tuple[str, str]


class Outcome(str, enum.Enum):
    """How a chain ended (or where it stands)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    SKIPPED = "skipped"  # refused by the connection's open circuit breaker
    CANCELLED = "cancelled"


_FINAL = frozenset(
    {
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.REAUTHORIZATION_REQUIRED,
        Outcome.SKIPPED,
        Outcome.CANCELLED,
    }
)


@attrs.define(slots=True, kw_only=True, weakref_slot=False)
class ChainReport:
    """Live state and final outcome of one (connection, entity) chain."""

    connection: str
    entity: Entity
    outcome: Outcome = Outcome.PENDING
    records: int = 0
    pages: int = 0
    invalid: int = 0
    retries: int = 0
    rate_limited: int = 0
    resumed: bool = False
    modified_after: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: BaseException | None = None

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def done(self) -> bool:
        return self.outcome in _FINAL


@attrs.define(slots=True)
class PullReport:
    """Every chain's report plus totals; live during the pull, final after it."""

    chains: list[ChainReport] = attrs.field(factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)

    @property
    def pages(self) -> int:
        return sum(c.pages for c in self.chains)

    @property
    def invalid(self) -> int:
        """Records that did not fit their model (delivered or skipped, never lost)."""
        return sum(c.invalid for c in self.chains)

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.chains)

    @property
    def rate_limited(self) -> int:
        return sum(c.rate_limited for c in self.chains)

    @property
    def records_per_second(self) -> float:
        elapsed = self.elapsed
        return self.records / elapsed if elapsed > 0 else 0.0

    def _by_connection(self) -> dict[str, list[ChainReport]]:
        out: dict[str, list[ChainReport]] = collections.defaultdict(list)
        for chain in self.chains:
            out[chain.connection].append(chain)
        return out

    @property
    def connections_total(self) -> int:
        return len({c.connection for c in self.chains})

    @property
    def connections_done(self) -> int:
        return sum(all(c.done for c in cs) for cs in self._by_connection().values())

    @property
    def failed_connections(self) -> list[str]:
        """Connections with at least one chain that did not complete (sorted)."""
        return sorted(
            {c.connection for c in self.chains if c.done and c.outcome is not Outcome.COMPLETED}
        )

    @property
    def ok(self) -> bool:
        return all(c.outcome is Outcome.COMPLETED for c in self.chains)

    def outcomes(self) -> dict[Outcome, int]:
        """Number of chains per outcome."""
        counts = collections.Counter(c.outcome for c in self.chains)
        return {o: counts[o] for o in Outcome if counts[o]}

    def summary(self) -> str:
        """A plain-text summary: totals, then every chain that did not complete."""
        lines = [
            (
                f"{self.connections_done}/{self.connections_total} connections done, "
                f"{self.records} records in {self.pages} pages, {self.elapsed:.1f}s "
                f"({self.records_per_second:,.0f} records/s), {self.invalid} invalid records, "
                f"{self.retries} retries, {self.rate_limited} rate-limited answers"
            ),
            "outcomes: " + ", ".join(f"{o.value}={n}" for o, n in self.outcomes().items()),
        ]
        for chain in self.chains:
            if chain.done and chain.outcome is not Outcome.COMPLETED:
                reason = f": {chain.error}" if chain.error is not None else ""
                lines.append(
                    f"  {chain.connection} {chain.entity.value}: {chain.outcome.value}"
                    f" after {chain.records} records{reason}"
                )
        return "\n".join(lines)


class PulledRecord(NamedTuple):
    """One record and where it came from (the connection's name, never its token).

    A named tuple: the cheapest immutable object Python builds, since a pull
    makes one per record.
    """

    connection: str
    entity: Entity
    record: Any


@attrs.frozen(slots=True)
class PulledPage:
    """One page and where it came from.

    ``invalid`` holds the page's records that do not fit their model, as the
    API sent them; whatever the ``on_invalid`` policy, a page carries them.
    """

    connection: str
    entity: Entity
    records: list[Any]
    cursor: str | None
    next_cursor: str | None
    request_id: str | None
    invalid: tuple[InvalidRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.records)


@attrs.define(slots=True, kw_only=True, eq=False, weakref_slot=False)
class _Chain(ChainReport):
    """A chain's report plus the pull's working state: one object per chain."""

    conn: Connection = attrs.field(repr=False)
    state: ChainState | None = attrs.field(default=None, repr=False)
    seen: set[str] | None = attrs.field(default=None, repr=False)
    run_started_at: str | None = attrs.field(default=None, repr=False)
    resumed_records: int = attrs.field(default=0, repr=False)


class _ChainEnded(Exception):
    """Handed to a worker whose chain the consumer has ended (:meth:`Pull.fail`)."""


# Users see these objects in PullReport.chains: they print as what they are to them.
_Chain.__qualname__ = "ChainReport"


_new_pulled_record: Final = functools.partial(tuple.__new__, PulledRecord)

_ITEM_ID: Final = operator.itemgetter("id")
_ATTR_ID: Final = operator.attrgetter("id")
# The ids a dict record may carry; ``bool`` is an int but never an id.
_ID_TYPES: Final = frozenset({str, int})

_PAGE: Final = 0
_FAILED: Final = 1
_END: Final = 2


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class Pull:
    """A bulk pull in progress. Iterate it once; use it as ``async with`` for prompt cleanup."""

    def __init__(
        self,
        pool: MakiniPool,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        modified_after: dt.datetime | dt.date | str | None = None,
        checkpoint: str | os.PathLike[str] | CheckpointStore | None = None,
        concurrency: int | None = None,
        as_dicts: bool | None = None,
        dedupe: bool = True,
        raise_on_error: bool = False,
        on_invalid: OnInvalid = "deliver",
        since_sync_status: bool = False,
        overlap: float = DEFAULT_OVERLAP,
        wall_clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        ents = _entities(entities)
        conns = _connections(pool, connections)
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            msg = f"concurrency must be an integer >= 1, got {concurrency!r}"
            raise UsageError(msg)
        check_on_invalid(on_invalid)
        self._pool = pool
        self._on_invalid: OnInvalid = on_invalid
        self._modified_after = (
            None if modified_after is None else format_when(modified_after, name="modified_after")
        )
        self._owns_store = checkpoint is not None and not isinstance(checkpoint, CheckpointStore)
        self._store: CheckpointStore | None = (
            None if checkpoint is None else open_checkpoint(checkpoint)
        )
        self._as_dicts = pool.as_dicts if as_dicts is None else as_dicts
        self._dedupe = dedupe
        self._raise = raise_on_error
        self._since_sync_status = since_sync_status
        self._overlap = dt.timedelta(seconds=overlap)
        self._wall = wall_clock
        self._run_start_cache: tuple[int, str] = (-1, "")
        self._chains = tuple(
            _Chain(conn=conn, connection=conn.name, entity=ent) for conn in conns for ent in ents
        )
        # The report's list is the user's to sort or filter; workers keep their own tuple.
        self.report = PullReport(list[ChainReport](self._chains))
        self._concurrency = min(concurrency or pool.limits.max_in_flight, len(self._chains)) or 1
        # Unbounded, yet bounded by the protocol: each worker has at most one page
        # in it, and waits until the consumer has parsed that page.
        self._queue: asyncio.Queue[tuple[int, _Chain | None, Any]] = asyncio.Queue()
        self._next_chain = 0  # chains start in order: the index of the next one
        self._current: _Chain | None = None  # the chain of the page the consumer holds
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0
        self._started = False
        self._closed = False
        self._gen: AsyncIterator[Any] | None = None

    # -- public iteration ------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[PulledRecord]:
        gen = self._records()
        self._gen = gen
        return gen

    def pages(self) -> AsyncIterator[PulledPage]:
        """Iterate pages instead of records (fewer objects: the fastest way)."""
        gen = self._pages()
        self._gen = gen
        return gen

    async def run(
        self, on_page: Callable[[PulledPage], Awaitable[None] | None] | None = None
    ) -> PullReport:
        """Pull everything, calling ``on_page`` for each page; return the report."""
        async for page in self.pages():
            if on_page is not None:
                result = on_page(page)
                if result is not None:
                    await result
        return self.report

    async def __aenter__(self) -> Pull:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def fail(self, page: PulledPage, error: BaseException) -> None:
        """End the chain ``page`` came from with ``error``: the consumer cannot take it.

        For a consumer that could not store a page (a record it cannot
        serialise, a full disk): the chain's checkpoint stays before this page,
        so a later run delivers it again, and every other chain goes on. Call
        it before asking for the next item.
        """
        chain = self._current
        if chain is None or (chain.connection, chain.entity) != (page.connection, page.entity):
            chain = next(
                (
                    c
                    for c in self._chains
                    if (c.connection, c.entity) == (page.connection, page.entity)
                ),
                None,
            )
        if chain is None:
            msg = f"no chain {page.connection} {page.entity.value} in this pull"
            raise UsageError(msg)
        if not chain.done:
            if isinstance(error, MakiniError) and error.connection is None:
                error.connection = chain.connection
            self._fail(chain, error)
            if self._raise:
                raise error

    async def aclose(self) -> None:
        """Stop every request in flight and release everything. Idempotent."""
        gen = self._gen
        if gen is not None:
            await gen.aclose()  # type: ignore[attr-defined]
        await self._shutdown()

    # -- the consumer side -------------------------------------------------------

    async def _records(self) -> AsyncIterator[PulledRecord]:
        pages = self._pages()
        try:
            while True:
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    return
                # Build the page's PulledRecords in C (map/zip/tuple.__new__): half
                # the cost of calling the named tuple's constructor per record.
                items: Iterator[PulledRecord] = map(
                    _new_pulled_record,
                    zip(repeat(page.connection), repeat(page.entity), page.records),
                )
                if page.invalid and self._on_invalid == "deliver":
                    # After the page's records: what the API sent, typed as what it is.
                    items = itertools.chain(
                        items,
                        [PulledRecord(page.connection, page.entity, i) for i in page.invalid],
                    )
                # Drop every reference to the page before the next await (see _parse).
                del page
                item: PulledRecord | None
                for item in items:
                    yield item
                del items
                item = None
        finally:
            await pages.aclose()  # type: ignore[attr-defined]

    async def _pages(self) -> AsyncIterator[PulledPage]:
        if self._started or self._closed:
            msg = "a Pull can be iterated only once (and not after aclose); start a new pull"
            raise UsageError(msg)
        self._pool.ensure_open()
        self._started = True
        self.report.started_at = time.monotonic()
        self._live = self._concurrency
        self._workers = [
            asyncio.create_task(self._worker(), name=f"makini-pull-{i}")
            for i in range(self._concurrency)
        ]
        queue = self._queue
        as_dicts = self._as_dicts
        try:
            while True:
                kind, chain, payload = await queue.get()
                if kind == _PAGE:
                    assert chain is not None  # noqa: S101 - invariant of the queue protocol
                    raw, handed = payload
                    if chain.done:  # ended by the consumer (fail): stop its worker
                        handed.set_exception(_ChainEnded())
                        continue
                    try:
                        page = await self._parse(chain, raw, as_dicts)
                        records = page.records
                        invalid = page.invalid
                        if self._dedupe:
                            records, invalid = self._fresh(
                                chain, records, invalid, as_dicts, page.request_id
                            )
                        if invalid:
                            report_invalid(invalid, self._on_invalid)
                    except Exception as exc:  # noqa: BLE001 - the chain's failure, not the pull's
                        # The worker fetches again (malformed) or reports the chain.
                        if not handed.done():
                            handed.set_exception(exc)
                        continue
                    # Let the chain fetch its next page while this one is consumed.
                    if not handed.done():
                        handed.set_result((page.next_cursor, page.page_size, page.request_id))
                    report: ChainReport = chain
                    report.records += len(records)
                    report.pages += 1
                    pulled = PulledPage(
                        report.connection,
                        chain.entity,
                        records,
                        page.cursor,
                        page.next_cursor,
                        page.request_id,
                        invalid,
                    )
                    if invalid:
                        report.invalid += len(invalid)
                    # No reference to a parsed page may outlive this step (see _parse).
                    del page, records, invalid, payload, raw
                    self._current = chain
                    yield pulled
                    # The consumer asked for more: that page is handled (unless it
                    # failed the chain instead: then its checkpoint stays before it).
                    self._current = None
                    next_cursor = pulled.next_cursor
                    del pulled
                    if chain.done:
                        pass
                    elif next_cursor is not None:
                        self._save_cursor(chain, next_cursor)
                    else:
                        self._complete(chain)
                elif kind == _FAILED:
                    assert chain is not None  # noqa: S101
                    if chain.done:
                        continue  # ended by the consumer already
                    self._fail(chain, payload)
                    if self._raise:
                        raise payload
                else:
                    return
        finally:
            await self._shutdown()

    @staticmethod
    async def _parse(chain: _Chain, raw: RawPage | Page[Any], as_dicts: bool) -> Page[Any]:  # noqa: FBT001
        """Parse (and structure) a page in the consumer, right before it is used.

        Parsed pages are many small objects. Parsed in the workers they would
        stay alive across awaits, get promoted to the GC's oldest generation
        and make every collection slower (about a third of the throughput);
        parsed here, they die young.
        """
        if isinstance(raw, Page):
            return raw  # fetched again by the worker with fetch_page: finished already
        page = chain.conn.parse_page_bytes(raw)
        return await chain.conn.finish_page(page, as_dicts=as_dicts)

    @staticmethod
    def _fresh(
        chain: _Chain,
        records: list[Any],
        invalid: tuple[InvalidRecord, ...],
        as_dicts: bool,  # noqa: FBT001
        request_id: str | None,
    ) -> tuple[list[Any], tuple[InvalidRecord, ...]]:
        """``records`` and ``invalid`` less any id this chain already delivered in this run.

        A dict record without a usable id (text or an integer) cannot be
        de-duplicated: it joins ``invalid``, whole.
        """
        get_id = _ITEM_ID if as_dicts else _ATTR_ID
        try:
            fresh = set(map(get_id, records))
        except (KeyError, TypeError, AttributeError):
            fresh = None
        if fresh is not None and as_dicts and not {*map(type, fresh)} <= _ID_TYPES:
            fresh = None
        if fresh is None:
            records, no_id = _without_id(chain, records, request_id)
            invalid = (*invalid, *no_id)
            fresh = set(map(get_id, records))
        seen = chain.seen
        if len(fresh) == len(records) and not invalid:  # the common case, all in C
            if seen is None:
                chain.seen = fresh
                return records, invalid
            if seen.isdisjoint(fresh):
                seen |= fresh
                return records, invalid
        if seen is None:
            seen = chain.seen = set()
        keep: list[Any] = []
        for rid, record in zip(map(get_id, records), records, strict=True):
            if rid not in seen:
                seen.add(rid)
                keep.append(record)
        if invalid:
            # An invalid record that has an id is de-duplicated like the others.
            kept: list[InvalidRecord] = []
            for item in invalid:
                rid = item.id
                if rid is None or rid not in seen:
                    if rid is not None:
                        seen.add(rid)
                    kept.append(item)
            invalid = tuple(kept)
        return keep, invalid

    def _save_cursor(self, chain: _Chain, cursor: str) -> None:
        if self._store is None:
            return
        state = chain.state or ChainState()
        chain.state = attrs.evolve(
            state,
            in_progress=True,
            cursor=cursor,
            records=chain.resumed_records + chain.records,
        )
        self._store.save(chain.connection, chain.entity.value, chain.state)

    def _complete(self, chain: _Chain) -> None:
        report: ChainReport = chain
        report.outcome = Outcome.COMPLETED
        report.finished_at = time.monotonic()
        chain.seen = None
        if self._store is not None:
            old = chain.state or ChainState()
            chain.state = ChainState(
                high_water=chain.run_started_at or old.high_water,
                fingerprint=chain.conn.fingerprint,
            )
            self._store.save(report.connection, chain.entity.value, chain.state)

    def _fail(self, chain: _Chain, error: BaseException) -> None:
        report: ChainReport = chain
        report.error = error
        report.finished_at = time.monotonic()
        chain.seen = None
        if isinstance(error, ReauthorizationRequired):
            report.outcome = Outcome.REAUTHORIZATION_REQUIRED
        elif isinstance(error, CircuitOpenError) and error.__cause__ is None:
            report.outcome = Outcome.SKIPPED
        else:
            report.outcome = Outcome.FAILED
        if not isinstance(error, MakiniError):
            logger.error(
                "chain %s %s failed with an unexpected error",
                report.connection,
                chain.entity.value,
                exc_info=error,
            )

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        now = time.monotonic()
        for chain in self._chains:
            if not chain.done:
                chain.outcome = Outcome.CANCELLED
                chain.finished_at = now if chain.started_at is not None else None
        self.report.finished_at = now
        if self._store is not None:
            self._store.flush()
            if self._owns_store:
                self._store.close()

    # -- the producer side ----------------------------------------------------------

    async def _worker(self) -> None:
        try:
            chains = self._chains
            while (index := self._next_chain) < len(chains):
                self._next_chain = index + 1
                await self._run_chain(chains[index])
        finally:
            self._live -= 1
            if self._live == 0 and not self._closed:
                self._queue.put_nowait((_END, None, None))

    async def _run_chain(self, chain: _Chain) -> None:
        report: ChainReport = chain
        report.outcome = Outcome.RUNNING
        report.started_at = time.monotonic()
        tally = Tally()
        conn = chain.conn
        entity = chain.entity
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            cursor, modified_after = await self._plan(chain)
            guard = CursorGuard(cursor, connection=report.connection)
            page_size = conn.page_size_for(entity)
            while True:
                item: RawPage | Page[Any] = await conn.fetch_page_bytes(
                    entity,
                    cursor=cursor,
                    page_size=page_size,
                    modified_after=modified_after,
                    tally=tally,
                )
                handed: asyncio.Future[tuple[str | None, int, str | None]] = loop.create_future()
                queue.put_nowait((_PAGE, chain, (item, handed)))
                del item
                try:
                    next_cursor, page_size, request_id = await handed
                except MalformedResponse:
                    # Rare: fetch again, parsing (and structuring) here so a bad
                    # body is retried. The consumer takes this page as it is.
                    item = await conn.fetch_page(
                        entity,
                        cursor=cursor,
                        page_size=page_size,
                        modified_after=modified_after,
                        as_dicts=self._as_dicts,
                        tally=tally,
                    )
                    handed = loop.create_future()
                    queue.put_nowait((_PAGE, chain, (item, handed)))
                    del item
                    next_cursor, page_size, request_id = await handed
                report.retries = tally.retries
                report.rate_limited = tally.rate_limited
                if next_cursor is None:
                    return  # the consumer completes the chain once it is done with the page
                guard.advance(next_cursor, request_id)
                # A page that had to shrink (timeout, clamp) keeps the smaller size.
                cursor = next_cursor
        except asyncio.CancelledError:
            raise
        except _ChainEnded:
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported per chain
            # Including the consumer's, handed back here: all name their connection.
            if isinstance(exc, MakiniError) and exc.connection is None:
                exc.connection = report.connection
            report.retries = tally.retries
            report.rate_limited = tally.rate_limited
            queue.put_nowait((_FAILED, chain, exc))

    async def _plan(self, chain: _Chain) -> tuple[str | None, str | None]:
        """The cursor and filter this chain starts from, saving a run start."""
        report: ChainReport = chain
        state = None
        fingerprint = chain.conn.fingerprint if self._store is not None else None
        if self._store is not None:
            state = self._store.load(report.connection, chain.entity.value)
        if state is not None and state.fingerprint not in (None, fingerprint):
            msg = (
                f"the checkpoint of {report.connection} {chain.entity.value} was written for "
                "another token: was the name given to a different customer? Use a new "
                "checkpoint, or the name it had"
            )
            raise CheckpointError(msg, connection=report.connection)
        if state is not None and state.in_progress:
            if (
                self._modified_after is not None
                and self._modified_after != state.run_modified_after
            ):
                logger.warning(
                    "%s %s: resuming the interrupted run with its own modified_after=%s, "
                    "not %s (a cursor is only valid with the filter it was made with)",
                    report.connection,
                    chain.entity.value,
                    state.run_modified_after,
                    self._modified_after,
                )
            report.resumed = True
            chain.resumed_records = state.records
            report.modified_after = state.run_modified_after
            chain.state = attrs.evolve(state, fingerprint=fingerprint)
            chain.run_started_at = state.run_started_at
            return state.cursor, state.run_modified_after
        modified_after = self._modified_after
        if modified_after is None and state is not None:
            modified_after = state.high_water
        if modified_after is None and self._since_sync_status:
            status = await chain.conn.sync_status()
            entry = status.entities.get(chain.entity.value)
            if entry is not None and entry.last_synced_at is not None:
                modified_after = _iso(entry.last_synced_at)
        report.modified_after = modified_after
        if self._store is not None:
            chain.run_started_at = self._run_start()
            chain.state = ChainState(
                in_progress=True,
                run_modified_after=modified_after,
                run_started_at=chain.run_started_at,
                high_water=state.high_water if state is not None else None,
                fingerprint=fingerprint,
            )
            self._store.save(report.connection, chain.entity.value, chain.state)
        return None, modified_after

    def _run_start(self) -> str:
        """The next high-water mark: now less the overlap (formatted once a second)."""
        now = self._wall()
        second = int(now.timestamp())
        if self._run_start_cache[0] != second:
            self._run_start_cache = (second, _iso(now - self._overlap))
        return self._run_start_cache[1]


def _without_id(
    chain: _Chain, records: list[Any], request_id: str | None
) -> tuple[list[Any], list[InvalidRecord]]:
    """Split dict records into those with a usable id and invalid ones (the slow path)."""
    keep: list[Any] = []
    invalid: list[InvalidRecord] = []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else getattr(record, "id", None)
        if type(rid) in _ID_TYPES:
            keep.append(record)
        else:
            reason = "required field is missing" if rid is None else "not a usable id"
            invalid.append(
                InvalidRecord(
                    entity=chain.entity,
                    data=record,
                    field="id",
                    reason=f"{reason}; a record needs one to be de-duplicated",
                    request_id=request_id,
                    connection=chain.connection,
                )
            )
    return keep, invalid


def pull(
    pool: MakiniPool,
    entities: EntityLike | Iterable[EntityLike],
    connections: Iterable[ConnectionSpec],
    **options: Any,
) -> Pull:
    """Start describing a bulk pull; see :class:`Pull` for the options."""
    return Pull(pool, entities, connections, **options)


def _entities(value: EntityLike | Iterable[EntityLike]) -> list[Entity]:
    items: Sequence[EntityLike] = [value] if isinstance(value, (str, Entity)) else list(value)
    if not items:
        msg = "pull needs at least one entity"
        raise UsageError(msg)
    out: list[Entity] = []
    for item in items:
        try:
            entity = to_entity(item)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if entity not in out:
            out.append(entity)
    return out


def _connections(pool: MakiniPool, specs: Iterable[ConnectionSpec]) -> list[Connection]:
    out: list[Connection] = []
    names: set[str] = set()
    for spec in specs:
        if isinstance(spec, Connection):
            conn = spec
        elif isinstance(spec, tuple) and len(spec) == 2:
            name, token = spec
            conn = pool.connection(token, name=name)
        elif isinstance(spec, str):
            conn = pool.connection(spec)
        else:
            kind = type(spec).__name__
            msg = f"a connection must be a token, a (name, token) pair or a Connection, not {kind}"
            raise UsageError(msg)
        if conn.name in names:
            if any(c is conn for c in out):
                continue
            msg = f"two connections share the name {conn.name!r}; names must be unique"
            raise UsageError(msg)
        names.add(conn.name)
        out.append(conn)
    if not out:
        msg = "pull needs at least one connection"
        raise UsageError(msg)
    return out
