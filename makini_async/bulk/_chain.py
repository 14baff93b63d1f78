"""One bulk-pull chain's working state, its de-duplication, and its checkpoints.

A *chain* is one (connection, entity) pair of a pull. :class:`Chain` is its
report (what users see in ``PullReport.chains``) plus the pull's working
state; :class:`Checkpoints` decides where a chain starts (a resumed cursor, an
incremental high-water mark) and records how far the consumer has got.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from makini_async._client.keys import recover_legacy
from makini_async.bulk._dedupe import RecentIds, fresh
from makini_async.bulk._marks import FUTURE, canonical, earlier, newest
from makini_async.bulk._report import ChainReport, Outcome
from makini_async.bulk._sink import forget
from makini_async.checkpoint import ChainState
from makini_async.connection import Connection
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import (
    CheckpointError,
    CircuitOpenError,
    MakiniError,
    ReauthorizationRequired,
    UsageError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from makini_async._client.shared import Shared
    from makini_async.bulk._sink import Sink
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore
    from makini_async.telemetry._otel import Telemetry

__all__ = [
    "Chain",
    "ChainEnded",
    "Checkpoints",
    "ConnectionSource",
    "ConnectionSpec",
    "connections_of",
    "entities_of",
    "fresh",
    "iso",
]

logger = logging.getLogger("makini_async")


@attrs.define(slots=True, kw_only=True, eq=False, weakref_slot=False, repr=False)
class Chain(ChainReport):
    """A chain's report plus the pull's working state: one object per chain."""

    conn: Connection = attrs.field(repr=False)
    state: ChainState | None = attrs.field(default=None, repr=False)
    seen: RecentIds | None = attrs.field(default=None, repr=False)
    run_started_at: str | None = attrs.field(default=None, repr=False)
    #: Records counted before this run's delivered ones in the checkpoint's ``records``
    #: (an interrupted run's; negative after a restart, which counts from zero again).
    resumed_records: int = attrs.field(default=0, repr=False)
    #: The newest ``updated_at`` this run has landed (canonical UTC text), for the mark.
    newest: str | None = attrs.field(default=None, repr=False)
    deferred_for: float = attrs.field(default=0.0, repr=False)
    #: The chain's OpenTelemetry span while it runs (``makini_async.telemetry``).
    span: Any = attrs.field(default=None, repr=False, eq=False)

    def __repr__(self) -> str:
        # Users see these objects in PullReport.chains: they print as the report they are.
        shown = (a for a in attrs.fields(ChainReport) if a.repr)
        return f"ChainReport({', '.join(f'{a.name}={getattr(self, a.name)!r}' for a in shown)})"

    def complete(self, now: float, telemetry: Telemetry | None) -> None:
        """The chain reached its last page and saved it."""
        self.outcome = Outcome.COMPLETED
        self._ended(now, telemetry)

    def fail(self, error: BaseException, now: float, telemetry: Telemetry | None) -> None:
        """The chain ends with ``error``: failed, skipped (an open breaker) or reauthorization."""
        self.error = error
        if isinstance(error, ReauthorizationRequired):
            self.outcome = Outcome.REAUTHORIZATION_REQUIRED
        elif isinstance(error, CircuitOpenError) and error.__cause__ is None:
            self.outcome = Outcome.SKIPPED
        else:
            self.outcome = Outcome.FAILED
        self._ended(now, telemetry)
        if not isinstance(error, MakiniError):
            logger.error(
                "chain %s %s failed with an unexpected error",
                self.connection,
                self.entity.value,
                exc_info=error,
            )

    def _ended(self, now: float, telemetry: Telemetry | None) -> None:
        self.finished_at = now
        self.seen = None
        if self.span is not None and telemetry is not None:
            telemetry.end_chain(self)


class ChainEnded(Exception):
    """Handed to a worker whose chain the consumer has ended (``Pull.fail``)."""


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


# -- checkpoints ---------------------------------------------------------------------------


class Checkpoints:
    """Where each chain of a pull starts, and how far its consumer has got.

    Without a store, chains start at the beginning with the pull's filter and
    nothing is recorded. The store may be synchronous (SQLite, JSON) or a
    coroutine one (PostgreSQL). With ``sink_commits``, a sink commits each
    page's state with the page itself: this class only computes the states
    (:meth:`after`) and still saves each chain's start.

    A complete run's high-water mark is the newest ``updated_at`` it landed,
    less the overlap (the server's clock, never this machine's); a run that
    landed none keeps the mark it had. ``since_sync_status`` takes each run's
    ``modified_after`` from the sync-status endpoint instead (less the overlap).
    """

    __slots__ = (
        "_async",
        "_limit",
        "_modified_after",
        "_overlap",
        "_since_sync_status",
        "_wall",
        "sink_commits",
        "store",
    )

    def __init__(
        self,
        store: CheckpointStore | AsyncCheckpointStore | None,
        *,
        sink_commits: bool = False,
        modified_after: str | None,
        overlap: float,
        since_sync_status: bool,
        wall_clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self._modified_after = modified_after
        self._overlap = dt.timedelta(seconds=overlap)
        self._since_sync_status = since_sync_status
        self._wall = wall_clock
        self._limit = canonical(wall_clock() + FUTURE)
        self._async = store is not None and inspect.iscoroutinefunction(store.save)
        self.sink_commits = sink_commits

    async def open(self) -> None:
        # Only to tell a source's "no date" sentinel from a modification time.
        self._limit = canonical(self._wall() + FUTURE)
        if self._async:
            await self.store.open()  # type: ignore[union-attr]

    async def _load(self, connection: str, entity: str) -> ChainState | None:
        store: Any = self.store
        state = store.load(connection, entity)
        return await state if self._async else state  # type: ignore[no-any-return]

    async def _save(self, connection: str, entity: str, state: ChainState) -> None:
        store: Any = self.store
        if self._async:
            await store.save(connection, entity, state)
        else:
            store.save(connection, entity, state)

    async def close(self, *, owned: bool) -> None:
        """Flush the store and, if the pull opened it, close it."""
        store: Any = self.store
        if store is None:
            return
        if self._async:
            await store.flush()
            if owned:
                await store.close()
            return
        store.flush()
        if owned:
            store.close()

    async def plan(self, chain: Chain) -> tuple[str | None, str | None, int | None]:
        """The cursor, filter and learnt page size this chain starts from; saves a run start."""
        store = self.store
        entity = chain.entity.value
        state = None
        fingerprint = chain.conn.fingerprint if store is not None else None
        if store is not None:
            state = await self._load(chain.connection, entity)
            state = await recover_legacy(
                chain.connection, chain.conn.token, state, lambda name: self._load(name, entity)
            )
        if state is not None and state.fingerprint not in (None, fingerprint):
            msg = (
                f"the checkpoint of {chain.connection} {entity} was written for "
                "another token: was the name given to a different customer? Use a new "
                "checkpoint, or the name it had"
            )
            raise CheckpointError(msg, connection=chain.connection)
        if state is not None and state.in_progress:
            if (
                self._modified_after is not None
                and self._modified_after != state.run_modified_after
            ):
                logger.warning(
                    "%s %s: resuming the interrupted run with its own modified_after=%s, "
                    "not %s (a cursor is only valid with the filter it was made with)",
                    chain.connection,
                    entity,
                    state.run_modified_after,
                    self._modified_after,
                )
            chain.resumed = True
            chain.start = "resumed"
            chain.resumed_from = chain.resumed_records = state.records
            chain.modified_after = state.run_modified_after
            if state.run_modified_after is not None:
                chain.modified_after_source = "checkpoint"
            chain.newest = state.run_newest
            chain.state = attrs.evolve(state, fingerprint=fingerprint)
            chain.run_started_at = state.run_started_at
            return state.cursor, state.run_modified_after, state.page_size
        modified_after, source = self._modified_after, "argument"
        if modified_after is None and self._since_sync_status:
            status = await chain.conn.sync_status()
            entry = status.entities.get(entity)
            if entry is not None and entry.last_synced_at is not None:
                synced = canonical(entry.last_synced_at)
                modified_after, source = earlier(synced, self._overlap) or synced, "sync-status"
        if modified_after is None and state is not None and state.high_water is not None:
            modified_after, source = state.high_water, "data"
        chain.modified_after = modified_after
        chain.start = "full" if modified_after is None else "incremental"
        chain.modified_after_source = None if modified_after is None else source
        if store is not None:
            chain.run_started_at = canonical(self._wall())
            chain.state = ChainState(
                in_progress=True,
                run_modified_after=modified_after,
                run_started_at=chain.run_started_at,
                high_water=state.high_water if state is not None else None,
                fingerprint=fingerprint,
            )
            await self._save(chain.connection, entity, chain.state)
        return None, modified_after, state.page_size if state is not None else None

    def after(
        self,
        chain: Chain,
        next_cursor: str | None,
        page_size: int | None,
        records: list[Any] | None = None,
    ) -> ChainState | None:
        """The chain's state once the consumer is done with the page before ``next_cursor``.

        ``records`` are that page's (their newest ``updated_at`` makes the
        mark). ``next_cursor=None`` means that page was the last: the state of
        a complete run.
        """
        if self.store is None:
            return None
        if records:
            chain.newest = newest(records, chain.newest, self._limit)
        old = chain.state or ChainState()
        if next_cursor is None:
            mark = None if chain.newest is None else earlier(chain.newest, self._overlap)
            return ChainState(
                high_water=mark if mark is not None else old.high_water,
                fingerprint=chain.conn.fingerprint,
                page_size=old.page_size,
            )
        return attrs.evolve(
            old,
            in_progress=True,
            cursor=next_cursor,
            records=chain.resumed_records + chain.records,
            page_size=page_size if page_size is not None else old.page_size,
            run_newest=chain.newest,
        )

    async def commit(self, chain: Chain, state: ChainState | None) -> None:
        """Record ``state`` (from :meth:`after`) unless the sink committed it already."""
        if state is None:
            return
        chain.state = state
        if not self.sink_commits:
            await self._save(chain.connection, chain.entity.value, state)

    async def restart(self, chain: Chain, sink: Sink | None) -> None:
        """Take ``chain`` back to the start of its run: the API rejected its cursor.

        The sink first forgets what the chain landed (if it can), then the
        checkpoint goes back to the run's start with the run's own filter,
        so a crash in between starts the chain again, never past a record.
        The chain's de-duplication starts afresh, as the records come again.
        """
        if sink is not None:
            await forget(sink, chain.connection, chain.entity)
        chain.restarts += 1
        chain.seen = None
        chain.newest = None
        if chain.total is not None:
            # This run now delivers what it had, plus the whole listing again.
            chain.total += chain.records + chain.resumed_records
        chain.resumed_records = -chain.records  # the checkpoint counts from zero again
        if self.store is not None:
            old = chain.state or ChainState()
            chain.state = ChainState(
                in_progress=True,
                run_modified_after=chain.modified_after,
                run_started_at=old.run_started_at,
                high_water=old.high_water,
                fingerprint=chain.conn.fingerprint,
                page_size=old.page_size,
            )
            await self._save(chain.connection, chain.entity.value, chain.state)


# -- what a pull is made of ----------------------------------------------------------

#: A connection of a pull: a token, a ``(name, token)`` pair, or a handle.
ConnectionSpec = str | Connection | tuple[str, str]


class ConnectionSource(Protocol):
    """What a pull needs from its pool (so the bulk modules never import the pool's)."""

    @property
    def shared(self) -> Shared: ...

    def connection(self, token: str, *, name: str | None = None) -> Connection: ...


def entities_of(value: EntityLike | Iterable[EntityLike]) -> list[Entity]:
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


def connections_of(pool: ConnectionSource, specs: Iterable[ConnectionSpec]) -> list[Connection]:
    out: list[Connection] = []
    names: set[str] = set()
    given: dict[object, object] = {}  # name -> token, as this pull's specs pair them
    for spec in specs:
        if isinstance(spec, Connection):
            conn = spec
        elif isinstance(spec, tuple) and len(spec) == 2:
            name, token = spec
            if given.setdefault(name, token) != token:
                # Not a rotation: two tokens under one name in one pull is a mistake.
                msg = f"two connections share the name {name!r}; names must be unique"
                raise UsageError(msg)
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
