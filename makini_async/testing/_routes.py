"""The mock's request handling: dispatch, outages, rate limits, faults and listing.

``MockMakini`` inherits it; the state it reads is declared here and set by the server.
Writes, connection info and sync are in ``_endpoints``.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import secrets
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from makini_async.entities import MAX_PAGE_SIZE, Entity
from makini_async.testing._answers import (
    _BY_PATH,
    _FAULT_ERRORS,
    _GATEWAY_FAULTS,
    _GATEWAY_PAGES,
    _MALFORMED_BODY,
    _PREFIX,
    _WRITES,
    RequestLogEntry,
    _Answer,
    _error,
    _parse_when,
)
from makini_async.testing._endpoints import _Endpoints
from makini_async.testing._faults import FaultPlan
from makini_async.testing._state import (
    MockConnection,
    ServerStats,
    decode_cursor_generation,
    token_digest,
)

if TYPE_CHECKING:
    import collections
    from collections.abc import Mapping


class _Routes(_Endpoints):
    """Request handling, mixed into :class:`~makini_async.testing.MockMakini`.

    Dispatch, outages, rate limits and faults, then listing here; writes, connection info
    and sync come from :class:`_Endpoints`.
    """

    accept_any_token: bool
    total_requests: int
    outage_requests: int
    in_flight_total: int
    max_concurrent_total: int
    _conns: dict[str, MockConnection]
    _log: collections.deque[RequestLogEntry]
    _anon_stats: ServerStats
    _outage_until: float
    _closing: asyncio.Event | None

    if TYPE_CHECKING:
        # Provided by MockMakini.
        @property
        def in_outage(self) -> bool: ...

        def _new_conn(self, token: str) -> MockConnection: ...

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
                after, generation = decode_cursor_generation(cursor)
            except ValueError:
                return _error(400, "INVALID_REQUEST", "cursor is not valid", request_id)
            if generation != conn.cursor_generation:
                return _error(
                    400,
                    "INVALID_REQUEST",
                    "the cursor has expired; start the listing again",
                    request_id,
                )
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
            after,
            page_size,
            filters[0],
            filters[1],
            report_total=conn.report_total_count,
            generation=conn.cursor_generation,
        )
        return _Answer(200, body)
