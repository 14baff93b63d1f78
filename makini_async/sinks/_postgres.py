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
unknown fields included). Records that do not fit their model go to
``makini_invalid_records`` (connection, entity, id, field, reason,
request_id, record), in the same transaction as their page.

Needs the ``postgresql`` extra (``asyncpg``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.checkpoint._postgres import (
    DEFAULT_TABLE,
    PostgresCheckpoint,
    check_identifier,
    create_table_once,
    postgres_error,
    safe_dsn,
)
from makini_async.errors import CheckpointError, MakiniError, SinkError
from makini_async.models._fields import to_datetime
from makini_async.sinks._encode import as_json_dict, record_id, unwritable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["PostgresSink"]

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
    ) -> None:
        self._dsn = dsn
        self._prefix = check_identifier(table_prefix)
        self._store = PostgresCheckpoint(dsn, table=checkpoint_table)
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

    async def open(self, entities: Sequence[Entity]) -> None:
        import asyncpg  # noqa: PLC0415 - the optional extra; present once the store opened

        await self._store.open()
        try:
            async with self._store.pool.acquire() as db, db.transaction():
                for entity in entities:
                    table = self.table(entity)
                    await create_table_once(
                        db, f"CREATE TABLE IF NOT EXISTS {table} ({_ROW_COLUMNS})"
                    )
                    self.tables[entity] = table
                    self._upserts[entity] = _upsert_sql(table)
                await create_table_once(
                    db, f"CREATE TABLE IF NOT EXISTS {self._invalid_table} ({_INVALID_COLUMNS})"
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise SinkError(postgres_error("cannot prepare tables", self._dsn, exc)) from None

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        import asyncpg  # noqa: PLC0415

        ids, updated, created, docs = _rows(page)
        invalid = _invalid_rows(page) if page.invalid else None
        try:
            async with self._store.pool.acquire() as db, db.transaction():
                if ids:
                    await db.execute(
                        self._upserts[page.entity],
                        page.connection,
                        ids,
                        updated,
                        created,
                        docs,
                        page.request_id,
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
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
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
            rid = record_id(record)
            key = str(rid)
            updated = _when(doc.get("updated_at"))
            previous = latest.get(key)
            if previous is not None and _older(updated, previous[0]):
                continue
            latest[key] = (updated, _when(doc.get("created_at")), orjson.dumps(doc).decode())
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
            doc = orjson.dumps(item.data).decode()
        except (TypeError, RecursionError) as exc:
            raise unwritable(page, item.data, exc, what="JSONB") from None
        rid = item.id
        rows.append(
            (
                page.connection,
                page.entity.value,
                None if rid is None else str(rid),
                item.field,
                item.reason,
                item.request_id,
                doc,
            )
        )
    return rows
