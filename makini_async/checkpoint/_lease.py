"""One driver at a time on a PostgreSQL checkpoint, and fenced workers.

A sharded pull's driver (the process running ``ShardedPull.run``) holds a
session advisory lock for as long as it runs. PostgreSQL drops the lock the
moment the driver's connection ends (the process killed, its machine gone),
so a restarted driver takes over at once, and a second driver started
beside a live one gets :class:`~makini_async.errors.CheckpointInUse`.

Taking the lease bumps an *epoch* in ``makini_leases``. Every unit carries
the epoch it was started under (a :class:`Fence`), and each of its commits
reads the epoch ``FOR SHARE`` in the same transaction: once a new driver
has taken the lease, units of the old one (a Ray task still running after
its driver died) can no longer write, and a commit in flight finishes before
the new epoch is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from makini_async.checkpoint import _pg_faults
from makini_async.checkpoint._fence import LEASES_TABLE, Fence
from makini_async.checkpoint._postgres import (
    check_identifier,
    create_table_once,
    postgres_error,
    safe_dsn,
)
from makini_async.errors import CheckpointError, CheckpointInUse

__all__ = ["PullLease"]

#: The first key of the two-key advisory lock: leases' own namespace.
_LOCK_CLASS: Final = 0x6D6B_6C65  # "mkle"
#: Seconds between checks that the lock's connection is still up.
KEEP_INTERVAL: Final = 5.0


class PullLease:
    """The driver's hold on one checkpoint, by ``name`` (no secret in it), in ``dsn``'s database."""

    def __init__(self, dsn: str, name: str, *, table: str = LEASES_TABLE) -> None:
        self._dsn = dsn
        self.name = name
        self.table = check_identifier(table)
        self._db: Any = None
        self.fence: Fence | None = None
        self._keeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<PullLease {self.name!r} on {safe_dsn(self._dsn)} epoch={self.epoch}>"

    @property
    def epoch(self) -> int | None:
        return None if self.fence is None else self.fence.epoch

    async def acquire(self) -> Fence:
        """Take the lease (a new epoch), or raise :class:`CheckpointInUse`."""
        db = await self._lock()
        try:
            async with db.transaction():
                await create_table_once(
                    db,
                    f"CREATE TABLE IF NOT EXISTS {self.table} (name text PRIMARY KEY, "
                    "epoch bigint NOT NULL, taken_at timestamptz NOT NULL)",
                )
                epoch = await db.fetchval(
                    f"INSERT INTO {self.table} AS t (name, epoch, taken_at) "  # noqa: S608
                    "VALUES ($1, 1, now()) ON CONFLICT (name) DO UPDATE "
                    "SET epoch = t.epoch + 1, taken_at = now() RETURNING epoch",
                    self.name,
                )
        except Exception as exc:
            await self._drop()
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(postgres_error("cannot take the lease", self._dsn, exc)) from None
        self.fence = Fence(self.name, int(epoch), self.table)
        self._keeper = asyncio.create_task(self._keep())
        return self.fence

    async def _lock(self) -> Any:
        asyncpg = _pg_faults.asyncpg_module()
        try:
            db = await asyncpg.connect(self._dsn, timeout=30, command_timeout=60)
        except Exception as exc:  # noqa: BLE001 - told without the password
            msg = postgres_error("cannot connect to PostgreSQL", self._dsn, exc)
            raise CheckpointError(msg) from None
        self._db = db
        try:
            got = await db.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_CLASS, self.name
            )
        except Exception as exc:  # noqa: BLE001 - asyncpg's errors, told without a password
            await self._drop()
            raise CheckpointError(postgres_error("cannot take the lease", self._dsn, exc)) from None
        if not got:
            await self._drop()
            msg = (
                f"another pull is running on checkpoint {self.name!r} in "
                f"{safe_dsn(self._dsn)}: wait for it to end (a driver that died "
                "releases it at once), or use another checkpoint"
            )
            raise CheckpointInUse(msg)
        return db

    async def _keep(self) -> None:
        """Take the lock again after its connection dropped (a database restart).

        Only liveness rides on this: if another driver took the lease
        meanwhile, it bumped the epoch, and the fence stops this pull's
        units from writing whatever happens here.
        """
        while True:
            await asyncio.sleep(KEEP_INTERVAL)
            if self._db is not None and not self._db.is_closed():
                continue
            with contextlib.suppress(CheckpointError):
                await self._lock()

    async def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                await db.close(timeout=5)

    async def release(self) -> None:
        """Give the lease up (closing the connection drops the lock)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._drop()
