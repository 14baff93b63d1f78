"""The mock's endpoints beyond listing: writes, connection info and sync.

``_Routes`` (and so ``MockMakini``) inherits them; the state they read is declared here.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import orjson

from makini_async.entities import Entity
from makini_async.testing._answers import (
    _BY_PATH,
    _LOCKED_WO_STATUSES,
    _NO_DELETE,
    _Answer,
    _error,
    _validation,
)
from makini_async.testing._data import (
    READ_ONLY_FIELDS,
    REQUIRED_FIELDS,
    now_iso,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aiohttp import web

    from makini_async.testing._state import (
        EntityStore,
        MockConnection,
    )


class _Endpoints:
    """Writes, ``GET /connection`` and the sync endpoints."""

    clock: Callable[[], float]
    sync_seconds: float
    clock_skew: float

    if TYPE_CHECKING:
        # Provided by MockMakini.
        def _store(
            self, conn: MockConnection, entity: Entity, *, write: bool = False
        ) -> EntityStore: ...

        def _insert(
            self, conn: MockConnection, entity: Entity, fields: Mapping[str, Any]
        ) -> dict[str, Any]: ...

        def _update(
            self, conn: MockConnection, entity: Entity, rid: str, changes: Mapping[str, Any]
        ) -> dict[str, Any]: ...

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
        started_iso = now_iso(self.clock_skew)
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
