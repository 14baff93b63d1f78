"""The SQLite checkpoint store: one row per chain, saves committed in groups.

Saves are collected and committed together (WAL, one transaction) once
``group_pages`` of them are pending or ``group_seconds`` after the first,
and at every ``flush`` (the pull flushes when it ends). A pull saves a
chain's cursor only after its page is handled, so committing later only
means a process killed meanwhile hands a few more pages again: at least
once, as before, at a fraction of the cost of a transaction per page.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from makini_async.checkpoint._identity import SEPARATOR
from makini_async.checkpoint._stores import (
    ChainState,
    _loads,
    _prepare,
    _state_from_json,
    _state_to_json,
    _unkey,
)
from makini_async.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

__all__ = ["SQLiteCheckpoint"]


class SQLiteCheckpoint:
    """A checkpoint in an SQLite file (one row per chain, saves committed in groups)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock: bool = True,
        group_pages: int = 64,
        group_seconds: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self._pending: dict[tuple[str, str], str] = {}
        self._first_pending = 0.0
        self._group = (max(1, group_pages), max(0.0, group_seconds))
        self._lock = _prepare(self.path, lock=lock)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chains (connection TEXT NOT NULL, "
                "entity TEXT NOT NULL, state TEXT NOT NULL, "
                "PRIMARY KEY (connection, entity))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS states (name TEXT PRIMARY KEY, identity TEXT NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            self._release()
            msg = f"cannot open checkpoint {self.path}: {exc}"
            raise UsageError(msg) from None
        self._state: str | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    # -- named states (see makini_async.checkpoint._identity) ------------------------

    def use_state(self, name: str) -> None:
        """Read and write the chains of state ``name`` from now on."""
        self._state = name

    def _scope(self) -> str:
        # Not told which state: the only one there is, else the chains from before states.
        if self._state is None:
            names = self._db.execute("SELECT name FROM states LIMIT 2").fetchall()
            self._state = names[0][0] if len(names) == 1 else ""
        return self._state

    def _key(self, connection: str) -> str:
        scope = self._scope()
        return f"{scope}{SEPARATOR}{connection}" if scope else connection

    def read_identity(self, name: str) -> Any:
        row = self._run("read", "SELECT identity FROM states WHERE name = ?", (name,)).fetchone()
        return None if row is None else _loads(row[0])

    def write_identity(self, name: str, data: dict[str, Any]) -> None:
        self._run(
            "write",
            "INSERT INTO states (name, identity) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET identity = excluded.identity",
            (name, orjson.dumps(data).decode()),
        )

    def adopt_legacy(self, name: str, chains: list[tuple[str, str]]) -> int:
        """Move these chains, written before states, under ``name``; how many moved."""
        self._commit()
        legacy = "SELECT 1 FROM chains WHERE instr(connection, ?) = 0 LIMIT 1"
        if self._run("read", legacy, (SEPARATOR,)).fetchone() is None:
            return 0  # nothing from before states: the common case, one quick scan
        before = self._db.total_changes
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "UPDATE OR IGNORE chains SET connection = ? "
                    "WHERE connection = ? AND entity = ?",
                    [(f"{name}{SEPARATOR}{c}", c, e) for c, e in chains],
                )
        except sqlite3.Error as exc:
            msg = f"cannot write checkpoint {self.path}: {exc}"
            raise CheckpointError(msg) from None
        return self._db.total_changes - before

    def drop_state(self, name: str) -> None:
        """Forget every chain of state ``name``."""
        self._commit()
        prefix = f"{name}{SEPARATOR}"
        self._run(
            "write",
            "DELETE FROM chains WHERE substr(connection, 1, ?) = ?",
            (len(prefix), prefix),
        )

    def _run(self, what: str, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            msg = f"cannot {what} checkpoint {self.path}: {exc}"
            raise CheckpointError(msg) from None

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def load(self, connection: str, entity: str) -> ChainState | None:
        pending = self._pending.get((self._key(connection), entity))
        if pending is not None:
            return _state_from_json(_loads(pending))
        try:
            row = self._db.execute(
                "SELECT state FROM chains WHERE connection = ? AND entity = ?",
                (self._key(connection), entity),
            ).fetchone()
        except sqlite3.Error as exc:
            msg = f"cannot read checkpoint {self.path}: {exc}"
            raise CheckpointError(msg) from None
        if row is None:
            return None
        return _state_from_json(_loads(row[0]))

    def save(self, connection: str, entity: str, state: ChainState) -> None:
        pending = self._pending
        if not pending:
            self._first_pending = time.monotonic()
        pending[(self._key(connection), entity)] = orjson.dumps(_state_to_json(state)).decode()
        pages, seconds = self._group
        if len(pending) >= pages or time.monotonic() - self._first_pending >= seconds:
            self._commit()

    def _commit(self) -> None:
        """Commit every pending save in one transaction."""
        if not self._pending:
            return
        rows = [(c, e, s) for (c, e), s in self._pending.items()]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO chains (connection, entity, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (connection, entity) DO UPDATE SET state = excluded.state",
                    rows,
                )
        except sqlite3.Error as exc:
            msg = f"cannot write checkpoint {self.path}: {exc}"
            raise CheckpointError(msg) from None
        self._pending.clear()

    def items(self) -> Iterator[tuple[str, str, ChainState]]:
        """Every chain of the state in use: ``(connection, entity, state)``."""
        self._commit()
        scope = self._scope()
        for key, entity, raw in self._db.execute(
            "SELECT connection, entity, state FROM chains ORDER BY connection, entity"
        ):
            connection = _unkey(scope, key)
            state = None if connection is None else _state_from_json(_loads(raw))
            if connection is not None and state is not None:
                yield connection, entity, state

    def flush(self) -> None:
        """Commit the saves still pending."""
        self._commit()

    def close(self) -> None:
        try:
            self._commit()
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._release()
