"""The sync service: every (connection, entity) pulled on its schedule, and at once when told.

One loop asks the :class:`~makini_async.sync._schedule.Schedule` what is due,
claims those chains in the sync table (other instances skip them), and runs
one :class:`~makini_async.Pull` per entity over the due connections, each
landing through the one held sink. A pull's chains end as a pull's chains
do (completed, failed, reauthorization required); the schedule then places
each chain's next pull, and the table records what ``/status`` shows.
Webhooks and a reload only change the schedule and wake the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

from makini_async.bulk import ConnectionSource, Outcome, Pull, PullOptions
from makini_async.errors import MakiniError, UsageError
from makini_async.sync._held import HeldSink
from makini_async.sync._schedule import Key, Schedule
from makini_async.sync._state import (
    ACTIVE,
    REAUTHORIZATION_REQUIRED,
    ChainStatus,
    ConnectionStatus,
    chain_error,
    connection_pairs,
    parse_utc,
)
from makini_async.sync._table import SyncTable

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from makini_async.bulk import ChainReport, Sink
    from makini_async.connection import Connection
    from makini_async.entities import Entity
    from makini_async.telemetry._otel import Telemetry
    from makini_async.webhooks import WebhookEvent

    ReauthHook = Callable[[str], "Awaitable[None] | None"]

__all__ = ["SyncPool", "SyncService"]

logger = logging.getLogger("makini_async")


class SyncPool(ConnectionSource, Protocol):
    """What a sync needs of its pool (a :class:`~makini_async.MakiniPool` is one)."""

    telemetry: Telemetry | None

    def bind_connection_id(
        self, connection: Connection | str, connection_id: str
    ) -> Connection: ...
    def find_connection(self, connection_id: str) -> Connection | None: ...
    def connection_status(self, connection: Connection) -> str: ...
    async def apply_webhook(self, event: WebhookEvent) -> object: ...


class SyncService:
    """Keeps every connection's ``entities`` mirrored into one sink: see ``pool.sync``."""

    def __init__(
        self,
        pool: SyncPool,
        entities: Sequence[Entity],
        connections: Iterable[tuple[str, str]],
        *,
        sink: Sink,
        dsn: str | None,
        every: float,
        options: PullOptions,
        on_reauthorization: ReauthHook | None = None,
        instance: str | None = None,
        lease: float = 60.0,
        table_prefix: str = "makini_",
        learn_ids: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not entities:
            raise UsageError("a sync needs at least one entity")
        self.pool = pool
        self.entities = tuple(entities)
        self.every = float(every)
        self.options = options
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._held = HeldSink(sink)
        self._table = (
            None
            if dsn is None
            else SyncTable(dsn, prefix=table_prefix, owner=self.instance, lease=lease)
        )
        self._hook = on_reauthorization
        self._telemetry = pool.telemetry
        #: Learn connections' Makini ids (``GET /connection``): webhooks name them by it.
        self.learn_ids = learn_ids
        self._clock = clock
        self._wall = wall_clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._sleep = sleep
        self.schedule = Schedule(self.every, rng=rng)
        #: Pull a key due within this many seconds with the ones due now: fewer, larger
        #: pulls (1% of the interval, at most 10 s early).
        self.gather = min(10.0, self.every / 100)
        self._tokens: dict[str, str] = {}
        self.connections: dict[str, ConnectionStatus] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pulls: set[Pull[Any]] = set()
        self._wake = asyncio.Event()
        #: Set while the loop waits with no pull running and nothing due.
        self._quiet = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self.pulls_run = 0
        self._pending = list(connections)
        self._learning: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sink and the table, schedule every chain, and start the loop."""
        await self._held.open(self.entities)
        if self._table is not None:
            await self._table.open()
        await self.reload(self._pending)
        self._pending = []
        self._loop_task = asyncio.create_task(self._loop(), name="makini-sync")

    async def stop(self) -> None:
        """Start no pull; let running ones land what they fetched; close. Idempotent."""
        self._stopping = True
        self._wake.set()
        for pull in list(self._pulls):
            pull.stop()
        for task in (self._loop_task, self._learning):
            if task is not None:
                if task is self._learning:
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._loop_task = self._learning = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._held.close()
        finally:
            if self._table is not None:
                await self._table.close()

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until no pull runs and nothing is due now (the first mirror is done)."""

        await asyncio.wait_for(self._quiet.wait(), timeout)

    # -- connections ----------------------------------------------------------------

    async def reload(self, connections: Iterable[tuple[str, str]]) -> None:
        """Sync exactly ``connections`` from now on: new ones start, removed ones stop.

        A known name with a new token keeps its handle and state (the token is
        replaced in place, as ``pool.connection`` does).
        """
        wanted = connection_pairs(connections)
        removed = set(self._tokens) - set(wanted)
        for name in removed:
            del self._tokens[name]
            self.connections.pop(name, None)
            for entity in self.entities:
                self.schedule.remove((name, entity.value))
        keys = [(n, e.value) for n in wanted if n not in self._tokens for e in self.entities]
        rows = {} if self._table is None or not keys else await self._table.ensure(keys)
        now = self._clock()
        for name, token in wanted.items():
            known = self._tokens.get(name)
            self._tokens[name] = token
            conn = self.pool.connection(token, name=name)
            if known is not None:
                continue
            status = self.connections.setdefault(name, ConnectionStatus())
            for entity in self.entities:
                key = (name, entity.value)
                row = rows.get(key)
                chain = ChainStatus() if row is None else ChainStatus.of(row)
                status.chains[entity.value] = chain
                if row is not None:
                    status.state = row.status
                    if row.connection_id and conn.connection_id is None:
                        self.pool.bind_connection_id(conn, row.connection_id)
                # A chain that never completed is pulled at once (its first, full pull).
                self.schedule.add(key, now, at_once=chain.last_success is None)
                if status.state != ACTIVE:
                    self.schedule.pause(key)
        if removed or keys:
            logger.info(
                "sync: %d connections (%d added, %d removed)", len(wanted), len(keys), len(removed)
            )
        self._poke()
        if self.learn_ids and (self._learning is None or self._learning.done()):
            self._learning = asyncio.create_task(self._learn_ids(), name="makini-sync-ids")

    async def _learn_ids(self) -> None:
        """Learn the Makini id of connections that have none: webhooks name them by it."""
        unknown = [
            self.pool.connection(self._tokens[name], name=name)
            for name, status in self.connections.items()
            if status.state == ACTIVE and self._handle(name).connection_id is None
        ]
        if not unknown:
            return

        slots = asyncio.Semaphore(20)

        async def learn(conn: Connection) -> None:
            async with slots:
                try:
                    info = await conn.info()
                    if self._table is not None:
                        await self._table.set_connection_id(conn.name, info.id)
                except MakiniError as exc:
                    logger.warning(
                        "sync: no Makini id for %s (%s): its webhooks are ignored", conn.name, exc
                    )

        await asyncio.gather(*(learn(conn) for conn in unknown))

    def _handle(self, name: str) -> Connection:
        return self.pool.connection(self._tokens[name], name=name)

    def held(self, connection_id: str | None) -> Connection | None:
        """The handle of the connection Makini calls ``connection_id``, if this sync holds it."""
        conn = None if connection_id is None else self.pool.find_connection(connection_id)
        return conn if conn is not None and conn.name in self._tokens else None

    # -- what changes the schedule --------------------------------------------------

    def _poke(self) -> None:
        """The schedule changed: the loop looks again (and the sync is not idle until it has)."""
        self._quiet.clear()
        self._wake.set()

    def trigger(self, name: str, entity: str | None = None) -> int:
        """Pull ``name``'s ``entity`` (every entity for ``None``) at once; how many chains."""
        now = self._clock()
        wanted = [e.value for e in self.entities if entity is None or e.value == entity]
        started = sum(self.schedule.trigger((name, e), now) for e in wanted)
        self._poke()
        return started

    async def needs_reauthorization(self, name: str) -> None:
        """Stop calling ``name``: record it, and tell the hook once per transition."""
        status = self.connections.get(name)
        if status is None or status.state == REAUTHORIZATION_REQUIRED:
            return
        status.state = REAUTHORIZATION_REQUIRED
        for entity in self.entities:
            self.schedule.pause((name, entity.value))
        if self._table is not None:
            await self._table.set_status(name, REAUTHORIZATION_REQUIRED)
        logger.warning("sync: %s needs reauthorization; its pulls are paused", name)
        if self._hook is not None:
            try:
                result = self._hook(name)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("sync: the reauthorization hook failed for %s", name)

    async def resume(self, name: str) -> None:
        """The connection is active again: clear its mark and pull it at once."""
        status = self.connections.get(name)
        if status is None or status.state == ACTIVE:
            return
        status.state = ACTIVE
        self._handle(name).reset()
        now = self._clock()
        for entity in self.entities:
            self.schedule.resume((name, entity.value), now)
        if self._table is not None:
            await self._table.set_status(name, ACTIVE)
        logger.info("sync: %s is active again; pulling it", name)
        self._poke()

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        renew_every = self._table.lease / 3 if self._table is not None else None
        next_renew = self._clock() + (renew_every or 0.0)
        while not self._stopping:
            now = self._clock()
            if renew_every is not None and now >= next_renew:
                next_renew = now + renew_every
                await self._renew()
            due = self.schedule.due(now + self.gather)
            if due:
                try:
                    await self._start(due, now)
                except MakiniError as exc:
                    logger.warning("sync: cannot start pulls: %s", exc)
                    for key in due:
                        self.schedule.not_run(key, now)
                continue
            nxt = self.schedule.next_due()
            wait = None if nxt is None else max(0.0, nxt - now)
            if renew_every is not None:
                wait = max(0.0, next_renew - now) if wait is None else min(wait, next_renew - now)
            await self._nap(wait)

    async def _nap(self, seconds: float | None) -> None:
        self._wake.clear()
        if self._stopping:
            return
        if not self._tasks and not self.schedule.retrying:
            self._quiet.set()
        waker = asyncio.ensure_future(self._wake.wait())
        waiting: set[asyncio.Future[Any]] = {waker}
        if seconds is not None:
            waiting.add(asyncio.ensure_future(self._sleep(seconds)))
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waiting:
                future.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _renew(self) -> None:
        running = [
            (name, entity)
            for name, status in self.connections.items()
            for entity, chain in status.chains.items()
            if chain.running
        ]
        if running and self._table is not None:
            try:
                await self._table.renew(running)
            except MakiniError as exc:
                logger.warning("sync: cannot renew leases: %s", exc)

    async def _start(self, due: list[Key], now: float) -> None:
        self._quiet.clear()
        keys = due if self._table is None else await self._table.claim(due)
        for key in set(due) - set(keys):
            self.schedule.not_run(key, now)  # another instance has it
        by_entity: dict[str, list[str]] = {}
        for name, entity in keys:
            if name in self._tokens:
                by_entity.setdefault(entity, []).append(name)
                self.connections[name].chains[entity].running = True
            else:
                self.schedule.finished((name, entity), now, ok=True)
        for entity in self.entities:
            names = by_entity.get(entity.value)
            if names:
                task = asyncio.create_task(self._pull(entity, names), name="makini-sync-pull")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _pull(self, entity: Entity, names: list[str]) -> None:
        chains, failure = await self._run_pull(entity, [self._handle(name) for name in names])
        self.pulls_run += 1
        await self._ended(chains, failure)

    async def _run_pull(
        self, entity: Entity, handles: list[Connection]
    ) -> tuple[Sequence[ChainReport], BaseException | None]:
        """One pull of ``entity`` from ``handles``: its chains, and what failed it whole."""
        pull: Pull[Any] = Pull(
            self.pool,
            [entity],
            handles,
            sink=self._held.lend(),
            as_dicts=True,
            options=self.options,
        )
        self._pulls.add(pull)
        try:
            async with pull:
                await pull.run()
        except Exception as exc:  # noqa: BLE001 - a pull's failure fails its chains, not the sync
            logger.warning("sync: a pull of %s failed: %s", entity.value, exc)
            return pull.report.chains, exc
        finally:
            self._pulls.discard(pull)
        return pull.report.chains, None

    async def _ended(self, chains: Sequence[ChainReport], failure: BaseException | None) -> None:
        now, wall = self._clock(), self._wall()
        results: list[tuple[Key, str | None, int, str]] = []
        reauth: set[str] = set()
        for chain in chains:
            name, entity = chain.connection, chain.entity.value
            status = self.connections.get(name)
            ok = failure is None and chain.outcome is Outcome.COMPLETED
            if chain.outcome is Outcome.REAUTHORIZATION_REQUIRED:
                reauth.add(name)
            if ok or (failure is None and chain.outcome is Outcome.CANCELLED):
                error = None  # completed, or stopped with the sync
            elif failure is not None and chain.error is None:
                error = f"{type(failure).__name__}: {failure}"
            else:
                error = chain_error(chain)
            if status is not None and entity in status.chains:
                record = status.chains[entity]
                record.running = False
                record.landed += chain.records
                record.last_error = error
                if ok:
                    record.last_success = wall
                newest = parse_utc(getattr(chain, "newest", None))
                if newest is not None and (record.newest is None or newest > record.newest):
                    record.newest = newest
                lag = record.lag(wall)
                if ok and lag is not None and self._telemetry is not None:
                    self._telemetry.sync_lag(entity, lag)
            state = REAUTHORIZATION_REQUIRED if name in reauth else ACTIVE
            results.append(((name, entity), error, chain.records, state))
            self.schedule.finished((name, entity), now, ok=ok)
        if self._table is not None:
            try:
                await self._table.release(results)
            except MakiniError as exc:
                logger.warning("sync: cannot record finished pulls: %s", exc)
        for name in reauth:
            await self.needs_reauthorization(name)
        self._wake.set()

    # -- status ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` answers: per connection its state and chains, no token."""
        now = self._wall()
        return {
            "instance": self.instance,
            "every": self.every,
            "entities": [e.value for e in self.entities],
            "connections": [s.to_json(n, now) for n, s in sorted(self.connections.items())],
        }
