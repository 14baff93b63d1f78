"""A checkpoint store in PostgreSQL: one row per (connection, entity), for many processes.

Pick it over the embedded SQLite store when several processes (or machines)
share one pull's checkpoints, or when the data itself lands in PostgreSQL
(:class:`~makini_async.sinks.PostgresSink` commits each page and its chain's
row in one transaction). Every save is one upsert of one row, so processes
writing different chains at once never wait on each other, and two processes
writing the same chain keep the last write whole. Rows are keyed by the
connection's name, never its token; the DSN's password never appears in a
repr, an error or a log line (:func:`safe_dsn`).

Needs the ``postgresql`` extra (``asyncpg``).
"""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async._wire.texts import has_nul_escape
from makini_async.checkpoint import _pg_faults
from makini_async.checkpoint._fence import check_fence
from makini_async.checkpoint._postgres_states import PostgresStates
from makini_async.checkpoint._stores import ChainState, state_from_json, state_to_json
from makini_async.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from makini_async.checkpoint._fence import Fence

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_TABLE",
    "PostgresCheckpoint",
    "connect_pool",
    "create_pool",
    "postgres_error",
    "safe_dsn",
]

#: The table a store keeps its rows in, unless told otherwise.
DEFAULT_TABLE: Final = "makini_checkpoints"
_IDENT: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# ``password=secret`` or ``password = 'a secret'`` in a key/value DSN.
_KV_PASSWORD: Final = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def safe_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (for messages, reprs and summaries)."""
    if "://" not in dsn:  # libpq's key/value form: host=... password=...
        return _KV_PASSWORD.sub("password=***", dsn)
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, "***" if k.lower() == "password" else v) for k, v in query]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe="/*"), "")
    )


def _password(dsn: str) -> str | None:
    if "://" not in dsn:
        found = _KV_PASSWORD.search(dsn)
        return found.group(1).strip("'") if found else None
    try:
        parts = urllib.parse.urlsplit(dsn)
        query = dict(urllib.parse.parse_qsl(parts.query))
    except ValueError:
        return None
    return parts.password or query.get("password") or None


def error_detail(dsn: str, exc: BaseException) -> str:
    """``Class: message`` of a database failure, with no password in it."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    secret = _password(dsn)
    if secret:
        detail = detail.replace(secret, "***").replace(urllib.parse.quote(secret), "***")
    return detail


def postgres_error(what: str, dsn: str, exc: BaseException) -> str:
    """A one-line message for a database failure, with no password in it."""
    return f"{what} ({safe_dsn(dsn)}): {error_detail(dsn, exc)}"


def check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        msg = f"{name!r} is not a plain lower-case SQL identifier"
        raise UsageError(msg)
    return name


#: Seconds any one database command may take before it counts as failed (and is retried).
DEFAULT_COMMAND_TIMEOUT: Final = 60.0


async def create_pool(
    dsn: str, *, max_size: int = 4, command_timeout: float = DEFAULT_COMMAND_TIMEOUT
) -> Any:
    """An asyncpg pool whose every command and connection attempt has a timeout."""
    asyncpg = _pg_faults.asyncpg_module()
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=min(command_timeout, 30.0),
    )


async def connect_pool(
    dsn: str, *, max_size: int = 4, command_timeout: float = DEFAULT_COMMAND_TIMEOUT
) -> Any:
    """An asyncpg pool, or :class:`CheckpointError` naming the server without its password."""
    asyncpg = _pg_faults.asyncpg_module()
    try:
        return await create_pool(dsn, max_size=max_size, command_timeout=command_timeout)
    except (
        OSError,
        asyncio.TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        ValueError,
    ) as exc:
        raise CheckpointError(postgres_error("cannot connect to PostgreSQL", dsn, exc)) from None


class PostgresCheckpoint(PostgresStates):
    """Chain states in a PostgreSQL table: an async checkpoint store.

    Give a DSN (``postgresql://user:password@host/db``) and the store opens
    its own pool; a sink passes its pool so that pages and states share
    transactions.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        pool: Any = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        retry: Any = None,
    ) -> None:
        self._dsn = dsn
        self._command_timeout = command_timeout
        self._retry = retry
        self.table = check_identifier(table)
        self._pool = pool
        self._owns_pool = pool is None
        self._ready = False
        #: The lease this store's saves are fenced by (a unit of a sharded pull), or None.
        self._fence: Fence | None = None
        self._upsert = (
            f"INSERT INTO {self.table} (connection, entity, state, saved_at) "  # noqa: S608
            "VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (connection, entity) "
            "DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at"
        )

    @property
    def location(self) -> str:
        return f"{safe_dsn(self._dsn)} table {self.table}"

    def __repr__(self) -> str:
        return f"<PostgresCheckpoint {self.location}>"

    def _fail(self, what: str, exc: BaseException) -> CheckpointError:
        return CheckpointError(postgres_error(what, self._dsn, exc))

    @property
    def pool(self) -> Any:
        return self._pool

    async def open(self) -> None:
        if self._ready:
            return
        if self._retry is None:
            await self._open()
            return

        async def attempt() -> None:
            try:
                await self._open()
            except CheckpointError as exc:
                # Told without the password, from the database's own error: one
                # that passes by waiting (a server away) is handed to the retry.
                cause = exc.__context__
                if cause is not None and _pg_faults.is_transient(cause):
                    raise cause from None
                raise

        await self._retry.run(attempt, f"checkpoint to {self.location}")

    async def _open(self) -> None:
        if self._pool is None:
            self._pool = await connect_pool(self._dsn, command_timeout=self._command_timeout)
        asyncpg = _pg_faults.asyncpg_module()
        try:
            async with self._pool.acquire() as db, db.transaction():
                await create_table_once(
                    db,
                    f"CREATE TABLE IF NOT EXISTS {self.table} (connection text NOT NULL, "
                    "entity text NOT NULL, state jsonb NOT NULL, saved_at timestamptz NOT NULL, "
                    "PRIMARY KEY (connection, entity))",
                )
                await create_table_once(db, self.states_ddl())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._fail("cannot prepare the checkpoint table", exc) from None
        self._ready = True

    async def load(self, connection: str, entity: str) -> ChainState | None:
        raw = await self._guarded(
            "read",
            lambda: self._pool.fetchval(
                f"SELECT state::text FROM {self.table} WHERE connection = $1 AND entity = $2",  # noqa: S608
                self.key(connection),
                entity,
            ),
        )
        return None if raw is None else _state(raw)

    def fence(self, fence: Fence | None) -> None:
        """Fence every save by ``fence`` (a sharded pull's lease): it fails once the lease moved."""
        self._fence = fence

    async def save(self, connection: str, entity: str, state: ChainState) -> None:
        if self._fence is None:
            await self._guarded(
                "write", lambda: self.save_in(self._pool, connection, entity, state)
            )
            return

        async def fenced() -> None:
            async with self._pool.acquire() as db, db.transaction():
                await self.save_in(db, connection, entity, state)

        await self._guarded("write", fenced)

    async def check_fence_in(self, db: Any) -> None:
        """Raise ``LeaseLost`` unless this store's fence holds, in ``db``'s transaction."""
        await check_fence(db, self._fence)

    async def save_in(self, db: Any, connection: str, entity: str, state: ChainState) -> None:
        """Save through ``db``: a connection inside the caller's transaction."""
        await check_fence(db, self._fence)
        await db.execute(self._upsert, self.key(connection), entity, _stored(state))

    async def save_many_in(self, db: Any, states: list[tuple[str, str, ChainState]]) -> None:
        """Save several chains' states through ``db``, in the caller's transaction."""
        await check_fence(db, self._fence)
        rows = [(self.key(c), e, _stored(s)) for c, e, s in states]
        await db.executemany(self._upsert, rows)

    async def items(self) -> list[tuple[str, str, ChainState]]:
        rows = await self._guarded(
            "read",
            lambda: self._pool.fetch(
                f"SELECT connection, entity, state::text FROM {self.table} "  # noqa: S608
                "ORDER BY connection, entity"
            ),
        )
        return [(c, e, s) for k, e, s in _states(rows) if (c := self.unkey(k)) is not None]

    async def flush(self) -> None:
        """Every save is already committed."""

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._ready = False
        if pool is not None and self._owns_pool:
            await pool.close()


#: The key of a state stored as base64 because its JSON held U+0000 (``jsonb`` cannot).
_ENCODED: Final = "makini_b64"


def _stored(state: ChainState) -> str:
    """A state as ``jsonb`` text; one with U+0000 (a cursor may hold any text) as base64."""
    payload = orjson.dumps(state_to_json(state))
    if has_nul_escape(payload):
        return orjson.dumps({_ENCODED: base64.b64encode(payload).decode()}).decode()
    return payload.decode()


def _state(raw: str) -> ChainState | None:
    data = orjson.loads(raw)
    if isinstance(data, dict) and isinstance(data.get(_ENCODED), str) and len(data) == 1:
        data = orjson.loads(base64.b64decode(data[_ENCODED]))
    return state_from_json(data)


def _states(rows: Any) -> Iterator[tuple[str, str, ChainState]]:
    for connection, entity, raw in rows:
        state = _state(raw)
        if state is not None:
            yield connection, entity, state


async def create_table_once(db: Any, ddl: str) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` under a transaction-scoped advisory lock.

    Two processes creating the same table at once would otherwise race in
    the catalogue (a unique violation on ``pg_type``); the lock serialises them.
    """
    await db.execute("SELECT pg_advisory_xact_lock(7311442043)")
    await db.execute(ddl)
