"""The DuckDB sink: an embedded analytics database file, loaded through Arrow, exactly once.

``DuckDBSink("warehouse.duckdb")`` (``duckdb:FILE`` on the command line)
keeps the PostgreSQL sink's layout in one file a user opens with the
``duckdb`` CLI or ``duckdb.connect()``: a table per entity
(``makini_work_orders``: ``connection, id, updated_at, created_at, record
JSON, request_id, pulled_at``, keyed by ``(connection, id)``, newest
``updated_at`` wins), ``makini_invalid_records`` for records that do not fit
their model, and ``makini_checkpoints`` with each chain's cursor.

Guarantee: **exactly once**. Pages are group-committed
(:mod:`makini_async.sinks._group`): a batch's rows go in as one Arrow table
per entity (``INSERT ... SELECT ... ON CONFLICT DO UPDATE``) and its chains'
cursors in the same transaction, so a process killed at any instant resumes
after the last committed batch. DuckDB allows one writing process per file:
a second pull into the same file gets a :class:`~makini_async.errors.SinkError`.
U+0000 lands as U+FFFD, as in every sink.

Needs the ``duckdb`` extra (``duckdb`` and ``pyarrow``). DuckDB's calls run
on one thread of their own, so the pull keeps fetching while a batch commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from makini_async.checkpoint import state_from_json, state_to_json
from makini_async.errors import SinkError, UsageError
from makini_async.sinks._arrow import arrow_pool
from makini_async.sinks._batched import BatchedRows
from makini_async.sinks._rows import INVALID_COLUMNS, ROW_COLUMNS, merge_batch

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity
    from makini_async.sinks._group import Pending

__all__ = ["DEFAULT_DUCKDB_BATCH_ROWS", "DEFAULT_MEMORY_LIMIT", "DuckDBSink"]

#: DuckDB's memory limit (its buffer pool): without one it takes up to 80 % of the
#: machine's memory (763 MiB of RSS in a pull of 300 connections x 1,000 realistic work
#: orders). In that pull, in-process, 128 MB peaked at 335-339 MiB and 16,000-19,000
#: records/s, 64 MB at 273-275 MiB and 13,700-15,400 records/s: the memory kept in bounds
#: costs about a tenth of DuckDB's speed.
DEFAULT_MEMORY_LIMIT: Final = "64MB"
#: Rows per DuckDB transaction. Measured on 300 connections x 1,000 realistic work orders:
#: 5,000-row batches peak at 338 MiB of RSS (23,400 records/s), 20,000-row ones at 385 MiB.
DEFAULT_DUCKDB_BATCH_ROWS: Final = 5_000

T = TypeVar("T")

# The records' JSON is stored with zstd (DuckDB 1.2+). DuckDB's own choice for
# long text (FSST, tried on every segment when it checkpoints) took 40 % of a
# load of realistic work orders and wrote a file 3.8 times larger: 100,000
# of them load at 23,000 rows/s into 87 MiB with it, 41,000 rows/s into 23 MiB
# with zstd. A table made before keeps what it was made with.
_RECORD: Final = "record JSON{} USING COMPRESSION zstd"
_ROWS: Final = (
    "connection VARCHAR NOT NULL, id VARCHAR NOT NULL, updated_at TIMESTAMPTZ, "
    f"created_at TIMESTAMPTZ, {_RECORD.format(' NOT NULL')}, request_id VARCHAR, "
    "pulled_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (connection, id)"
)
_INVALID: Final = (
    "connection VARCHAR NOT NULL, entity VARCHAR NOT NULL, id VARCHAR, field VARCHAR, "
    f"reason VARCHAR, request_id VARCHAR, {_RECORD.format('')}, "
    "pulled_at TIMESTAMPTZ NOT NULL DEFAULT now()"
)
_STATES: Final = (
    "connection VARCHAR NOT NULL, entity VARCHAR NOT NULL, state JSON NOT NULL, "
    "saved_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (connection, entity)"
)
_STAGE: Final = "makini_stage"


def _duckdb() -> Any:
    try:
        import duckdb  # noqa: PLC0415 - an optional extra
        import pyarrow  # noqa: F401, PLC0415
    except ImportError:
        msg = "the DuckDB sink needs the duckdb extra: pip install 'makini-async[duckdb]'"
        raise UsageError(msg) from None
    return duckdb


class DuckDBCheckpoint:
    """The chain states in the sink's file, committed with the pages (its checkpoint store)."""

    def __init__(self, sink: DuckDBSink) -> None:
        self._sink = sink

    @property
    def location(self) -> str:
        return f"{self._sink.location} table {self._sink.checkpoint_table}"

    async def open(self) -> None:
        await self._sink.connect()

    async def load(self, connection: str, entity: str) -> ChainState | None:
        sql = f"SELECT state FROM {self._sink.checkpoint_table} WHERE connection = ? AND entity = ?"  # noqa: S608
        rows = await self._sink.run(lambda db: db.execute(sql, [connection, entity]).fetchall())
        return state_from_json(orjson.loads(rows[0][0])) if rows else None

    async def save(self, connection: str, entity: str, state: ChainState) -> None:
        # Outside a batch (a chain's start, or start again): pages before it land first.
        await self._sink.flush()
        await self._sink.run(
            lambda db: self._sink.save_states(db, [(connection, entity, state)]), commit=True
        )

    async def flush(self) -> None:
        await self._sink.flush()

    async def close(self) -> None:
        """The sink closes the file."""


class DuckDBSink(BatchedRows):
    """``PREFIX + entity`` tables in a DuckDB file; pages and cursors group-committed.

    ``memory_limit`` is DuckDB's own (``"64MB"`` by default; ``None``: DuckDB's
    default of 80 % of the machine's memory).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table_prefix: str = "makini_",
        max_batch_rows: int = DEFAULT_DUCKDB_BATCH_ROWS,
        max_batch_delay: float = 1.0,
        memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        _duckdb()
        if not table_prefix.replace("_", "a").isalnum() or not table_prefix[:1].isalpha():
            msg = f"table_prefix must be letters, digits and '_', got {table_prefix!r}"
            raise UsageError(msg)
        if not max_batch_delay >= 0 or max_batch_rows < 1:
            msg = "max_batch_rows must be >= 1 and max_batch_delay >= 0 seconds"
            raise UsageError(msg)
        self.path = Path(path)
        self._prefix = table_prefix
        self.checkpoint_table = f"{table_prefix}checkpoints"
        self._invalid_table = f"{table_prefix}invalid_records"
        self._batch_settings = (max_batch_rows, max_batch_delay, 1)
        # DuckDB's buffer manager takes up to 80 % of the machine's memory by default.
        self._config: dict[str, Any] = (
            {} if memory_limit is None else {"memory_limit": memory_limit}
        )
        self._db: Any = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._store = DuckDBCheckpoint(self)
        self._upserts: dict[Entity, str] = {}
        self.tables: dict[Entity, str] = {}

    #: The records are encoded again from the parsed page, not taken as sent: of a key
    #: sent twice, DuckDB's JSON functions read the first value, where the pull (and
    #: PostgreSQL's jsonb) keep the last.
    reads_texts = False

    def __repr__(self) -> str:
        return f"<DuckDBSink {self.path}>"

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def destination(self) -> str:
        return f"{self.location} tables {self._prefix}*"

    @property
    def checkpoint_store(self) -> DuckDBCheckpoint:
        return self._store

    def table(self, entity: Entity) -> str:
        return self._prefix + entity.value.replace("-", "_")

    # -- the file, on its own thread ---------------------------------------------

    async def connect(self) -> None:
        """Open the file (once): a file another process writes is refused."""
        if self._db is not None:
            return
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="makini-duckdb")
        duckdb = _duckdb()

        def connect() -> Any:
            db = duckdb.connect(str(self.path), config=self._config)
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.checkpoint_table} ({_STATES})")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self._invalid_table} ({_INVALID})")
            return db

        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._thread, connect)
        except Exception as exc:  # noqa: BLE001 - duckdb's errors: a lock held, a bad file
            self._thread.shutdown(wait=False)
            self._thread = None
            msg = f"cannot open DuckDB file {self.path}: {exc}"
            raise SinkError(msg) from None

    async def run(self, work: Callable[[Any], T], *, commit: bool = False) -> T:
        """``work(db)`` on the file's thread (in a transaction if ``commit``)."""
        if self._db is None or self._thread is None:
            msg = f"the DuckDB sink {self.path} is not open"
            raise SinkError(msg)
        db = self._db

        def call() -> T:
            if not commit:
                return work(db)
            db.execute("BEGIN TRANSACTION")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def save_states(self, db: Any, states: list[tuple[str, str, ChainState]]) -> None:
        # Through Arrow: DuckDB's executemany runs one statement per row (~1 ms each).
        rows = [(c, e, orjson.dumps(state_to_json(s)).decode()) for c, e, s in states]
        _insert_arrow(
            db,
            f"INSERT INTO {self.checkpoint_table} (connection, entity, state, saved_at) "  # noqa: S608
            f"SELECT connection, entity, state, now() FROM {_STAGE} "
            "ON CONFLICT (connection, entity) "
            "DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
            rows,
            ("connection", "entity", "state"),
        )

    # -- the Sink protocol ---------------------------------------------------------

    async def open(self, entities: Sequence[Entity]) -> None:
        await self.connect()
        tables = {entity: self.table(entity) for entity in entities}

        def prepare(db: Any) -> None:
            for table in tables.values():
                db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_ROWS})")

        try:
            await self.run(prepare, commit=True)
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - duckdb's errors
            msg = f"cannot prepare tables in {self.path}: {exc}"
            raise SinkError(msg) from None
        for entity, table in tables.items():
            self.tables[entity] = table
            self._upserts[entity] = _upsert_sql(table)

    async def _commit(self, batch: list[Pending]) -> None:
        import pyarrow as pa  # noqa: PLC0415 - the optional extra

        merged, invalid, states = merge_batch(batch)
        stamp = pa.timestamp("us", tz="UTC")
        text, json = pa.string(), _json_type()
        row_types = (text, text, stamp, stamp, json, text)
        invalid_types = (text,) * (len(INVALID_COLUMNS) - 1) + (json,)

        def store(db: Any) -> None:
            for entity, latest in merged.items():
                if latest:
                    sql = self._upserts[entity]
                    _insert_arrow(db, sql, list(latest.values()), ROW_COLUMNS, row_types)
            if invalid:
                _insert_arrow(
                    db,
                    f"INSERT INTO {self._invalid_table} ({', '.join(INVALID_COLUMNS)}) "  # noqa: S608
                    f"SELECT * FROM {_STAGE}",
                    invalid,
                    INVALID_COLUMNS,
                    invalid_types,
                )
            if states:
                self.save_states(db, [(c, e, s) for (c, e), s in states.items()])

        first = batch[0]
        what = f"a {first.entity.value} page" if len(batch) == 1 else f"{len(batch)} pages"
        try:
            await self.run(store, commit=True)
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - duckdb's and Arrow's errors
            msg = f"cannot store {what} in {self.path}: {type(exc).__name__}: {exc}"
            raise SinkError(msg, connection=first.connection) from None

    async def close(self) -> None:
        try:
            await self._close_batches()
        finally:
            db, self._db = self._db, None
            thread, self._thread = self._thread, None
            if db is not None and thread is not None:
                await asyncio.get_running_loop().run_in_executor(thread, db.close)
            if thread is not None:
                thread.shutdown(wait=True)


def _json_type() -> Any:
    """Arrow's JSON type where pyarrow has it (19+), else text.

    The records are JSON that orjson wrote. Typed as JSON in Arrow, DuckDB
    stores them in a JSON column as they are; sent as text, it parses each
    one to check it (an in-memory upsert of 5,000-row batches of realistic
    work orders: 54,000 rows/s as text, 70,000 typed).
    """
    import pyarrow as pa  # noqa: PLC0415 - the optional extra

    make = getattr(pa, "json_", None)
    return pa.string() if make is None else make(pa.string())


def _insert_arrow(
    db: Any,
    sql: str,
    rows: list[tuple[Any, ...]],
    names: Sequence[str],
    types: Sequence[Any] | None = None,
) -> None:
    """Run ``sql`` with ``rows`` registered as the staging table (text columns by default)."""
    import pyarrow as pa  # noqa: PLC0415 - the optional extra

    kinds = types or [pa.string()] * len(names)
    pool = arrow_pool()
    columns = [
        pa.array([row[i] for row in rows], type=kind, memory_pool=pool)
        for i, kind in enumerate(kinds)
    ]
    db.register(_STAGE, pa.Table.from_arrays(columns, names=list(names)))
    try:
        db.execute(sql)
    finally:
        db.unregister(_STAGE)


def _upsert_sql(table: str) -> str:
    return (
        f"INSERT INTO {table} (connection, id, updated_at, created_at, record, request_id, "  # noqa: S608
        f"pulled_at) SELECT connection, id, updated_at, created_at, record, request_id, now() "
        f"FROM {_STAGE} ON CONFLICT (connection, id) DO UPDATE SET "
        "updated_at = excluded.updated_at, created_at = excluded.created_at, "
        "record = excluded.record, request_id = excluded.request_id, "
        "pulled_at = excluded.pulled_at "
        f"WHERE {table}.updated_at IS NULL OR excluded.updated_at >= {table}.updated_at"
    )
