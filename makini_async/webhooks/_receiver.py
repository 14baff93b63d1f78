"""The webhook receiver: verify, de-duplicate, answer at once, handle in workers.

One delivery goes through :meth:`WebhookReceiver.receive`, which every
front end calls (the aiohttp handler, the aiohttp sub-application, the ASGI
app)::

    verify the signature (any of the secrets)      -> 400, the handler never runs
    parse the body and type the event              -> 400
    claim the event id in the store                -> 200, a duplicate is dropped
    tell the bound pool, once per event id (a status event marks the
        connection at once; a duplicate never touches the pool)
    put the event on the bounded queue             -> 200; queue full: 503

Before that, the front ends read the body within the receiver's own limits
(see :mod:`makini_async.webhooks._limits`): 413 over ``max_body``, 408 past
``read_timeout``, 503 beyond ``max_in_flight`` bodies being read at once.

Answers never wait for the handler: workers take events off the queue. A
handler that is slow only fills the queue; one that raises is logged and
counted. When the queue is full the delivery is refused with 503 and its
claim released, so Makini's redelivery (from 30 s, for up to 24 h) is
processed later: no event answered 200 is dropped, and no event is refused
for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from makini_async.errors import MakiniError, UsageError, WebhookVerificationError
from makini_async.webhooks._asgi import MAX_BODY, ASGIReceive, ASGIScope, ASGISend
from makini_async.webhooks._events import typed_event
from makini_async.webhooks._front import serve_aiohttp, serve_asgi
from makini_async.webhooks._limits import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_READ_TIMEOUT,
    DropLog,
    ReceiverStats,
    check_limits,
)
from makini_async.webhooks._signature import (
    DEFAULT_TOLERANCE,
    SeenEvents,
    WebhookEvent,
    _seconds,
    _secrets,
    parse_event,
    verify,
)
from makini_async.webhooks._store import EventStore, MemoryEventStore

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["EventHandler", "PoolBinding", "ReceiverStats", "WebhookReceiver"]

logger = logging.getLogger("makini_async")

#: The user's handler: one event at a time per worker.
EventHandler = Callable[[WebhookEvent], Awaitable[object]]


class PoolBinding(Protocol):
    """What a receiver needs of a pool (:class:`~makini_async.MakiniPool` is one)."""

    async def apply_webhook(self, event: WebhookEvent) -> object:
        """Update the state of the connection ``event`` is about."""
        ...


async def _ignore(_event: WebhookEvent) -> None:
    return None


class WebhookReceiver:
    """Receives Makini webhooks; see the module docs for the flow of a delivery.

    ``secrets``: one webhook secret, or several during rotation (any match
    passes). ``handler``: ``async def handler(event)``, given typed events
    (:class:`~makini_async.webhooks.SyncCompletedEvent`, ...; unknown types as
    a plain :class:`WebhookEvent`), exactly once per event id as far as the
    ``store`` remembers (:class:`MemoryEventStore` by default; a
    :class:`SQLiteEventStore` survives restarts and replays events accepted
    but not handled). ``pool``: a :class:`~makini_async.MakiniPool` whose
    connections the status events mark. ``queue_size`` bounds the events
    waiting for a worker; ``workers`` handle them concurrently;
    ``handler_timeout`` (seconds, ``None``: no limit) cancels a handler that
    hangs. ``clock`` gives the current Unix time for the signature's
    ``tolerance`` window.

    Bodies are read by the receiver's own limits, whatever the host
    application allows: ``max_body`` bytes (413 beyond), all within
    ``read_timeout`` seconds (408), at most ``max_in_flight`` at once (503,
    answered before reading). Connections dropped or refused this way are
    logged, with bad signatures, as one summary line per minute
    (``drop_log``), never a line or a traceback each.
    """

    def __init__(
        self,
        secrets: str | bytes | Iterable[str | bytes],
        handler: EventHandler | None = None,
        *,
        pool: PoolBinding | None = None,
        store: EventStore | None = None,
        queue_size: int = 1000,
        workers: int = 4,
        handler_timeout: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        # Check the secrets now: a typo in configuration fails at start-up,
        # not as a 400 on every delivery.
        self._secrets = _secrets(secrets)
        _seconds(tolerance, "tolerance")
        if handler is not None and not callable(handler):
            msg = f"handler must be an async function, got {type(handler).__name__}"
            raise UsageError(msg)
        for name, value in (("queue_size", queue_size), ("workers", workers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"{name} must be an integer >= 1, got {value!r}"
                raise UsageError(msg)
        if handler_timeout is not None and (
            isinstance(handler_timeout, bool)
            or not isinstance(handler_timeout, (int, float))
            or not math.isfinite(handler_timeout)
            or handler_timeout <= 0
        ):
            msg = f"handler_timeout must be seconds > 0 or None, got {handler_timeout!r}"
            raise UsageError(msg)
        check_limits(max_body, read_timeout, max_in_flight)
        if pool is not None and not callable(getattr(pool, "apply_webhook", None)):
            msg = f"pool must be a MakiniPool, got {type(pool).__name__}"
            raise UsageError(msg)
        if store is not None and not isinstance(store, EventStore):
            msg = f"store must have claim/release/finish/unfinished, got {type(store).__name__}"
            raise UsageError(msg)
        self._handler: EventHandler = handler or _ignore
        self._pool = pool
        self.store: EventStore = store if store is not None else MemoryEventStore()
        self._queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(queue_size)
        self._n_workers = workers
        self._timeout = handler_timeout
        self._tolerance = tolerance
        self._clock = clock
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._state = "new"
        self.stats = ReceiverStats()
        self.max_body = max_body
        self.read_timeout = float(read_timeout)
        self.max_in_flight = max_in_flight
        #: Bodies being read now (the front ends count them against max_in_flight).
        self.reading = 0
        #: Dropped and refused connections, one log line per interval.
        self.drop_log = DropLog()
        # Event ids already applied to the pool: a redelivery of an event
        # refused for a full queue does not apply it a second time.
        self._applied = SeenEvents(100_000)

    def __repr__(self) -> str:
        return (
            f"<WebhookReceiver {self._state} secrets=<{len(self._secrets)} redacted> "
            f"queued={self._queue.qsize()}/{self._queue.maxsize}>"
        )

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and replay events the store holds unfinished. Idempotent."""
        if self._state != "new":
            return
        self._state = "open"
        self._workers = [
            asyncio.create_task(self._work(), name=f"makini-webhook-worker-{i}")
            for i in range(self._n_workers)
        ]
        for body in await self.store.unfinished():
            try:
                event = typed_event(parse_event(body))
            except WebhookVerificationError:
                continue
            # A new process has a new pool: it learns the status again.
            self._tell_pool_once(event)
            self.stats.accepted += 1
            await self._queue.put(event)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting (503), let the workers drain the queue for ``timeout`` seconds.

        Events still queued after that stay unfinished in the store (a
        :class:`SQLiteEventStore` replays them at the next start) and are
        counted in ``stats.unhandled``. Idempotent.
        """
        if self._state == "closed":
            return
        was_open = self._state == "open"
        self._state = "closed"
        if was_open:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        self.drop_log.flush()
        self.stats.unhandled += self._queue.qsize() + self._busy
        if self.stats.unhandled:
            logger.warning(
                "webhook receiver closed with %d events not handled", self.stats.unhandled
            )
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, *self._background, return_exceptions=True)
        self._workers = []

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def join(self) -> None:
        """Wait until every queued event has been handled, and state updates applied."""
        await self._queue.join()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- one delivery -----------------------------------------------------------------

    async def receive(self, body: bytes, signature: str | None) -> int:
        """Process one delivery; returns the HTTP status to answer (200, 400 or 503)."""
        if self._state == "new":
            await self.start()
        stats = self.stats
        stats.received += 1
        try:
            verify(self._secrets, body, signature, tolerance=self._tolerance, now=self._clock())
            event = typed_event(parse_event(body))
        except WebhookVerificationError as exc:
            stats.rejected += 1
            # A fixed reason (never the body or a secret), summed up per interval.
            self.drop_log.note(f"rejected with 400 ({exc.message})")
            return 400
        if self._state != "open" or (
            # Full, and the pool has nothing to learn from this delivery:
            # refuse without touching the store.
            self._queue.full() and (self._pool is None or event.id in self._applied)
        ):
            stats.refused += 1
            return 503
        try:
            first = await self.store.claim(event.id, body)
        except MakiniError as exc:
            # The store cannot say whether this is a duplicate: refuse, and
            # Makini delivers it again once the store is back.
            logger.error("webhook event store failed: %s", exc.message)
            stats.refused += 1
            return 503
        if not first:
            # A duplicate changes nothing: not the pool (the customer may
            # have reconnected since the first delivery), not the handler.
            stats.duplicates += 1
            return 200
        self._tell_pool_once(event)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Refuse and forget the claim, so the redelivery reaches the
            # handler; the pool has its news already and is not told again.
            await self.store.release(event.id)
            stats.refused += 1
            return 503
        stats.accepted += 1
        stats.max_queued = max(stats.max_queued, self._queue.qsize())
        return 200

    def _tell_pool_once(self, event: WebhookEvent) -> None:
        if self._pool is None or not self._applied.check_and_add(event.id):
            return
        # In a task: the answer never waits for hooks or the
        # on_reauthorization_required callback, and the mark is set at the
        # next step of the loop, before any other request goes out.
        task = asyncio.create_task(self._apply(self._pool, event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _apply(pool: PoolBinding, event: WebhookEvent) -> None:
        try:
            await pool.apply_webhook(event)
        except Exception:
            logger.exception("applying webhook event %s to the pool failed", event.id)

    async def _work(self) -> None:
        queue = self._queue
        while True:
            event = await queue.get()
            self._busy += 1
            try:
                if self._timeout is None:
                    await self._handler(event)
                else:
                    await asyncio.wait_for(self._handler(event), self._timeout)
                self.stats.handled += 1
            except asyncio.CancelledError:
                # Closing cut the handler short: the event stays unfinished in
                # the store, and a persistent store replays it at the next start.
                queue.task_done()
                raise
            except Exception:
                self.stats.failed += 1
                logger.exception("webhook handler failed for event %s (%s)", event.id, event.type)
            finally:
                self._busy -= 1
            try:
                await self.store.finish(event.id)
            except Exception:
                logger.exception("webhook event store failed to finish %s", event.id)
            queue.task_done()

    # -- front ends ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """An aiohttp.web handler: ``app.router.add_post("/makini", receiver.handle)``.

        It reads the body by the receiver's limits, not the app's
        ``client_max_size``: mounted in an app that allows large uploads, a
        large webhook body is still refused with 413 before it is buffered.
        """
        return await serve_aiohttp(self, request)

    def app(self, path: str = "/") -> web.Application:
        """An aiohttp sub-application that starts and drains the receiver with its server.

        Mount it with ``main.add_subapp("/webhooks/", receiver.app())`` or serve
        it alone; deliveries are POSTed to ``path``.
        """
        from aiohttp import web  # noqa: PLC0415 - importing the library must not load aiohttp

        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(path, self.handle)

        async def started(_app: web.Application) -> None:
            await self.start()

        async def cleanup(_app: web.Application) -> None:
            await self.close()

        app.on_startup.append(started)
        app.on_cleanup.append(cleanup)
        return app

    async def asgi(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """A raw ASGI application: mount it in Starlette, FastAPI, Django, ... (see the README)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await serve_asgi(self, scope, receive, send)

    async def _lifespan(self, receive: ASGIReceive, send: ASGISend) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
