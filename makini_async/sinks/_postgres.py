"""The PostgreSQL sink: one table per entity, each page and its chain's cursor in one transaction.

Guarantee: **exactly once**. Each page is one transaction that upserts its
records and writes its chain's checkpoint row (a
:class:`~makini_async.checkpoint_postgres.PostgresCheckpoint` in the same
database), so the data and the cursor are durable together or not at all: a
process killed at any instant resumes after the last committed page, and no
page is applied twice. Rows are keyed by ``(connection, id)``; an upsert
replaces a row only with a copy at least as new (``updated_at``), so an
older copy (an overlap of an incremental pull, a re-delivery) never
overwrites a newer one.

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
import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

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
from makini_async.errors import CheckpointError, MakiniError, SinkError, SinkUnavailable, UsageError
from makini_async.models._fields import to_datetime
from makini_async.sinks._disk import DEFAULT_DISK_DEADLINE, DiskRetry
from makini_async.sinks._encode import as_json_dict, record_id, unwritable
from makini_async.sinks._nul import has_nul_escape, without_nul

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["PostgresSink"]

T = TypeVar("T")

_ROW_COLUMNS: Final = (
    "connection text NOT NULL, id text NOT NULL, updated_at timestamptz, "
    "created_at timestamptz, record jsonb NOT NULL, request_id text, "
    "pulled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (connection, id)"
)
_INVALID_COLUMNS: Final = (
    "connection text NOT NULL, entity text NOT NULL, id text, field text, reason text, "
    "request_id text, record jsonb, pulled_at timestamptz NOT NULL DEFAULT now()"
)


def _when(value: Any) -> dt.datetime | None:
    """A record's ``updated_at``/``created_at`` as an aware datetime, or ``None``."""
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the row still lands; ordering treats it as unknown


class PostgresSink:
    """Upserts into ``PREFIX + entity`` tables, each page in one transaction with its cursor."""

    def __init__(
        self,
        dsn: str,
        *,
        table_prefix: str = "makini_",
        checkpoint_table: str = DEFAULT_TABLE,
        retry_deadline: float = DEFAULT_DISK_DEADLINE,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("retry_deadline", retry_deadline),
            ("command_timeout", command_timeout),
        ):
            if not value >= 0 or (name == "command_timeout" and not value > 0):
                msg = f"{name} must be a number of seconds > 0, got {value!r}"
                raise UsageError(msg)
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
        self._store = PostgresCheckpoint(
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

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        ids, updated, created, docs = _rows(page)
        invalid = _invalid_rows(page) if page.invalid else None
        connection = without_nul(page.connection)
        request_id = without_nul(page.request_id)

        async def store(db: Any) -> None:
            if ids:
                await db.execute(
                    self._upserts[page.entity], connection, ids, updated, created, docs, request_id
                )
            if invalid:
                await db.executemany(
                    f"INSERT INTO {self._invalid_table} "  # noqa: S608
                    "(connection, entity, id, field, reason, request_id, record) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                    invalid,
                )
            if state is not None:
                await self._store.save_in(db, page.connection, page.entity.value, state)

        try:
            await self._in_transaction(store, f"{page.entity.value} page to {self.location}")
        except SinkUnavailable as exc:
            exc.request_id, exc.connection = page.request_id, page.connection
            raise
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors, told without a password
            msg = postgres_error(f"cannot store a {page.entity.value} page", self._dsn, exc)
            raise SinkError(msg, request_id=page.request_id, connection=page.connection) from None

    async def flush(self) -> None:
        """Every page is committed by its own transaction."""

    async def close(self) -> None:
        try:
            await self._store.close()
        except CheckpointError as exc:  # pragma: no cover - closing a pool does not fail
            raise SinkError(exc.message) from None


def _upsert_sql(table: str) -> str:
    return (
        f"INSERT INTO {table} AS t "  # noqa: S608 - identifiers checked, values bound
        "(connection, id, updated_at, created_at, record, request_id, pulled_at) "
        "SELECT $1, u.id, u.updated_at, u.created_at, u.record::jsonb, $6, now() "
        "FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[]) "
        "AS u(id, updated_at, created_at, record) "
        "ON CONFLICT (connection, id) DO UPDATE SET updated_at = excluded.updated_at, "
        "created_at = excluded.created_at, record = excluded.record, "
        "request_id = excluded.request_id, pulled_at = excluded.pulled_at "
        # Never replace a row by an older copy; equal is the same copy again.
        "WHERE t.updated_at IS NULL OR excluded.updated_at >= t.updated_at"
    )


def _rows(
    page: PulledPage[Any],
) -> tuple[list[str], list[dt.datetime | None], list[dt.datetime | None], list[str]]:
    """Columns of the page's rows, one copy per id (the newest, if a page repeats an id)."""
    latest: dict[str, tuple[dt.datetime | None, dt.datetime | None, str]] = {}
    record: Any = None
    try:
        for record in page.records:
            doc = as_json_dict(record)
            text = orjson.dumps(doc).decode()
            key = str(record_id(record))
            if has_nul_escape(text):
                doc, key = without_nul(doc), without_nul(key)
                text = orjson.dumps(doc).decode()
            updated = _when(doc.get("updated_at"))
            previous = latest.get(key)
            if previous is not None and _older(updated, previous[0]):
                continue
            latest[key] = (updated, _when(doc.get("created_at")), text)
    except (TypeError, RecursionError, MakiniError) as exc:
        raise unwritable(page, record, exc, what="JSONB") from None
    ids = list(latest)
    return (
        ids,
        [latest[i][0] for i in ids],
        [latest[i][1] for i in ids],
        [latest[i][2] for i in ids],
    )


def _older(new: dt.datetime | None, old: dt.datetime | None) -> bool:
    return new is None or (old is not None and new < old)


def _invalid_rows(page: PulledPage[Any]) -> list[tuple[Any, ...]]:
    rows = []
    for item in page.invalid:
        try:
            doc = orjson.dumps(without_nul(item.data)).decode()
        except (TypeError, RecursionError) as exc:
            raise unwritable(page, item.data, exc, what="JSONB") from None
        rid = item.id
        row = (
            page.connection,
            page.entity.value,
            None if rid is None else str(rid),
            item.field,
            item.reason,
            item.request_id,
        )
        rows.append((*without_nul(row), doc))
    return rows
