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
import operator
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from makini_async._invalid import InvalidRecord
from makini_async._keys import recover_legacy
from makini_async.bulk._report import ChainReport
from makini_async.checkpoint import ChainState
from makini_async.connection import Connection
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import CheckpointError, UsageError
from makini_async.models import unstructure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from makini_async._shared import Shared
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore

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

_ITEM_ID: Final = operator.itemgetter("id")
_ATTR_ID: Final = operator.attrgetter("id")
# The ids a dict record may carry; ``bool`` is an int but never an id.
_ID_TYPES: Final = frozenset({str, int})


@attrs.define(slots=True, kw_only=True, eq=False, weakref_slot=False)
class Chain(ChainReport):
    """A chain's report plus the pull's working state: one object per chain."""

    conn: Connection = attrs.field(repr=False)
    state: ChainState | None = attrs.field(default=None, repr=False)
    seen: set[str] | None = attrs.field(default=None, repr=False)
    run_started_at: str | None = attrs.field(default=None, repr=False)
    resumed_records: int = attrs.field(default=0, repr=False)
    deferred_for: float = attrs.field(default=0.0, repr=False)


# Users see these objects in PullReport.chains: they print as what they are to them.
Chain.__qualname__ = "ChainReport"


class ChainEnded(Exception):
    """Handed to a worker whose chain the consumer has ended (``Pull.fail``)."""


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


# -- de-duplication within a run ----------------------------------------------------------


def fresh(
    chain: Chain,
    records: list[Any],
    invalid: tuple[InvalidRecord, ...],
    *,
    as_dicts: bool,
    request_id: str | None,
) -> tuple[list[Any], tuple[InvalidRecord, ...]]:
    """``records`` and ``invalid`` less any id this chain already delivered in this run.

    A record without a usable id (non-empty text or an integer) cannot be
    de-duplicated: it joins ``invalid``, whole. Typed records' ids are text
    (``5`` and ``"5"`` are one id); dict records' ids are compared as sent.
    Dropped records are counted in ``chain.duplicates`` and logged.
    """
    get_id = _ITEM_ID if as_dicts else _ATTR_ID
    try:
        ids = set(map(get_id, records))
    except (KeyError, TypeError, AttributeError):
        ids = None
    if ids is not None and ("" in ids or (as_dicts and not {*map(type, ids)} <= _ID_TYPES)):
        ids = None
    if ids is None:
        records, no_id = _without_id(chain, records, request_id)
        invalid = (*invalid, *no_id)
        ids = set(map(get_id, records))
    seen = chain.seen
    if len(ids) == len(records) and not invalid:  # the common case, all in C
        if seen is None:
            chain.seen = ids
            return records, invalid
        if seen.isdisjoint(ids):
            seen |= ids
            return records, invalid
    if seen is None:
        seen = chain.seen = set()
    keep: list[Any] = []
    for rid, record in zip(map(get_id, records), records, strict=True):
        if rid not in seen:
            seen.add(rid)
            keep.append(record)
    dropped = len(records) - len(keep)
    if invalid:
        # An invalid record that has an id is de-duplicated like the others.
        kept: list[InvalidRecord] = []
        for item in invalid:
            rid = item.id
            if not rid or rid not in seen:
                if rid:
                    seen.add(rid)
                kept.append(item)
        dropped += len(invalid) - len(kept)
        invalid = tuple(kept)
    if dropped:
        chain.duplicates += dropped
        logger.info(
            "%s %s: %d records with ids delivered earlier in this run dropped (request_id=%s)",
            chain.connection,
            chain.entity.value,
            dropped,
            request_id,
        )
    return keep, invalid


def _without_id(
    chain: Chain, records: list[Any], request_id: str | None
) -> tuple[list[Any], list[InvalidRecord]]:
    """Split dict records into those with a usable id and invalid ones (the slow path)."""
    keep: list[Any] = []
    invalid: list[InvalidRecord] = []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else getattr(record, "id", None)
        if type(rid) in _ID_TYPES and rid != "":
            keep.append(record)
        else:
            reason = "required field is missing" if rid is None else "not a usable id"
            invalid.append(
                InvalidRecord(
                    entity=chain.entity,
                    data=record if isinstance(record, dict) else unstructure(record),
                    field="id",
                    reason=f"{reason}; a record needs one to be de-duplicated",
                    request_id=request_id,
                    connection=chain.connection,
                )
            )
    return keep, invalid


# -- checkpoints ---------------------------------------------------------------------------


class Checkpoints:
    """Where each chain of a pull starts, and how far its consumer has got.

    Without a store, chains start at the beginning with the pull's filter and
    nothing is recorded. The store may be synchronous (SQLite, JSON) or a
    coroutine one (PostgreSQL). With ``sink_commits``, a sink commits each
    page's state with the page itself: this class only computes the states
    (:meth:`after`) and still saves each chain's start.
    """

    __slots__ = (
        "_async",
        "_modified_after",
        "_overlap",
        "_run_start_cache",
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
        self._run_start_cache: tuple[int, str] = (-1, "")
        self._async = store is not None and inspect.iscoroutinefunction(store.save)
        self.sink_commits = sink_commits

    async def open(self) -> None:
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
            chain.resumed_records = state.records
            chain.modified_after = state.run_modified_after
            chain.state = attrs.evolve(state, fingerprint=fingerprint)
            chain.run_started_at = state.run_started_at
            return state.cursor, state.run_modified_after, state.page_size
        modified_after = self._modified_after
        if modified_after is None and state is not None:
            modified_after = state.high_water
        if modified_after is None and self._since_sync_status:
            status = await chain.conn.sync_status()
            entry = status.entities.get(entity)
            if entry is not None and entry.last_synced_at is not None:
                modified_after = iso(entry.last_synced_at)
        chain.modified_after = modified_after
        if store is not None:
            chain.run_started_at = self._run_start()
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
        self, chain: Chain, next_cursor: str | None, page_size: int | None
    ) -> ChainState | None:
        """The chain's state once the consumer is done with the page before ``next_cursor``.

        ``next_cursor=None`` means that page was the last: the state of a complete run.
        """
        if self.store is None:
            return None
        old = chain.state or ChainState()
        if next_cursor is None:
            return ChainState(
                high_water=chain.run_started_at or old.high_water,
                fingerprint=chain.conn.fingerprint,
                page_size=old.page_size,
            )
        return attrs.evolve(
            old,
            in_progress=True,
            cursor=next_cursor,
            records=chain.resumed_records + chain.records,
            page_size=page_size if page_size is not None else old.page_size,
        )

    async def commit(self, chain: Chain, state: ChainState | None) -> None:
        """Record ``state`` (from :meth:`after`) unless the sink committed it already."""
        if state is None:
            return
        chain.state = state
        if not self.sink_commits:
            await self._save(chain.connection, chain.entity.value, state)

    def _run_start(self) -> str:
        """The next high-water mark: now less the overlap (formatted once a second)."""
        now = self._wall()
        second = int(now.timestamp())
        if self._run_start_cache[0] != second:
            self._run_start_cache = (second, iso(now - self._overlap))
        return self._run_start_cache[1]


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
