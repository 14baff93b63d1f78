"""Where a receiver remembers the event ids it has accepted.

A store answers one question atomically: is this delivery the first of its
event id? (:meth:`EventStore.claim`). It also forgets a claim the receiver
could not honour (:meth:`EventStore.release`, so Makini's redelivery is
processed), learns when the handler is done with an event
(:meth:`EventStore.finish`), and gives back the events accepted but never
finished (:meth:`EventStore.unfinished`), which a receiver replays when it
starts: an event answered 200 is handled even if the process died before its
handler ran.

:class:`MemoryEventStore` (the default) keeps a bounded LRU of ids and
replays nothing; :class:`SQLiteEventStore` keeps ids and bodies in a file so
duplicates are recognised, and unfinished events replayed, after a restart.
Any object with these four async methods can be plugged in (a PostgreSQL
table, Redis).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from makini_async.errors import CheckpointError, UsageError
from makini_async.webhooks._signature import SeenEvents

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EventStore", "MemoryEventStore", "SQLiteEventStore"]

#: Makini redelivers for up to 24 hours: ids are kept twice as long by default.
DEFAULT_RETENTION: Final[float] = 48 * 3600.0


@runtime_checkable
class EventStore(Protocol):
    """Receiver-side de-duplication and at-least-once bookkeeping."""

    async def claim(self, event_id: str, body: bytes) -> bool:
        """``True`` for the first delivery of ``event_id`` (now remembered), else ``False``."""
        ...

    async def release(self, event_id: str) -> None:
        """Forget a claim the receiver refused (answered 503), so a redelivery is processed."""
        ...

    async def finish(self, event_id: str) -> None:
        """The handler is done with ``event_id`` (successfully or not)."""
        ...

    async def unfinished(self) -> list[bytes]:
        """Bodies of events claimed but never finished, oldest first (replayed at start)."""
        ...


class MemoryEventStore:
    """The ``maxsize`` most recent ids, in memory; nothing survives a restart."""

    def __init__(self, maxsize: int = 100_000) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            msg = f"maxsize must be an integer >= 1, got {maxsize!r}"
            raise UsageError(msg)
        self._seen = SeenEvents(maxsize)

    async def claim(self, event_id: str, body: bytes) -> bool:  # noqa: ARG002 - kept by disk stores
        return self._seen.check_and_add(event_id)

    async def release(self, event_id: str) -> None:
        self._seen.discard(event_id)

    async def finish(self, event_id: str) -> None:  # noqa: ARG002 - nothing to keep
        return None

    async def unfinished(self) -> list[bytes]:
        return []

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return f"<MemoryEventStore {len(self._seen)}/{self._seen.maxsize} ids>"


class SQLiteEventStore:
    """Ids and bodies in a SQLite file, kept ``retention`` seconds (wall clock).

    Each call is one small local transaction, run in place: a few
    milliseconds at most, which keeps claim atomic without a lock. Bodies are
    kept only until the handler finishes; webhook bodies carry connection
    ids, never tokens.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: float = DEFAULT_RETENTION,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            msg = f"path must be a str or a path, got {type(path).__name__}"
            raise UsageError(msg)
        if isinstance(retention, bool) or not isinstance(retention, (int, float)) or retention <= 0:
            msg = f"retention must be a number of seconds > 0, got {retention!r}"
            raise UsageError(msg)
        self.path = os.fspath(path)
        self.retention = float(retention)
        self._wall_clock = wall_clock
        self._claims = 0
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS webhook_events ("
                " id TEXT PRIMARY KEY, received REAL NOT NULL, body BLOB, done INTEGER NOT NULL)"
            )
        except sqlite3.Error as exc:
            msg = f"cannot open the webhook event store {self.path!r}: {type(exc).__name__}"
            raise CheckpointError(msg) from None

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            msg = f"webhook event store {self.path!r} failed: {type(exc).__name__}"
            raise CheckpointError(msg) from None

    async def claim(self, event_id: str, body: bytes) -> bool:
        now = self._wall_clock()
        cur = self._run(
            "INSERT OR IGNORE INTO webhook_events (id, received, body, done) VALUES (?, ?, ?, 0)",
            (event_id, now, bytes(body)),
        )
        self._claims += 1
        if self._claims % 1000 == 0:
            # Pruning now and then keeps the file bounded without a timer.
            self._run(
                "DELETE FROM webhook_events WHERE done = 1 AND received < ?",
                (now - self.retention,),
            )
        return cur.rowcount == 1

    async def release(self, event_id: str) -> None:
        self._run("DELETE FROM webhook_events WHERE id = ? AND done = 0", (event_id,))

    async def finish(self, event_id: str) -> None:
        self._run("UPDATE webhook_events SET done = 1, body = NULL WHERE id = ?", (event_id,))

    async def unfinished(self) -> list[bytes]:
        rows = self._run(
            "SELECT body FROM webhook_events WHERE done = 0 ORDER BY received"
        ).fetchall()
        return [bytes(row[0]) for row in rows if row[0] is not None]

    def close(self) -> None:
        """Close the file. Idempotent."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __repr__(self) -> str:
        return f"<SQLiteEventStore {self.path!r}>"
