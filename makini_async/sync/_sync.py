"""``pool.sync(...)``: the long-running mirror as an async context manager."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from makini_async.bulk._chain import entities_of
from makini_async.bulk._options import sharded_options
from makini_async.checkpoint import safe_dsn
from makini_async.errors import UsageError
from makini_async.sinks import open_sink
from makini_async.sync._front import make_app, make_receiver
from makini_async.sync._service import SyncPool, SyncService
from makini_async.sync._state import connection_pairs

if TYPE_CHECKING:
    import datetime as dt
    import random
    from collections.abc import Awaitable, Callable, Iterable
    from types import TracebackType

    from aiohttp import web
    from typing_extensions import Unpack

    from makini_async.bulk import PullKeywords, PullOptions
    from makini_async.entities import EntityLike
    from makini_async.sync._service import ReauthHook

__all__ = ["DEFAULT_EVERY", "Sync"]

#: Seconds between two pulls of one (connection, entity).
DEFAULT_EVERY = 900.0


class Sync:
    """Keeps ``entities`` of every connection mirrored into ``sink``, until it is closed.

    ::

        async with pool.sync(["work-orders"], tokens, sink="postgresql://etl@db/wh",
                             every=900, webhook_secret=secret) as sync:
            await sync.serve(port=8080)   # POST /webhooks/makini, GET /status, GET /healthz
            await sync.wait()             # until sync.close(), a signal handler's job

    A chain with no state is pulled in full at once; then each is pulled
    incrementally every ``every`` seconds on its own phase (jittered, spread
    over the interval), never overlapping itself, backing off while it
    fails. ``sink`` is a ``postgresql://`` DSN (several instances on one
    database share the work through its ``{prefix}sync`` table) or
    ``duckdb:FILE`` (one instance). How each pull reads is a
    :class:`~makini_async.PullOptions` (``options=`` or keywords), as for a
    pull. ``on_reauthorization(name)`` is called when a connection must be
    reconnected; a status change back to ``active`` resumes it.
    ``sink_deadline`` (seconds) bounds how long a pull waits out a destination
    that went away before it fails (its chains then back off, and the sync
    goes on).
    """

    def __init__(
        self,
        pool: SyncPool,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[tuple[str, str]],
        *,
        sink: str,
        every: float = DEFAULT_EVERY,
        options: PullOptions | None = None,
        webhook_secret: str | bytes | list[str | bytes] | None = None,
        on_reauthorization: ReauthHook | None = None,
        instance: str | None = None,
        lease: float = 60.0,
        sink_deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        **keywords: Unpack[PullKeywords],
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
            raise UsageError(f"every must be seconds > 0, got {every!r}")
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise UsageError(f"lease must be seconds > 0, got {lease!r}")
        if not isinstance(sink, str):
            raise UsageError("sink must be a postgresql:// DSN or duckdb:FILE")
        postgres = sink.startswith(("postgresql://", "postgres://"))
        if not postgres and not sink.startswith("duckdb:"):
            raise UsageError(f"a sync lands in postgresql://... or duckdb:FILE, not {sink!r}")
        connections = list(connections)
        connection_pairs(connections)  # bad input fails here, not in the running sync
        # Each pull of a sync keeps the destination's own state; none raises.
        opts = sharded_options(options, keywords, what="a sync")
        self.location = safe_dsn(sink)
        self.service = SyncService(
            pool,
            entities_of(entities),
            connections,
            sink=open_sink(sink, retry_deadline=sink_deadline),
            dsn=sink if postgres else None,
            every=float(every),
            options=opts,
            on_reauthorization=on_reauthorization,
            instance=instance,
            lease=float(lease),
            clock=clock,
            wall_clock=utc_now,
            sleep=sleep,
            rng=rng,
            learn_ids=webhook_secret is not None,
        )
        self.receiver = (
            None if webhook_secret is None else make_receiver(self.service, webhook_secret)
        )
        self._runner: web.AppRunner | None = None
        self._closed = asyncio.Event()
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"<Sync {len(self.service.connections)} connections -> {self.location}>"

    async def __aenter__(self) -> Sync:
        await self.service.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Answer webhooks, ``/status`` and ``/healthz`` on ``host:port``; the base URL."""
        from aiohttp import web  # noqa: PLC0415 - only a served sync needs aiohttp.web

        runner = web.AppRunner(make_app(self.service, self.receiver), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    def status(self) -> dict[str, Any]:
        """Per connection its state, last success, last error, lag and records landed."""
        return self.service.status()

    def trigger(self, connection: str, entity: str | None = None) -> int:
        """Pull ``connection`` (one entity, or all) at once; how many chains were started."""
        return self.service.trigger(connection, entity)

    async def reload(self, connections: Iterable[tuple[str, str]]) -> None:
        """Sync exactly ``connections`` from now on (a tokens file read again)."""
        await self.service.reload(connections)

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until no pull runs and nothing is due (the first mirror is complete)."""
        await self.service.idle(timeout)

    def stop(self) -> None:
        """Ask the sync to end (a signal handler's call): :meth:`wait` returns."""
        self._closed.set()

    async def wait(self) -> None:
        """Wait until :meth:`close` is called (from a signal handler, say)."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop: no new pull, running ones land what they fetched; idempotent."""
        self._closed.set()
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()  # drains the receiver
            elif self.receiver is not None:
                await self.receiver.close()
        finally:
            await self.service.stop()
