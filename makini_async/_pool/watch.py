"""The health watch: poll ``GET /connection`` for many connections, report changes.

``pool.watch(connections, interval=60, concurrency=10)`` polls every
connection once per *round*. At most ``concurrency`` status requests are in
flight at once (10,000 connections are 10,000 requests spread over the round,
never 10,000 at once), each round visits the connections in a fresh random
order, and the pause between rounds is ``interval`` shortened by up to
``jitter`` of itself, so many watchers do not fall into step.

Each answer goes through the pool's :class:`ConnectionDirectory`, the same
record webhooks update: a connection that needs reauthorization or was
disconnected is marked (calls on it then fail fast), and one the status
endpoint reports active again is cleared. Only changes are reported, as
:class:`StatusChange`; the first round compares with what the pool already
knew (an unmarked handle counts as active).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING

from makini_async._client.call import Call
from makini_async._client.send import send
from makini_async._pool.directory import STATUSES, ConnectionDirectory, StatusChange
from makini_async._pool.workers import run_workers
from makini_async._wire.responses import parse_single
from makini_async.connection import Connection
from makini_async.errors import (
    AuthenticationError,
    MakiniError,
    ReauthorizationRequired,
    UsageError,
)
from makini_async.instrumentation import ConnectionState, HookSet
from makini_async.status import ConnectionInfo

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from makini_async._client.transport import RawResponse

__all__ = ["Watch"]

logger = logging.getLogger("makini_async")

_MARKED = frozenset({ConnectionState.REAUTHORIZATION_REQUIRED, ConnectionState.DISCONNECTED})


def _info(resp: RawResponse, request_id: str | None) -> ConnectionInfo:
    return ConnectionInfo.from_data(parse_single(resp.body, request_id=request_id), request_id)


class Watch:
    """Polls connection status; ``async for change in watch`` or ``await watch.check()``."""

    def __init__(
        self,
        directory: ConnectionDirectory,
        connections: Sequence[Connection],
        *,
        interval: float,
        concurrency: int,
        jitter: float,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        _check_number("interval", interval, 0.0, math.inf)
        _check_number("jitter", jitter, 0.0, 1.0)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            msg = f"concurrency must be an integer >= 1, got {concurrency!r}"
            raise UsageError(msg)
        self._directory = directory
        self.connections = list(connections)
        self.interval = float(interval)
        self.concurrency = concurrency
        self.jitter = float(jitter)
        self._sleep = sleep
        self._rng = rng
        #: Rounds completed, status requests failed (no answer), and the most
        #: status requests this watch ever had in flight at once.
        self.rounds = 0
        self.errors = 0
        self.max_in_flight = 0
        self._in_flight = 0

    def __repr__(self) -> str:
        return (
            f"<Watch connections={len(self.connections)} interval={self.interval} "
            f"concurrency={self.concurrency} rounds={self.rounds}>"
        )

    async def __aiter__(self) -> AsyncIterator[StatusChange]:
        """Round after round, forever: each change as soon as its round has found it."""
        while True:
            for change in await self.check():
                yield change
            await self._sleep(self.interval * (1.0 - self.jitter * self._rng.random()))

    async def check(self) -> list[StatusChange]:
        """One round over every connection; the changes found, in the order found."""
        order = list(self.connections)
        self._rng.shuffle(order)
        changes: list[StatusChange] = []

        async def worker() -> None:
            while order:
                change = await self._poll(order.pop())
                if change is not None:
                    changes.append(change)

        await run_workers(min(self.concurrency, len(order)), worker)
        self.rounds += 1
        return changes

    async def _poll(self, conn: Connection) -> StatusChange | None:
        # A marked handle refuses every call without a request, so its status
        # is asked through a twin handle (same token, same pool-wide limits),
        # whose own marks and callbacks go nowhere: the watch decides what
        # happens to the real handle.
        probe = conn if conn.state not in _MARKED else _twin(conn)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            info = await send(probe, Call("GET", "/connection"), _info)
        except ReauthorizationRequired as exc:
            return await self._update(conn, "reauthorization_required", exc.request_id)
        except AuthenticationError as exc:
            # The token no longer works at all: revoked or disconnected.
            return await self._update(conn, "disconnected", exc.request_id)
        except MakiniError as exc:
            self.errors += 1
            logger.info(
                "status of connection %s unknown this round: %s (request_id=%s)",
                conn.name,
                type(exc).__name__,
                exc.request_id,
            )
            return None
        finally:
            self._in_flight -= 1
        self._directory.bind(conn, info.id)
        new = "reauthorization_required" if info.reauthorization_required else info.status
        if new not in STATUSES:
            logger.info("connection %s reports an unknown status; ignored", conn.name)
            return None
        return await self._update(conn, new, info.request_id)

    async def _update(
        self, conn: Connection, new: str, request_id: str | None
    ) -> StatusChange | None:
        return await self._directory.update(conn, new, source="watch", request_id=request_id)


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not low <= value <= high
    ):
        upper = "" if math.isinf(high) else f" and <= {high}"
        msg = f"{name} must be a number >= {low}{upper}, got {value!r}"
        raise UsageError(msg)


def _twin(conn: Connection) -> Connection:
    shared = copy.copy(conn.shared)
    shared.on_reauthorization = None
    hooks = HookSet(())
    hooks.on_request = shared.hooks.on_request
    hooks.on_retry = shared.hooks.on_retry
    shared.hooks = hooks
    return Connection(shared, conn.token, name=conn.name, per_connection=1)
