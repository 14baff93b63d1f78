"""MockMakini: an aiohttp.web server speaking the Makini API contract."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.testing._answers import RequestLogEntry, _bumped
from makini_async.testing._data import (
    generate_records,
    make_record,
    now_iso,
    record_id,
)
from makini_async.testing._faults import FaultPlan, FaultState, RateLimit, SlidingWindowLimiter
from makini_async.testing._realistic import SHAPES, widen
from makini_async.testing._routes import _Routes
from makini_async.testing._state import (
    STATUSES,
    EntityStore,
    MockConnection,
    ServerStats,
    token_digest,
)
from makini_async.testing._variations import apply_variations, check_rate
from makini_async.testing._webhooks import WebhookDelivery, WebhookSender

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["MockMakini", "RequestLogEntry"]


async def _stop_accepting(runner: web.AppRunner) -> None:
    """Stop accepting, and let the connections already accepted be set up.

    asyncio's selector loop accepts a batch of connections at once and sets each up in a
    task of its own. A server closed before those tasks run fails them on an assertion
    that nothing reports, and their sockets stay open until the garbage collector warns
    of unclosed transports: a restart that meets a burst of new connections (a proxy
    opening upstream connections under load) does this. Taking the listening sockets out
    of the selector first, then yielding, lets the accepted connections be set up (one
    round of the loop), made (a second) and waiting for a request (a third), so that
    ``runner.cleanup()`` closes them at once with the others instead of waiting out its
    shutdown timeout.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.SelectorEventLoop):
        return  # the race is in the selector loop's accept path
    for site in runner.sites:
        server = site._server  # aiohttp has no public handle on the asyncio server
        for sock in getattr(server, "sockets", None) or ():
            loop.remove_reader(sock.fileno())
    for _ in range(3):
        await asyncio.sleep(0)


class MockMakini(_Routes):
    """An in-process Makini API server for tests, benchmarks and demos.

    ``async with MockMakini() as server:`` binds ``host`` on ``port`` (0: a
    free port) and exposes :attr:`url`; point a client at it and use any
    token (``accept_any_token``). Every connection (token) gets
    ``records_per_entity`` deterministic records per entity derived from
    ``seed``; connections with the same settings share one dataset (and its
    page cache) until a test mutates it (copy-on-write). ``distinct_data``
    gives every token its own data seed instead.

    ``faults`` and ``rate_limit`` apply to every connection unless
    :meth:`configure_connection` overrides them. ``clock`` drives rate-limit
    windows and cooldown accounting (inject a fake one in tests).
    ``clock_skew`` sets the server's wall clock ahead of (or, negative, behind)
    this machine's, for the times it writes; :meth:`expire_cursors` expires the
    cursors handed out so far.

    ``variations`` and ``unreadable`` (rates from 0 to 1, default 0) serve
    real-world drift from the contract: with probability ``variations`` a
    generated record gets one to three *readable* variations (offsets,
    fractions or no zone on date-times, numbers for decimal strings, ``null``
    lists, unknown statuses, extra keys, ...), with probability
    ``unreadable`` one *unreadable* value (``"31/12/2024 14:00"``, ``"12,50"``,
    an object given as a string, ...). Both are seeded by ``(seed, entity,
    record index)`` and applied once at generation; :meth:`variations` tells
    which record got what. ``VARIATION_KINDS`` names the kinds and
    ``VARIATION_EXAMPLES`` shows one of each.

    Listing filters ``modified_after`` / ``created_after`` are inclusive
    (``>=``) at second precision, so a record at the boundary is never lost.
    DELETE is not supported (405) for purchase-orders and work-orders.
    Tokens never appear in reprs, logs or the request log.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        records_per_entity: int | Mapping[Entity, int] = 100,
        faults: FaultPlan | None = None,
        rate_limit: RateLimit | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        accept_any_token: bool = True,
        distinct_data: bool = False,
        report_total_count: bool = True,
        sync_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        reuse_port: bool = False,
        request_log_limit: int = 100_000,
        variations: float = 0.0,
        unreadable: float = 0.0,
        shape: str = "light",
        clock_skew: float = 0.0,
    ) -> None:
        self.seed = seed
        #: Seconds the server's wall clock is ahead of this machine's (negative: behind),
        #: for the times it writes: ``updated_at`` and ``created_at`` of records it changes
        #: or adds, ``last_sync_at``/``last_synced_at``. May be changed at any time.
        self.clock_skew = float(clock_skew)
        if shape not in SHAPES:
            msg = f"shape must be one of {sorted(SHAPES)}, got {shape!r}"
            raise ValueError(msg)
        #: ``"light"`` records, or ``"realistic"`` ones as heavy as a source system's.
        self.shape = shape
        self.variation_rate = check_rate("variations", variations)
        self.unreadable_rate = check_rate("unreadable", unreadable)
        self.records_per_entity = records_per_entity
        self.faults = faults
        self.rate_limit = rate_limit
        self.host = host
        self.port = port
        self.accept_any_token = accept_any_token
        self.distinct_data = distinct_data
        self.report_total_count = report_total_count
        self.sync_seconds = sync_seconds
        self.clock = clock
        self.reuse_port = reuse_port
        self._conns: dict[str, MockConnection] = {}
        self._shared: dict[tuple[Any, ...], EntityStore] = {}
        self._log: collections.deque[RequestLogEntry] = collections.deque(maxlen=request_log_limit)
        self.total_requests = 0
        #: Requests answered by the outage (see :meth:`start_outage`).
        self.outage_requests = 0
        self._outage_until = -math.inf
        self._anon_stats = ServerStats()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._webhook_targets: list[tuple[str, str | bytes, int, bool]] = []
        #: Requests in flight now, and the most ever in flight at once, over all tokens.
        self.in_flight_total = 0
        self.max_concurrent_total = 0
        self.webhooks = WebhookSender(seed, self._connection_id_for)

    def __repr__(self) -> str:
        state = "running" if self._runner is not None else "stopped"
        return (
            f"<MockMakini {state} url={self.url if self._runner else None!r} "
            f"seed={self.seed} connections={len(self._conns)}>"
        )

    # -- lifecycle ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123`` (the client adds ``/api/v1/...``)."""
        if self._runner is None:
            msg = "the server is not running"
            raise RuntimeError(msg)
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        """The aiohttp application (one catch-all route into the dispatcher)."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> None:
        """Bind and start serving; :attr:`url` is valid afterwards."""
        if self._runner is not None:
            return
        self._closing = asyncio.Event()
        runner = web.AppRunner(
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_port=self.reuse_port or None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        self._runner = runner

    async def close(self) -> None:
        """Stop serving: wake stalled requests, close sockets and the webhook session."""
        if self._closing is not None:
            self._closing.set()
        runner, self._runner = self._runner, None
        if runner is None:
            if self._stopped is not None:  # another close() is under way: wait for it
                await self._stopped.wait()
        else:
            stopped = self._stopped = asyncio.Event()
            try:
                await _stop_accepting(runner)
            finally:  # even when cancelled: the listening sockets must close
                try:
                    await runner.cleanup()
                finally:
                    stopped.set()
        await self.webhooks.close()

    async def __aenter__(self) -> MockMakini:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connections --------------------------------------------------------------

    def _new_conn(self, token: str) -> MockConnection:
        digest = token_digest(token)
        conn = MockConnection(
            token=token,
            label=f"conn_{digest}",
            connection_id=f"conn_{digest}",
            report_total_count=self.report_total_count,
            last_sync_at=now_iso(self.clock_skew),
        )
        conn.data_seed = self.seed
        if self.distinct_data:
            conn.data_seed = int.from_bytes(
                hashlib.sha256(f"{self.seed}:{token}".encode()).digest()[:8], "big"
            )
        if self.faults is not None:
            conn.faults = FaultState(self.faults, token)
        if self.rate_limit is not None:
            conn.rate_limit = self.rate_limit
            conn.limiter = SlidingWindowLimiter(self.rate_limit, self.clock)
        self._conns[token] = conn
        return conn

    def _conn(self, token: str) -> MockConnection:
        conn = self._conns.get(token)
        if conn is None:
            conn = self._new_conn(token)
        return conn

    def _connection_id_for(self, token: str | None) -> str:
        if token is None:
            return "conn_mock"
        return self._conn(token).connection_id

    def configure_connection(
        self,
        token: str,
        *,
        records_per_entity: int | Mapping[Entity, int] | None = None,
        faults: FaultPlan | None = None,
        rate_limit: RateLimit | None = None,
        status: str = "active",
        system: str = "SAP",
        name: str | None = None,
        report_total_count: bool | None = None,
        denied_entities: Sequence[EntityLike] = (),
        variations: float | None = None,
        unreadable: float | None = None,
    ) -> None:
        """Set one connection's behaviour (creating it if needed).

        ``records_per_entity`` (int or per-entity mapping) resets that
        connection's data. ``faults`` / ``rate_limit`` replace the server's
        for this token (pass ``FaultPlan()`` to switch faults off). ``status``:
        ``active``, ``reauthorization_required`` (401 REAUTHORIZATION_REQUIRED
        everywhere but ``GET /connection``), ``offline`` (502
        CONNECTED_SYSTEM_ERROR likewise) or ``disconnected`` (401
        AUTHENTICATION_FAILED). ``name`` labels the token in the request log.
        ``denied_entities`` answer 403 PERMISSION_DENIED. ``variations`` /
        ``unreadable`` replace the server's rates for this token (and reset
        its data).
        """
        if status not in STATUSES:
            msg = f"unknown status {status!r}; expected one of {sorted(STATUSES)}"
            raise ValueError(msg)
        conn = self._conn(token)
        if records_per_entity is not None:
            conn.records_per_entity = (
                records_per_entity
                if isinstance(records_per_entity, int)
                else {to_entity(k): v for k, v in records_per_entity.items()}
            )
        if variations is not None:
            conn.variations = check_rate("variations", variations)
        if unreadable is not None:
            conn.unreadable = check_rate("unreadable", unreadable)
        if records_per_entity is not None or variations is not None or unreadable is not None:
            conn.stores.clear()
            conn.private.clear()
        if faults is not None:
            conn.faults = FaultState(faults, token)
        if rate_limit is not None:
            conn.rate_limit = rate_limit
            conn.limiter = SlidingWindowLimiter(rate_limit, self.clock)
        conn.status = status
        conn.system = system
        if name is not None:
            conn.label = name
        if report_total_count is not None:
            conn.report_total_count = report_total_count
        conn.denied_entities = frozenset(to_entity(e) for e in denied_entities)

    def revoke(self, token: str) -> None:
        """Make ``token`` answer 401 AUTHENTICATION_FAILED from now on."""
        self._conn(token).status = "disconnected"

    def set_status(self, token: str, status: str) -> None:
        """Change one connection's status (see :meth:`configure_connection`)."""
        if status not in STATUSES:
            msg = f"unknown status {status!r}"
            raise ValueError(msg)
        self._conn(token).status = status

    def name_of(self, token: str) -> str:
        """The token's label: its configured name, else ``conn_<sha256 prefix>``."""
        return self._conn(token).label

    def connection_id(self, token: str) -> str:
        """The connection id ``GET /api/v1/connection`` reports for ``token``."""
        return self._conn(token).connection_id

    # -- data ---------------------------------------------------------------------

    def _counts(self, conn: MockConnection) -> dict[Entity, int]:
        setting = (
            conn.records_per_entity
            if conn.records_per_entity is not None
            else self.records_per_entity
        )
        if isinstance(setting, int):
            return dict.fromkeys(Entity, setting)
        return {e: int(setting.get(e, 100)) for e in Entity}

    def _rates(self, conn: MockConnection) -> tuple[float, float]:
        return (
            self.variation_rate if conn.variations is None else conn.variations,
            self.unreadable_rate if conn.unreadable is None else conn.unreadable,
        )

    def _store(self, conn: MockConnection, entity: Entity, *, write: bool = False) -> EntityStore:
        store = conn.stores.get(entity)
        if store is None:
            counts = self._counts(conn)
            rates = self._rates(conn)
            key = (conn.data_seed, entity, tuple(counts[e] for e in Entity), rates, self.shape)
            store = self._shared.get(key)
            if store is None:
                records = generate_records(entity, conn.data_seed, counts[entity], counts)
                if self.shape == "realistic":
                    seed = conn.data_seed
                    records = [widen(entity, r, seed, i) for i, r in enumerate(records)]
                records, varied = apply_variations(
                    entity, records, conn.data_seed, variations=rates[0], unreadable=rates[1]
                )
                store = EntityStore(entity, records, counts[entity], varied)
                self._shared[key] = store
            conn.stores[entity] = store
        if write and entity not in conn.private:
            store = store.copy()
            conn.stores[entity] = store
            conn.private.add(entity)
        return store

    def records(self, token: str, entity: EntityLike) -> list[dict[str, Any]]:
        """The connection's current records of ``entity``, in cursor order."""
        return list(self._store(self._conn(token), to_entity(entity)).records)

    def record(self, token: str, entity: EntityLike, record_id_: str) -> dict[str, Any] | None:
        """One record by id, or ``None``."""
        return self._store(self._conn(token), to_entity(entity)).get(record_id_)

    def variations(self, token: str, entity: EntityLike) -> dict[str, list[str]]:
        """What was varied at generation: ``{record id: ["kind:path", ...]}``.

        Only varied records appear, e.g. ``{"po_000002":
        ["datetime_naive:updated_at", "decimal_as_number:lines[1].quantity"]}``.
        Records written later through the API or :meth:`update` keep their
        entry even if the write replaced the varied value.
        """
        store = self._store(self._conn(token), to_entity(entity))
        return {rid: list(kinds) for rid, kinds in store.variations.items()}

    def _insert(
        self, conn: MockConnection, entity: Entity, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        store = self._store(conn, entity, write=True)
        index = store.next_index
        rng = random.Random(f"makini-mock:{conn.data_seed}:{entity.value}:insert:{index}")
        created = int(time.time() + self.clock_skew)
        record = make_record(entity, index, rng, created=created, counts=self._counts(conn))
        record["updated_at"] = record["created_at"]
        record.update(fields)
        record.setdefault("id", record_id(entity, index))
        if entity is Entity.WORK_ORDERS:
            if record.get("status") == "completed":
                record.setdefault("completed_at", None)
                if record["completed_at"] is None:
                    record["completed_at"] = record["updated_at"]
            elif "completed_at" not in fields:
                record["completed_at"] = None
        store.append(record)
        return record

    def _update(
        self, conn: MockConnection, entity: Entity, rid: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        store = self._store(conn, entity, write=True)
        old = store.get(rid)
        if old is None:
            raise KeyError(rid)
        new = {**old, **changes}
        new["id"] = old["id"]
        new["updated_at"] = _bumped(old.get("updated_at"), self.clock_skew)
        if entity is Entity.WORK_ORDERS and "status" in changes:
            if changes["status"] == "completed" and "completed_at" not in changes:
                new["completed_at"] = new["updated_at"]
            elif changes["status"] != "completed" and "completed_at" not in changes:
                new["completed_at"] = None
        store.replace(new)
        return new

    def insert(
        self, token: str, entity: EntityLike, record_overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add a record as the source system would (no validation); returns it."""
        return self._insert(self._conn(token), to_entity(entity), record_overrides or {})

    def update(
        self,
        token: str,
        entity: EntityLike,
        id: str,
        changes: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Change a record (bumps ``updated_at``); :class:`KeyError` if unknown."""
        return self._update(self._conn(token), to_entity(entity), id, changes)

    async def change(
        self,
        token: str,
        entity: EntityLike,
        id: str,
        changes: Mapping[str, Any],
        *,
        announce: bool = True,
    ) -> dict[str, Any]:
        """A record changes now in the customer's system, and Makini says so.

        :meth:`update` (``updated_at`` moves to now), then, with ``announce``,
        a ``sync.completed`` event for the record's entity to every registered
        webhook, as Makini sends once it has synced the change.
        """
        ent = to_entity(entity)
        record = self.update(token, ent, id, changes)
        if announce:
            await self.notify(token, [("sync.completed", {"entity": ent.value, "records": 1})])
        return record

    def delete(self, token: str, entity: EntityLike, id: str) -> None:
        """Remove a record (any entity); :class:`KeyError` if unknown."""
        self._store(self._conn(token), to_entity(entity), write=True).remove(id)

    # -- observation --------------------------------------------------------------

    def stats(self, token: str) -> ServerStats:
        """Counters for one token: requests, max_concurrent, during_cooldown, statuses."""
        return self._conn(token).stats

    @property
    def request_log(self) -> list[RequestLogEntry]:
        """``(label, method, path, query, status)`` per request; no raw tokens."""
        return list(self._log)

    def fault_log(self, token: str) -> list[str]:
        """The faults drawn for ``token``, in order (``"none"`` for no fault)."""
        faults = self._conn(token).faults
        return list(faults.log) if faults is not None else []

    def reset_stats(self) -> None:
        """Zero every counter and clear the request log (fault logs are kept)."""
        self.total_requests = 0
        self._log.clear()
        self._anon_stats = ServerStats()
        self.max_concurrent_total = self.in_flight_total
        for conn in self._conns.values():
            in_flight = conn.stats.in_flight
            conn.stats = ServerStats(in_flight=in_flight, max_concurrent=in_flight)

    # -- webhooks -----------------------------------------------------------------

    def register_webhook(
        self, url: str, secret: str | bytes, *, duplicate: int = 0, shuffle: bool = False
    ) -> None:
        """Send server-initiated events (status changes) to ``url``.

        Each event goes out ``1 + duplicate`` times; with ``shuffle`` the
        deliveries of one notification go out in a seeded random order.
        """
        self._webhook_targets.append((url, secret, duplicate, shuffle))

    async def send_webhook(
        self,
        url: str,
        secret: str | bytes,
        event_type: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        connection_token: str | None = None,
        duplicate: int = 0,
        shuffle: bool = False,
        events: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    ) -> list[WebhookDelivery]:
        """POST signed events to ``url``; see :meth:`WebhookSender.send`."""
        return await self.webhooks.send(
            url,
            secret,
            event_type,
            data,
            connection_token=connection_token,
            duplicate=duplicate,
            shuffle=shuffle,
            events=events,
        )

    async def require_reauthorization(self, token: str) -> list[WebhookDelivery]:
        """Flag the connection for reauthorization and notify registered webhooks."""
        self.set_status(token, "reauthorization_required")
        event = {"status": "reauthorization_required", "reason": "credentials_changed"}
        return await self.notify(token, [("connection.reauthorization_required", event)])

    async def change_status(self, token: str, status: str) -> list[WebhookDelivery]:
        """:meth:`set_status`, then a ``connection.status_changed`` event to registered webhooks.

        A change to ``reauthorization_required`` also sends
        ``connection.reauthorization_required`` first, as Makini does.
        """
        previous = self._conn(token).status
        self.set_status(token, status)
        events: list[tuple[str, Mapping[str, Any]]] = []
        if status == "reauthorization_required":
            events.append(("connection.reauthorization_required", {"status": status}))
        events.append(
            ("connection.status_changed", {"status": status, "previous_status": previous})
        )
        return await self.notify(token, events)

    async def notify(
        self, token: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[WebhookDelivery]:
        """Send ``events`` about ``token``'s connection to every registered webhook."""
        deliveries: list[WebhookDelivery] = []
        for url, secret, duplicate, shuffle in self._webhook_targets:
            deliveries += await self.webhooks.send(
                url,
                secret,
                events=events,
                connection_token=token,
                duplicate=duplicate,
                shuffle=shuffle,
            )
        return deliveries

    # -- outages of the whole API -------------------------------------------------

    def start_outage(self, seconds: float | None = None) -> None:
        """Answer every request as a proxy in front of a dead API would (HTML 502).

        For ``seconds`` on the server's clock, or until :meth:`end_outage`.
        """
        self._outage_until = math.inf if seconds is None else self.clock() + seconds

    def end_outage(self) -> None:
        """The API answers again."""
        self._outage_until = -math.inf

    @property
    def in_outage(self) -> bool:
        return self.clock() < self._outage_until

    # -- cursors ------------------------------------------------------------------

    def expire_cursors(self, token: str | None = None) -> None:
        """Expire every cursor handed out so far (to ``token``, or to every connection).

        A request that carries one is then answered 400 ``INVALID_REQUEST``
        ("the cursor has expired; start the listing again"), as the API does
        after a re-sync of the source system or 24 hours. Cursors handed out
        afterwards work.
        """
        conns = self._conns.values() if token is None else (self._conn(token),)
        for conn in conns:
            conn.cursor_generation += 1
