"""A pool's connections over time: ids, webhooks, the health watch, fan-out and the sync.

:class:`PoolStatus` is the part of :class:`~makini_async.MakiniPool` that
knows which Makini connection each handle is and what state it is in, and
keeps them in sync; the pool supplies its handles through the members
declared at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from makini_async._pool.directory import ConnectionDirectory
from makini_async._pool.fanout import fan_out, resolve
from makini_async._pool.watch import Watch
from makini_async.connection import Connection, default_name
from makini_async.sync import DEFAULT_EVERY, Sync

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from typing_extensions import Unpack

    from makini_async._client.config import Limits
    from makini_async._client.shared import Shared
    from makini_async._client.tokens import TokenProvider
    from makini_async._pool.directory import StatusChange
    from makini_async._pool.fanout import FanOutReport
    from makini_async.bulk import ConnectionSpec, PullKeywords, PullOptions
    from makini_async.entities import EntityLike
    from makini_async.sync._service import ReauthHook
    from makini_async.telemetry._otel import Telemetry
    from makini_async.webhooks import WebhookEvent

__all__ = ["PoolStatus"]

_R = TypeVar("_R")


class PoolStatus:
    """Connection ids, webhook status events, the health watch and fan-out of a pool."""

    # What the pool supplies.
    limits: Limits
    shared: Shared
    telemetry: Telemetry | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random
    _connections: dict[str, Connection]
    _by_name: dict[str, Connection]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def ensure_open(self) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Connection]:
        raise NotImplementedError

    def connection(
        self,
        token: str | TokenProvider,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> Connection:
        raise NotImplementedError

    _directory_or_none: ConnectionDirectory | None = None

    @property
    def _directory(self) -> ConnectionDirectory:
        if self._directory_or_none is None:
            self._directory_or_none = ConnectionDirectory(self.__iter__, self._live_handle)
        return self._directory_or_none

    def _live_handle(self, conn: Connection) -> Connection | None:
        """The pool's handle for ``conn``'s token, made again (same name) if it was evicted."""
        live = self._connections.get(conn.token) or self._by_name.get(conn.name)
        if live is not None or self.closed:
            return live
        name = None if conn.name == default_name(conn.token) else conn.name
        return self.connection(conn.token, name=name)

    def bind_connection_id(self, connection: Connection | str, connection_id: str) -> Connection:
        """Say which Makini connection id (webhooks' ``connection_id``) a handle or token is."""
        conn = connection if isinstance(connection, Connection) else self.connection(connection)
        self._directory.bind(conn, connection_id)
        return conn

    def find_connection(self, connection_id: str) -> Connection | None:
        """The handle whose Makini connection id is ``connection_id``, if known."""
        return self._directory.find(connection_id)

    def connection_status(self, connection: Connection) -> str:
        """The last status known at Makini, from webhooks, the watch and the handle's marks."""
        return self._directory.status(connection)

    async def apply_webhook(self, event: WebhookEvent) -> StatusChange | None:
        """Apply a verified status event to its connection's handle (receivers call it)."""
        return await self._directory.apply_webhook(event)

    def watch(
        self,
        connections: Iterable[ConnectionSpec],
        *,
        interval: float = 60.0,
        concurrency: int = 10,
        jitter: float = 0.1,
    ) -> Watch:
        """Poll every connection's status; see :class:`~makini_async.Watch`."""
        return Watch(
            self._directory,
            resolve(self, connections, "watch"),
            interval=interval,
            concurrency=concurrency,
            jitter=jitter,
            sleep=self.sleep,
            rng=self.rng,
        )

    async def fan_out(
        self,
        connections: Iterable[ConnectionSpec],
        fn: Callable[[Connection], Awaitable[_R]],
        *,
        concurrency: int | None = None,
    ) -> FanOutReport[_R]:
        """Run ``await fn(conn)`` on every connection, ``concurrency`` (default: the
        pool's ``max_in_flight``) at a time; one failure never stops the others."""
        self.ensure_open()
        limit = self.limits.max_in_flight if concurrency is None else concurrency
        conns = resolve(self, connections, "fan_out")
        return await fan_out(conns, fn, concurrency=limit, clock=self.clock)

    def sync(
        self,
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
        **keywords: Unpack[PullKeywords],
    ) -> Sync:
        """Keep ``entities`` of every ``(name, token)`` mirrored into ``sink``: see :class:`Sync`.

        Use it as ``async with pool.sync(...) as sync:``; it runs until closed.
        """
        return Sync(
            self,
            entities,
            connections,
            sink=sink,
            every=every,
            options=options,
            webhook_secret=webhook_secret,
            on_reauthorization=on_reauthorization,
            instance=instance,
            lease=lease,
            sink_deadline=sink_deadline,
            **keywords,
        )
