"""MockMakini: an aiohttp.web server speaking the Makini API contract."""

from __future__ import annotations

import asyncio
import calendar
import collections
import datetime as dt
import email.utils
import hashlib
import math
import random
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from makini_async.entities import MAX_PAGE_SIZE, Entity, EntityLike, to_entity
from makini_async.testing._data import (
    READ_ONLY_FIELDS,
    REQUIRED_FIELDS,
    format_datetime,
    generate_records,
    make_record,
    now_iso,
    record_id,
)
from makini_async.testing._faults import FaultPlan, FaultState, RateLimit, SlidingWindowLimiter
from makini_async.testing._realistic import SHAPES, widen
from makini_async.testing._state import (
    STATUSES,
    EntityStore,
    MockConnection,
    ServerStats,
    decode_cursor,
    token_digest,
)
from makini_async.testing._variations import apply_variations, check_rate
from makini_async.testing._webhooks import WebhookDelivery, WebhookSender

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["MockMakini", "RequestLogEntry"]

RequestLogEntry = tuple[str, str, str, str, int]

_PREFIX: Final[str] = "/api/v1/"
_BY_PATH: Final[dict[str, Entity]] = {e.value: e for e in Entity}
_NO_DELETE: Final[frozenset[Entity]] = frozenset({Entity.PURCHASE_ORDERS, Entity.WORK_ORDERS})
_WRITES: Final[frozenset[str]] = frozenset({"POST", "PATCH", "DELETE"})
_LOCKED_WO_STATUSES: Final[frozenset[str]] = frozenset({"completed", "cancelled"})

_ERROR_TYPES: Final[dict[str, str]] = {
    "INVALID_REQUEST": "invalid_request_error",
    "INVALID_PAGE_SIZE": "invalid_request_error",
    "VALIDATION_FAILED": "validation_error",
    "AUTHENTICATION_FAILED": "authentication_error",
    "REAUTHORIZATION_REQUIRED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "OPERATION_NOT_SUPPORTED": "operation_not_supported_error",
    "CONFLICT": "conflict_error",
    "RATE_LIMIT_EXCEEDED": "rate_limit_error",
    "INTERNAL_ERROR": "api_error",
    "CONNECTED_SYSTEM_ERROR": "connected_system_error",
    "SERVICE_UNAVAILABLE": "api_error",
}
_FAULT_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "error_500": (500, "INTERNAL_ERROR", "Internal error (injected)"),
    "error_502": (502, "CONNECTED_SYSTEM_ERROR", "The connected system failed (injected)"),
    "error_503": (503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable (injected)"),
}
# What nginx answers when it cannot reach the API: a whole HTML page, no API body.
_GATEWAY_PAGES: Final[dict[int, bytes]] = {
    status: (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    for status, title in ((502, "Bad Gateway"), (504, "Gateway Time-out"))
}
_GATEWAY_FAULTS: Final[dict[str, int]] = {"html_error": 502, "error_504": 504}
_MALFORMED_BODY: Final[bytes] = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>upstream hiccup</p></body></html>"
)


class _Answer:
    """A response under construction: status, JSON body bytes, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes | None, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> _Answer:
    body = orjson.dumps(
        {
            "error": {
                "code": code,
                "type": _ERROR_TYPES.get(code, "api_error"),
                "message": message,
                "request_id": request_id,
                "details": dict(details or {}),
            }
        }
    )
    return _Answer(status, body, headers)


def _parse_when(value: str) -> str:
    """Normalise a filter date or date-time to ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    text = value.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return f"{day.isoformat()}T00:00:00Z"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return format_datetime(moment.timestamp() // 1)


def _epoch(iso: str) -> int | None:
    try:
        return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def _bumped(old: Any) -> str:
    now = now_iso()
    if isinstance(old, str) and now <= old:
        epoch = _epoch(old)
        return format_datetime(epoch + 1) if epoch is not None else now
    return now


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


class MockMakini:
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
    ) -> None:
        self.seed = seed
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
        if runner is not None:
            await _stop_accepting(runner)
            await runner.cleanup()
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
            last_sync_at=now_iso(),
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
        created = int(time.time())
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
        new["updated_at"] = _bumped(old.get("updated_at"))
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

    # -- request handling ---------------------------------------------------------

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; ``True`` if the server started closing meanwhile."""
        closing = self._closing
        if closing is None or seconds <= 0:
            return False
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def _gateway_page(
        self, request: web.Request, status: int, stats: ServerStats, label: str
    ) -> web.Response:
        """A proxy's HTML error page: no X-Request-Id, no API error body."""
        self._log.append((label, request.method, request.path, request.query_string, status))
        stats.statuses[status] += 1
        return web.Response(status=status, body=_GATEWAY_PAGES[status], content_type="text/html")

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

    def _respond(
        self,
        request: web.Request,
        request_id: str,
        answer: _Answer,
        stats: ServerStats,
        label: str,
        *,
        content_type: str = "application/json",
    ) -> web.Response:
        self._log.append((label, request.method, request.path, request.query_string, answer.status))
        stats.statuses[answer.status] += 1
        headers = {"X-Request-Id": request_id, **answer.headers}
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        return web.Response(
            status=answer.status, body=answer.body, content_type=content_type, headers=headers
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        request_id = f"req_{secrets.token_hex(6)}"
        self.total_requests += 1
        if self.in_outage:
            # The API is gone; what is in front of it answers for everyone alike.
            self.outage_requests += 1
            return self._gateway_page(request, 502, self._anon_stats, "outage")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            answer = _error(401, "AUTHENTICATION_FAILED", "Missing or malformed token", request_id)
            return self._respond(request, request_id, answer, self._anon_stats, "anonymous")
        conn = self._conns.get(token)
        if conn is None and self.accept_any_token:
            conn = self._new_conn(token)
        if conn is None or conn.status == "disconnected":
            label = conn.label if conn is not None else token_digest(token)
            stats = conn.stats if conn is not None else self._anon_stats
            answer = _error(401, "AUTHENTICATION_FAILED", "Token invalid or revoked", request_id)
            return self._respond(request, request_id, answer, stats, label)
        stats = conn.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.in_flight)
        self.in_flight_total += 1
        self.max_concurrent_total = max(self.max_concurrent_total, self.in_flight_total)
        try:
            return await self._handle_authenticated(request, request_id, conn)
        finally:
            conn.stats.in_flight -= 1
            self.in_flight_total -= 1

    async def _handle_authenticated(
        self, request: web.Request, request_id: str, conn: MockConnection
    ) -> web.StreamResponse:
        stats = conn.stats
        now = self.clock()
        if now < conn.cooldown_until:
            stats.during_cooldown += 1
        if conn.limiter is not None:
            retry_after = conn.limiter.acquire()
            if retry_after is not None:
                answer = self._rate_limited(conn, request_id, retry_after)
                return self._respond(request, request_id, answer, stats, conn.label)
        method = request.method
        fault: str | None = None
        faults = conn.faults
        if faults is not None:
            fault = faults.decide(method, request.path)
            delay = faults.delay()
            if delay > 0 and await self._sleep(delay):
                answer = _error(503, "SERVICE_UNAVAILABLE", "Server shutting down", request_id)
                return self._respond(request, request_id, answer, stats, conn.label)
        if fault is not None and fault != "none":
            early = await self._early_fault(request, request_id, conn, fault)
            if early is not None:
                return early
        answer = await self._route(request, request_id, conn)
        if fault == "write_applied_503" and method in _WRITES:
            answer = _error(
                503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable", request_id
            )
        elif fault == "truncate" and answer.body:
            answer = _Answer(answer.status, answer.body[: len(answer.body) // 2], answer.headers)
        elif fault == "malformed":
            answer = _Answer(200, _MALFORMED_BODY)
            return self._respond(
                request, request_id, answer, stats, conn.label, content_type="text/html"
            )
        elif fault == "empty_body" and answer.body:
            answer = _Answer(answer.status, b"", answer.headers)
        elif fault == "wrong_content_type":
            return self._respond(
                request, request_id, answer, stats, conn.label, content_type="text/plain"
            )
        elif fault == "drop":
            return await self._drop(request, request_id, answer, conn)
        return self._respond(request, request_id, answer, stats, conn.label)

    def _rate_limited(
        self, conn: MockConnection, request_id: str, retry_after: int, style: str = "seconds"
    ) -> _Answer:
        """A 429 that starts the token's cooldown (for the ``during_cooldown`` count)."""
        conn.cooldown_until = self.clock() + retry_after
        headers = {}
        if style == "seconds":
            headers["Retry-After"] = str(retry_after)
        elif style == "date":
            headers["Retry-After"] = email.utils.formatdate(time.time() + retry_after, usegmt=True)
        return _error(
            429,
            "RATE_LIMIT_EXCEEDED",
            "Too many requests for this connection",
            request_id,
            details={"retry_after": retry_after},
            headers=headers,
        )

    async def _early_fault(
        self, request: web.Request, request_id: str, conn: MockConnection, fault: str
    ) -> web.StreamResponse | None:
        """Faults that refuse the request before it is applied."""
        plan = conn.faults.plan if conn.faults is not None else FaultPlan()
        if fault in _FAULT_ERRORS:
            status, code, message = _FAULT_ERRORS[fault]
            answer = _error(status, code, message, request_id)
            return self._respond(request, request_id, answer, conn.stats, conn.label)
        if fault == "rate_limit_429":
            answer = self._rate_limited(
                conn, request_id, math.ceil(plan.retry_after), plan.retry_after_style
            )
            return self._respond(request, request_id, answer, conn.stats, conn.label)
        if fault in _GATEWAY_FAULTS:
            status = _GATEWAY_FAULTS[fault]
            return self._gateway_page(request, status, conn.stats, conn.label)
        if fault == "stall":
            await self._sleep(plan.stall_seconds)
            transport = request.transport
            if transport is not None:
                transport.close()
            answer = _error(503, "SERVICE_UNAVAILABLE", "Stalled request given up", request_id)
            return self._respond(request, request_id, answer, conn.stats, conn.label)
        return None

    async def _drop(
        self, request: web.Request, request_id: str, answer: _Answer, conn: MockConnection
    ) -> web.StreamResponse:
        self._log.append(
            (conn.label, request.method, request.path, request.query_string, answer.status)
        )
        conn.stats.statuses[answer.status] += 1
        body = answer.body or b'{"data": null}'
        response = web.StreamResponse(
            status=answer.status, headers={"X-Request-Id": request_id, **answer.headers}
        )
        response.content_type = "application/json"
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: max(1, len(body) // 2)])
        transport = request.transport
        if transport is not None:
            transport.close()
        return response

    # -- routing ------------------------------------------------------------------

    async def _route(self, request: web.Request, request_id: str, conn: MockConnection) -> _Answer:
        path = request.path
        method = request.method
        if not path.startswith(_PREFIX):
            return _error(404, "NOT_FOUND", "No such endpoint", request_id)
        parts = path[len(_PREFIX) :].rstrip("/").split("/")
        if parts == ["connection"]:
            if method == "GET":
                return self._connection_info(conn)
            if method == "DELETE":
                conn.status = "disconnected"
                return _Answer(204, None)
            return _error(405, "OPERATION_NOT_SUPPORTED", "Method not allowed", request_id)
        if conn.status == "reauthorization_required":
            return _error(
                401,
                "REAUTHORIZATION_REQUIRED",
                "The customer must reconnect this connection",
                request_id,
            )
        if conn.status == "offline":
            return _error(
                502, "CONNECTED_SYSTEM_ERROR", "The connected system is offline", request_id
            )
        if parts == ["sync-status"] and method == "GET":
            return self._sync_status(conn)
        if parts == ["syncs"] and method == "POST":
            return await self._start_sync(request, request_id, conn)
        entity = _BY_PATH.get(parts[0])
        if entity is None or len(parts) > 2 or not all(parts):
            return _error(404, "NOT_FOUND", "No such endpoint", request_id)
        if entity in conn.denied_entities:
            return _error(
                403,
                "PERMISSION_DENIED",
                f"The system account may not access {entity.value}",
                request_id,
            )
        if len(parts) == 1:
            if method == "GET":
                return self.list_page(conn, entity, request.query, request_id)
            if method == "POST":
                return await self._idempotent(request, request_id, conn, entity, None)
            return _error(405, "OPERATION_NOT_SUPPORTED", "Method not allowed", request_id)
        rid = parts[1]
        if method == "GET":
            record = self._store(conn, entity).get(rid)
            if record is None:
                return _error(404, "NOT_FOUND", f"No {entity.value} record {rid}", request_id)
            return _Answer(200, orjson.dumps({"data": record}))
        if method in ("PATCH", "DELETE"):
            return await self._idempotent(request, request_id, conn, entity, rid)
        return _error(405, "OPERATION_NOT_SUPPORTED", "Method not allowed", request_id)

    def list_page(
        self,
        conn: MockConnection,
        entity: Entity,
        query: Mapping[str, str],
        request_id: str,
    ) -> _Answer:
        """The listing answer: parse the query, then serve (cached) page bytes."""
        max_size = MAX_PAGE_SIZE[entity]
        raw_size = query.get("page_size")
        page_size = max_size
        if raw_size is not None:
            try:
                page_size = int(raw_size)
            except ValueError:
                return _error(400, "INVALID_REQUEST", "page_size must be an integer", request_id)
            if page_size < 1:
                return _error(400, "INVALID_REQUEST", "page_size must be at least 1", request_id)
            if page_size > max_size:
                return _error(
                    400,
                    "INVALID_PAGE_SIZE",
                    f"page_size may be at most {max_size} for {entity.value}",
                    request_id,
                    details={"max_page_size": max_size},
                )
        after: int | None = None
        cursor = query.get("cursor")
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                return _error(400, "INVALID_REQUEST", "cursor is not valid", request_id)
        filters: list[str | None] = []
        for name in ("modified_after", "created_after"):
            value = query.get(name)
            if value is None or value == "":
                filters.append(None)
                continue
            try:
                filters.append(_parse_when(value))
            except ValueError:
                return _error(
                    400, "INVALID_REQUEST", f"{name} must be an ISO 8601 date", request_id
                )
        body = self._store(conn, entity).page_bytes(
            after, page_size, filters[0], filters[1], report_total=conn.report_total_count
        )
        return _Answer(200, body)

    async def _json_body(self, request: web.Request) -> Any:
        raw = await request.read()
        return orjson.loads(raw) if raw else None

    async def _idempotent(
        self,
        request: web.Request,
        request_id: str,
        conn: MockConnection,
        entity: Entity,
        rid: str | None,
    ) -> _Answer:
        key = request.headers.get("Idempotency-Key")
        method, path = request.method, request.path
        if key:
            seen = conn.idempotency.get(key)
            if seen is not None:
                if (seen[0], seen[1]) != (method, path):
                    return _error(
                        400,
                        "INVALID_REQUEST",
                        "Idempotency-Key was already used for a different request",
                        request_id,
                    )
                return _Answer(seen[2], seen[3], {"Idempotent-Replayed": "true"})
        answer = await self._write(request, request_id, conn, entity, rid)
        if key and answer.status < 500:
            conn.idempotency[key] = (method, path, answer.status, answer.body)
        return answer

    async def _write(
        self,
        request: web.Request,
        request_id: str,
        conn: MockConnection,
        entity: Entity,
        rid: str | None,
    ) -> _Answer:
        method = request.method
        if method == "DELETE":
            assert rid is not None  # noqa: S101 - routing guarantees it
            if entity in _NO_DELETE:
                return _error(
                    405,
                    "OPERATION_NOT_SUPPORTED",
                    f"The connected system does not allow deleting {entity.value}",
                    request_id,
                )
            if self._store(conn, entity).get(rid) is None:
                return _error(404, "NOT_FOUND", f"No {entity.value} record {rid}", request_id)
            self._store(conn, entity, write=True).remove(rid)
            return _Answer(204, None)
        try:
            body = await self._json_body(request)
        except orjson.JSONDecodeError:
            return _error(400, "INVALID_REQUEST", "The body is not valid JSON", request_id)
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST", "The body must be a JSON object", request_id)
        problems: dict[str, list[str]] = {
            name: ["read-only"] for name in sorted(READ_ONLY_FIELDS & body.keys())
        }
        if rid is None:
            for name in REQUIRED_FIELDS[entity]:
                if body.get(name) in (None, ""):
                    problems.setdefault(name, []).append("required")
            if problems:
                return _validation(problems, request_id)
            record = self._insert(conn, entity, body)
            return _Answer(201, orjson.dumps({"data": record}))
        current = self._store(conn, entity).get(rid)
        if current is None:
            return _error(404, "NOT_FOUND", f"No {entity.value} record {rid}", request_id)
        if problems:
            return _validation(problems, request_id)
        if entity is Entity.WORK_ORDERS and current.get("status") in _LOCKED_WO_STATUSES:
            return _error(
                409,
                "CONFLICT",
                f"A work order in status {current.get('status')} cannot be changed",
                request_id,
                details={"status": current.get("status")},
            )
        record = self._update(conn, entity, rid, body)
        return _Answer(200, orjson.dumps({"data": record}))

    # -- connection endpoints -----------------------------------------------------

    def _connection_info(self, conn: MockConnection) -> _Answer:
        return _Answer(
            200,
            orjson.dumps(
                {
                    "data": {
                        "id": conn.connection_id,
                        "system": conn.system,
                        "status": conn.status,
                        "reauthorization_required": conn.status == "reauthorization_required",
                        "last_sync_at": conn.last_sync_at,
                    }
                }
            ),
        )

    def _sync_status(self, conn: MockConnection) -> _Answer:
        now = self.clock()
        entities = {}
        for entity in Entity:
            sync = conn.syncs.get(entity)
            if sync is None:
                entities[entity.value] = {"last_synced_at": conn.last_sync_at, "status": "idle"}
            else:
                _sync_id, started, started_iso = sync
                running = now - started < self.sync_seconds
                entities[entity.value] = {
                    "last_synced_at": started_iso,
                    "status": "running" if running else "idle",
                }
        return _Answer(200, orjson.dumps({"data": {"entities": entities}}))

    async def _start_sync(
        self, request: web.Request, request_id: str, conn: MockConnection
    ) -> _Answer:
        try:
            body = await self._json_body(request)
        except orjson.JSONDecodeError:
            return _error(400, "INVALID_REQUEST", "The body is not valid JSON", request_id)
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST", "The body must be a JSON object", request_id)
        entity = _BY_PATH.get(str(body.get("entity")))
        full = body.get("full", False)
        if entity is None:
            return _error(
                400, "INVALID_REQUEST", "entity must name an entity collection", request_id
            )
        if not isinstance(full, bool):
            return _error(400, "INVALID_REQUEST", "full must be a boolean", request_id)
        sync_id = f"sync_{secrets.token_hex(6)}"
        started_iso = now_iso()
        conn.syncs[entity] = (sync_id, self.clock(), started_iso)
        conn.last_sync_at = started_iso
        return _Answer(
            202,
            orjson.dumps(
                {
                    "data": {
                        "id": sync_id,
                        "entity": entity.value,
                        "full": full,
                        "status": "running",
                    }
                }
            ),
        )


def _validation(problems: Mapping[str, list[str]], request_id: str) -> _Answer:
    return _error(
        400,
        "VALIDATION_FAILED",
        "The record failed validation: " + ", ".join(sorted(problems)),
        request_id,
        details={"fields": dict(problems)},
    )
