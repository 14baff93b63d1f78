"""Named checkpoint states in PostgreSQL (see :mod:`makini_async.checkpoint._identity`).

A state's identity is one row of ``TABLE_states`` (``name``, ``identity``,
``saved_at``); its chains are the checkpoint table's rows whose connection is
``NAME + SEPARATOR + connection``. The sink's store and a ``--checkpoint``
DSN are the same class, so a PostgreSQL sink keeps its state in its own
database, beside its data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from makini_async.checkpoint import _pg_faults
from makini_async.checkpoint._identity import SEPARATOR

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.errors import CheckpointError

__all__ = ["PostgresStates"]

#: Identifiers are at most 63 bytes; the table's name is cut to leave room for ``_states``.
_STATES_BASE = 63 - len("_states")


class PostgresStates:
    """The named-state part of :class:`~makini_async.checkpoint.PostgresCheckpoint`."""

    table: str
    _pool: Any
    _state: str | None = None
    _fail: Callable[[str, BaseException], CheckpointError]
    #: What waits out a database that is away (``run(call, where)``), or ``None``.
    _retry: Any = None

    @property
    def location(self) -> str:
        raise NotImplementedError

    @property
    def states_table(self) -> str:
        return f"{self.table[:_STATES_BASE]}_states"

    def states_ddl(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.states_table} (name text PRIMARY KEY, "
            "identity jsonb NOT NULL, saved_at timestamptz NOT NULL)"
        )

    def use_state(self, name: str) -> None:
        """Read and write the chains of state ``name`` from now on."""
        self._state = name

    def key(self, connection: str) -> str:
        """The stored key of ``connection``'s chains in the state in use."""
        return f"{self._state}{SEPARATOR}{connection}" if self._state else connection

    def unkey(self, stored: str) -> str | None:
        """The connection a stored key names in the state in use, or ``None``."""
        if not self._state:
            return None if SEPARATOR in stored else stored
        prefix = f"{self._state}{SEPARATOR}"
        return stored[len(prefix) :] if stored.startswith(prefix) else None

    async def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        """``await call()``; a database error is a :class:`CheckpointError` without a password.

        With a ``retry`` (the sink's), a database that is away is waited out
        first, and one that stays away raises its
        :class:`~makini_async.errors.SinkUnavailable`.
        """
        import asyncio  # noqa: PLC0415

        asyncpg = _pg_faults.asyncpg_module()
        try:
            if self._retry is not None:
                return await self._retry.run(call, f"checkpoint to {self.location}")
            return await call()
        except (
            OSError,
            asyncio.TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as exc:
            raise self._fail(f"cannot {what} checkpoint", exc) from None

    async def read_identity(self, name: str) -> Any:
        raw = await self._guarded(
            "read",
            lambda: self._pool.fetchval(
                f"SELECT identity::text FROM {self.states_table} WHERE name = $1",  # noqa: S608
                name,
            ),
        )
        return None if raw is None else orjson.loads(raw)

    async def write_identity(self, name: str, data: dict[str, Any]) -> None:
        await self._guarded(
            "write",
            lambda: self._pool.execute(
                f"INSERT INTO {self.states_table} (name, identity, saved_at) "  # noqa: S608
                "VALUES ($1, $2::jsonb, now()) ON CONFLICT (name) DO UPDATE SET "
                "identity = excluded.identity, saved_at = excluded.saved_at",
                name,
                orjson.dumps(data).decode(),
            ),
        )

    async def adopt_legacy(self, name: str, chains: list[tuple[str, str]]) -> int:
        """Move these chains, written before states, under ``name``; how many moved."""
        legacy = await self._guarded(
            "read",
            lambda: self._pool.fetchval(
                f"SELECT 1 FROM {self.table} WHERE strpos(connection, $1) = 0 LIMIT 1",  # noqa: S608
                SEPARATOR,
            ),
        )
        if not chains or legacy is None:
            return 0  # nothing from before states: the common case, one quick scan
        connections = [c for c, _ in chains]
        entities = [e for _, e in chains]
        rows = await self._guarded(
            "write",
            lambda: self._pool.fetch(
                f"UPDATE {self.table} AS t SET connection = $1 || t.connection "  # noqa: S608
                "FROM unnest($2::text[], $3::text[]) AS p(connection, entity) "
                "WHERE t.connection = p.connection AND t.entity = p.entity "
                f"AND NOT EXISTS (SELECT 1 FROM {self.table} AS o "
                "WHERE o.connection = $1 || t.connection AND o.entity = t.entity) "
                "RETURNING 1",
                f"{name}{SEPARATOR}",
                connections,
                entities,
            ),
        )
        return len(rows)

    async def drop_state(self, name: str) -> None:
        """Forget every chain of state ``name``."""
        prefix = f"{name}{SEPARATOR}"
        await self._guarded(
            "write",
            lambda: self._pool.execute(
                f"DELETE FROM {self.table} WHERE left(connection, $2) = $1",  # noqa: S608
                prefix,
                len(prefix),
            ),
        )
