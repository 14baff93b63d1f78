"""Checkpoint stores for bulk pulls: where each (connection, entity) chain stands.

A chain's state records the cursor of the last page *fully handed to the
consumer* and the filter of the run that cursor belongs to (a cursor is only
valid with the same filter), plus the high-water mark for the next
incremental pull once a run completes. Chains are keyed by the connection's
display name, never by its token.

Two stores ship, both standard library only:

* :class:`SQLiteCheckpoint` (``*.sqlite``/``*.db``; the default): one row per
  chain, written in WAL mode and committed at every page, so a process
  killed at any instant loses at most the page in hand (which is delivered
  again on resume: at-least-once).
* :class:`JSONCheckpoint` (``*.json``): the whole state in one file, replaced
  atomically (write to a temporary file, fsync, rename) at most every
  ``flush_interval`` seconds and on close. A lagging checkpoint is still safe:
  it only means more pages are delivered again after a crash.

Other stores implement :class:`CheckpointStore`, or :class:`AsyncCheckpointStore`
for a store behind a network (``makini_async.checkpoint.PostgresCheckpoint``, the
store for many processes).

A store holds one *state* per destination (see ``_identity``): each state
records where its records land (sink kind and location, never a password),
its entities, filters and unit layout, and its chains are keyed under its
name. A pull binds the store to its state before planning any chain; a state
recorded for another destination raises :class:`CheckpointMismatch` unless
the pull starts it over (``fresh=True``). Chains written before states are
adopted, once, by the first pull that has them.

A store opened from a path takes an exclusive lock on ``PATH.lock`` (with
``flock``, released when the store closes or the process dies): a second
run on the same checkpoint fails at once with :class:`CheckpointError`
instead of pulling everything a second time. Pass ``lock=False`` where
several processes of one pull share a store on purpose.

In PostgreSQL, a sharded pull's driver takes a :class:`PullLease` instead: a
session advisory lock (a second driver gets
:class:`~makini_async.errors.CheckpointInUse`; a driver that dies releases it
at once) and a new epoch, which every unit's commits check as a
:class:`Fence` (units of a dead driver cannot write once another took over).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from makini_async.checkpoint._fence import Fence
from makini_async.checkpoint._identity import (
    CheckpointMismatch,
    StateIdentity,
    StateUse,
    default_state_name,
)
from makini_async.checkpoint._lease import PullLease
from makini_async.checkpoint._postgres import PostgresCheckpoint, safe_dsn
from makini_async.checkpoint._sqlite import SQLiteCheckpoint
from makini_async.checkpoint._stores import (
    AsyncCheckpointStore,
    ChainState,
    CheckpointStore,
    JSONCheckpoint,
    state_from_json,
    state_to_json,
)
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AsyncCheckpointStore",
    "ChainState",
    "CheckpointMismatch",
    "CheckpointStore",
    "Fence",
    "JSONCheckpoint",
    "PostgresCheckpoint",
    "PullLease",
    "SQLiteCheckpoint",
    "StateIdentity",
    "StateUse",
    "default_state_name",
    "open_checkpoint",
    "safe_dsn",
    "state_from_json",
    "state_to_json",
]


def open_checkpoint(
    value: str | os.PathLike[str] | CheckpointStore | AsyncCheckpointStore,
    *,
    lock: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> CheckpointStore | AsyncCheckpointStore:
    """A store from a path (``.json`` gives JSON, anything else SQLite), a DSN or a store.

    A ``postgresql://`` DSN gives a :class:`~makini_async.checkpoint.PostgresCheckpoint`
    (the ``postgresql`` extra). A store opened from a path is locked for this
    run (see the module docs); a PostgreSQL store is shared on purpose.
    """
    if isinstance(value, str) and value.startswith(("postgresql://", "postgres://")):
        return PostgresCheckpoint(value)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if path.suffix.lower() == ".json":
            return JSONCheckpoint(path, lock=lock, clock=clock)
        return SQLiteCheckpoint(path, lock=lock)
    if isinstance(value, (CheckpointStore, AsyncCheckpointStore)):
        return value
    msg = f"checkpoint must be a path or a CheckpointStore, got {type(value).__name__}"
    raise UsageError(msg)
