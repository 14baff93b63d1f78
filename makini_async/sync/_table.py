"""The sync's own table in PostgreSQL: one row per (connection, entity), and its lease.

Several instances of ``makini-async sync`` on one database share the work
through it, with nothing of their own beside PostgreSQL. A pull claims its
rows first (``FOR UPDATE SKIP LOCKED``, then an owner and a lease time): an
instance never waits on another's rows and never takes one whose lease is
running. Running pulls renew their leases; a killed instance's leases expire
and another instance takes the rows over. A row also keeps what ``/status``
shows after a restart (last success, last error, records landed, the
connection's status) and the connection's Makini id, learnt once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from makini_async.checkpoint._pg_faults import asyncpg_module
from makini_async.checkpoint._postgres import (
    check_identifier,
    create_pool,
    create_table_once,
    postgres_error,
)
from makini_async.errors import SinkError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Sequence

    from makini_async.sync._schedule import Key

__all__ = ["ChainRow", "SyncTable"]


@attrs.define(slots=True)
class ChainRow:
    """What the table remembers of one (connection, entity)."""

    last_success: dt.datetime | None = None
    last_error: str | None = None
    landed: int = 0
    status: str = "active"
    connection_id: str | None = None


class SyncTable:
    """Claims, leases and the remembered state of a sync's chains, in ``{prefix}sync``."""

    def __init__(self, dsn: str, *, prefix: str = "makini_", owner: str, lease: float) -> None:
        self._dsn = dsn
        self.table = check_identifier(prefix + "sync")
        self.owner = owner
        self.lease = float(lease)
        self._pool: Any = None

    async def open(self) -> None:
        try:
            self._pool = await create_pool(self._dsn, max_size=2)
            async with self._pool.acquire() as db, db.transaction():
                await create_table_once(
                    db,
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "connection text NOT NULL, entity text NOT NULL, owner text, "
                    "lease_until timestamptz, last_success timestamptz, last_error text, "
                    "landed bigint NOT NULL DEFAULT 0, status text NOT NULL DEFAULT 'active', "
                    "connection_id text, PRIMARY KEY (connection, entity))",
                )
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors, told without a password
            await self.close()
            raise SinkError(postgres_error("cannot open the sync table", self._dsn, exc)) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except (OSError, asyncpg_module().PostgresError) as exc:
            raise SinkError(postgres_error("the sync table failed", self._dsn, exc)) from None

    async def ensure(self, keys: Sequence[Key]) -> dict[Key, ChainRow]:
        """Add the rows ``keys`` lack; what the table knows of each key."""
        conns, ents = _columns(keys)
        await self._run(
            f"INSERT INTO {self.table} (connection, entity) "  # noqa: S608 - checked identifier
            "SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            conns,
            ents,
        )
        rows = await self._run(
            f"SELECT connection, entity, last_success, last_error, landed, status, connection_id "  # noqa: S608
            f"FROM {self.table} WHERE (connection, entity) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            conns,
            ents,
        )
        return {(r[0], r[1]): ChainRow(r[2], r[3], r[4], r[5], r[6]) for r in rows}

    async def claim(self, keys: Sequence[Key]) -> list[Key]:
        """Take the leases of ``keys`` that no other instance holds; the keys taken."""
        if not keys:
            return []
        conns, ents = _columns(keys)
        rows = await self._run(
            f"UPDATE {self.table} t SET owner = $1, "  # noqa: S608 - checked identifier
            "lease_until = now() + make_interval(secs => $2) FROM ("
            f"SELECT connection, entity FROM {self.table} "
            "WHERE (connection, entity) IN (SELECT * FROM unnest($3::text[], $4::text[])) "
            "AND (owner IS NULL OR owner = $1 OR lease_until < now()) "
            "FOR UPDATE SKIP LOCKED) c "
            "WHERE t.connection = c.connection AND t.entity = c.entity "
            "RETURNING t.connection, t.entity",
            self.owner,
            self.lease,
            conns,
            ents,
        )
        return [(r[0], r[1]) for r in rows]

    async def renew(self, keys: Iterable[Key]) -> None:
        """Extend the leases this instance holds on ``keys`` (running pulls)."""
        conns, ents = _columns(list(keys))
        if conns:
            await self._run(
                f"UPDATE {self.table} SET lease_until = now() + make_interval(secs => $2) "  # noqa: S608
                "WHERE owner = $1 AND (connection, entity) IN "
                "(SELECT * FROM unnest($3::text[], $4::text[]))",
                self.owner,
                self.lease,
                conns,
                ents,
            )

    async def release(self, results: Sequence[tuple[Key, str | None, int, str]]) -> None:
        """End the leases of finished pulls: ``(key, error or None, records landed, status)``."""
        if not results:
            return
        await self._run(
            f"UPDATE {self.table} t SET owner = NULL, lease_until = NULL, "  # noqa: S608
            "last_success = CASE WHEN r.error IS NULL THEN now() ELSE t.last_success END, "
            "last_error = r.error, landed = t.landed + r.landed, status = r.status "
            "FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) "
            "AS r(connection, entity, error, landed, status) "
            "WHERE t.connection = r.connection AND t.entity = r.entity AND t.owner = $1",
            self.owner,
            [k[0] for k, _, _, _ in results],
            [k[1] for k, _, _, _ in results],
            [e for _, e, _, _ in results],
            [n for _, _, n, _ in results],
            [s for _, _, _, s in results],
        )

    async def set_status(self, connection: str, status: str) -> None:
        """Record a connection's status (every entity of it)."""
        await self._run(
            f"UPDATE {self.table} SET status = $2 WHERE connection = $1",  # noqa: S608
            connection,
            status,
        )

    async def set_connection_id(self, connection: str, connection_id: str) -> None:
        await self._run(
            f"UPDATE {self.table} SET connection_id = $2 WHERE connection = $1",  # noqa: S608
            connection,
            connection_id,
        )


def _columns(keys: Sequence[Key]) -> tuple[list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys]
