"""The PostgreSQL sink: one table per entity, pages and their chains' cursors committed together.

Guarantee: **exactly once**. Pages are group-committed
(:mod:`makini_async.sinks._group`): the pages of many chains go into one
transaction, once it holds ``max_batch_rows`` rows or ``max_batch_delay``
seconds after its first page. The transaction ``COPY``s the rows into a
temporary staging table, upserts them with one statement per entity, and
writes the checkpoint row of every chain in the batch (a
:class:`~makini_async.checkpoint.PostgresCheckpoint` in the same
database), so data and cursors are durable together or not at all: a
process killed at any instant resumes after the last committed batch, and
no page is applied twice. The pull keeps fetching while a batch commits.
Rows are keyed by ``(connection, id)``; an upsert replaces a row only with
a copy at least as new (``updated_at``), so an older copy (an overlap of
an incremental pull, a re-delivery) never overwrites a newer one.

Tables (``makini_`` and the entity in snake case, e.g. ``makini_work_orders``)::

    connection text, id text, updated_at timestamptz, created_at timestamptz,
    record jsonb, request_id text, pulled_at timestamptz,
    PRIMARY KEY (connection, id)

``record`` is the record in the API's JSON shape (custom fields, ``raw`` and
unknown fields included). PostgreSQL's ``text`` and ``jsonb`` cannot hold
U+0000: it lands as U+FFFD, in every sink alike (:mod:`makini_async.sinks._nul`).

A database that goes away (a restart, a failover, a full disk, a deadlock)
is waited out: the page's transaction is tried again with backoff for
``retry_deadline`` seconds, on a new connection where the old one broke,
then :class:`~makini_async.errors.SinkUnavailable` ends the pull once. Every
command has a timeout (``command_timeout``). Records that do not fit their model go to
``makini_invalid_records`` (connection, entity, id, field, reason,
request_id, record), in the same transaction as their page.

Needs the ``postgresql`` extra (``asyncpg``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from makini_async.checkpoint import _pg_faults
from makini_async.checkpoint._postgres import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_TABLE,
    PostgresCheckpoint,
    check_identifier,
    create_table_once,
    error_detail,
    postgres_error,
    safe_dsn,
)
from makini_async.errors import CheckpointError, SinkError, SinkUnavailable, UsageError
from makini_async.sinks._batched import BatchedRows
from makini_async.sinks._disk import DEFAULT_DISK_DEADLINE, DiskRetry
from makini_async.sinks._group import (
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_ROWS,
    Lanes,
    Pending,
)
from makini_async.sinks._rows import INVALID_COLUMNS, ROW_COLUMNS, merge_batch

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["PostgresSink"]

T = TypeVar("T")

_ROW_COLUMNS: Final = (
    "connection text NOT NULL, id text NOT NULL, updated_at timestamptz, "
    "created_at timestamptz, record jsonb NOT NULL, request_id text, "
    "pulled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (connection, id)"
)
_STAGE: Final = "makini_stage"
_STAGE_DDL: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (connection text, id text, "
    "updated_at timestamptz, created_at timestamptz, record jsonb, request_id text) "
    "ON COMMIT DELETE ROWS"
)
_INVALID_COLUMNS: Final = (
    "connection text NOT NULL, entity text NOT NULL, id text, field text, reason text, "
    "request_id text, record jsonb, pulled_at timestamptz NOT NULL DEFAULT now()"
)


class _SinkCheckpoint(PostgresCheckpoint):
    """The sink's chain states: a save from outside a batch first lands the pages before it.

    The pull saves a state itself only when a chain starts or starts again
    (its cursor rejected): a batch still pending with that chain's earlier
    cursor must not commit after it.
    """

    landing: Lanes | None = None

    async def save(self, connection: str, entity: str, state: ChainState) -> None:
        if self.landing is not None:
            await self.landing.flush()
        await super().save(connection, entity, state)


class PostgresSink(BatchedRows):
    """Upserts into ``PREFIX + entity`` tables; pages and cursors group-committed.

    ``max_batch_rows`` and ``max_batch_delay`` bound a batch (rows, seconds
    after its first page); ``max_batch_delay=0`` commits each page as soon as
    the previous batch is done.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table_prefix: str = "makini_",
        checkpoint_table: str = DEFAULT_TABLE,
        retry_deadline: float = DEFAULT_DISK_DEADLINE,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        max_batch_rows: int = DEFAULT_MAX_ROWS,
        max_batch_delay: float = DEFAULT_MAX_DELAY,
        lanes: int = 2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("retry_deadline", retry_deadline),
            ("command_timeout", command_timeout),
            ("max_batch_delay", max_batch_delay),
        ):
            if not value >= 0 or (name == "command_timeout" and not value > 0):
                msg = f"{name} must be a number of seconds >= 0, got {value!r}"
                raise UsageError(msg)
        if isinstance(max_batch_rows, bool) or not isinstance(max_batch_rows, int):
            msg = f"max_batch_rows must be an int >= 1, got {max_batch_rows!r}"
            raise UsageError(msg)
        if max_batch_rows < 1:
            msg = f"max_batch_rows must be an int >= 1, got {max_batch_rows!r}"
            raise UsageError(msg)
        self._command_timeout = command_timeout
        self._batch_settings = (max_batch_rows, max_batch_delay, lanes)
        self._dsn = dsn
        self._prefix = check_identifier(table_prefix)
        self._retry = DiskRetry(
            deadline=retry_deadline,
            sleep=sleep,
            clock=clock,
            transient=_pg_faults.is_transient,
            describe=self._describe,
        )
        # The sink's chain states wait out the database as its pages do.
        self._store = _SinkCheckpoint(
            dsn, table=checkpoint_table, command_timeout=command_timeout, retry=self._retry
        )
        self._upserts: dict[Entity, str] = {}
        self._invalid_table = check_identifier(f"{table_prefix}invalid_records")
        self.tables: dict[Entity, str] = {}

    def __repr__(self) -> str:
        return f"<PostgresSink {self.location}>"

    @property
    def location(self) -> str:
        return safe_dsn(self._dsn)

    @property
    def destination(self) -> str:
        """Where records land, with the tables' prefix: what a checkpoint state is bound to."""
        return f"{self.location} tables {self._prefix}*"

    @property
    def checkpoint_store(self) -> PostgresCheckpoint:
        return self._store

    def table(self, entity: Entity) -> str:
        return check_identifier(self._prefix + entity.value.replace("-", "_"))

    def _describe(self, exc: BaseException) -> str:
        return error_detail(self._dsn, exc)

    async def _in_transaction(self, work: Callable[[Any], Awaitable[T]], where: str) -> T:
        """``work(db)`` in one transaction, tried again while the database is away.

        A connection a failure left unusable is closed, never handed back, so
        the next try connects anew.
        """

        async def attempt() -> T:
            async with self._store.pool.acquire() as db:
                try:
                    async with db.transaction():
                        return await work(db)
                except BaseException as exc:
                    if _pg_faults.breaks_connection(exc) or isinstance(exc, asyncio.CancelledError):
                        db.terminate()
                    raise

        return await self._retry.run(attempt, where)

    async def open(self, entities: Sequence[Entity]) -> None:
        where = f"to {self.location}"
        try:
            await self._store.open()  # waits out a database that is away (the sink's retry)
        except CheckpointError as exc:
            raise SinkError(exc.message) from None

        async def prepare(db: Any) -> None:
            for entity in entities:
                table = self.table(entity)
                await create_table_once(db, f"CREATE TABLE IF NOT EXISTS {table} ({_ROW_COLUMNS})")
                self.tables[entity] = table
                self._upserts[entity] = _upsert_sql(table)
            await create_table_once(
                db, f"CREATE TABLE IF NOT EXISTS {self._invalid_table} ({_INVALID_COLUMNS})"
            )

        try:
            await self._in_transaction(prepare, where)
        except SinkUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors, told without a password
            raise SinkError(postgres_error("cannot prepare tables", self._dsn, exc)) from None

    def _lanes_made(self, lanes: Lanes) -> None:
        self._store.landing = lanes  # a chain's own save lands the pages before it first

    async def _commit(self, batch: list[Pending]) -> None:
        """One transaction: every page's rows staged and upserted, every chain's cursor saved."""
        merged, invalid, states = merge_batch(batch)
        timeout = self._command_timeout

        async def store(db: Any) -> None:
            await db.execute(_STAGE_DDL)
            for n, (entity, latest) in enumerate(merged.items()):
                if not latest:
                    continue
                if n:
                    await db.execute(f"TRUNCATE {_STAGE}")
                await db.copy_records_to_table(
                    _STAGE, records=latest.values(), columns=ROW_COLUMNS, timeout=timeout
                )
                await db.execute(self._upserts[entity])
            if invalid:
                await db.copy_records_to_table(
                    self._invalid_table, records=invalid, columns=INVALID_COLUMNS, timeout=timeout
                )
            if states:
                await self._store.save_many_in(db, [(c, e, s) for (c, e), s in states.items()])
            else:  # no cursor moves, yet the rows are fenced as well
                await self._store.check_fence_in(db)

        first = batch[0]
        what = f"a {first.entity.value} page"
        if len(batch) > 1:
            what = f"a batch of {len(batch)} pages"
        try:
            await self._in_transaction(store, f"{what} to {self.location}")
        except SinkUnavailable as exc:
            exc.connection = first.connection
            raise
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors, told without a password
            msg = postgres_error(f"cannot store {what}", self._dsn, exc)
            raise SinkError(msg, connection=first.connection) from None

    async def close(self) -> None:
        try:
            await self._close_batches()
        finally:
            try:
                await self._store.close()
            except CheckpointError as exc:  # pragma: no cover - closing a pool does not fail
                raise SinkError(exc.message) from None


def _upsert_sql(table: str) -> str:
    return (
        f"INSERT INTO {table} AS t "  # noqa: S608 - identifiers checked, values bound
        "(connection, id, updated_at, created_at, record, request_id, pulled_at) "
        "SELECT connection, id, updated_at, created_at, record, request_id, now() "
        f"FROM {_STAGE} "
        "ON CONFLICT (connection, id) DO UPDATE SET updated_at = excluded.updated_at, "
        "created_at = excluded.created_at, record = excluded.record, "
        "request_id = excluded.request_id, pulled_at = excluded.pulled_at "
        # Never replace a row by an older copy; equal is the same copy again.
        "WHERE t.updated_at IS NULL OR excluded.updated_at >= t.updated_at"
    )
