"""Connection and sync status answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from makini_async._wire.scrub import clean
from makini_async.errors import MalformedResponse
from makini_async.models._fields import to_datetime

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["ConnectionInfo", "EntitySyncStatus", "SyncJob", "SyncStatus"]


def _when(value: object, field: str, request_id: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        pass
    shown = clean(repr(value)) if isinstance(value, str) else f"a {type(value).__name__} value"
    msg = f"{field} is not an ISO 8601 date-time: {shown}"
    raise MalformedResponse(msg, request_id=request_id)


def _str(data: Mapping[str, Any], key: str, request_id: str | None) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        msg = f"response field {key!r} is missing or not a string"
        raise MalformedResponse(msg, request_id=request_id)
    return value


def _check_object(data: object, what: str, request_id: str | None) -> None:
    if not isinstance(data, Mapping):
        msg = f"{what} response data is a {type(data).__name__}, not an object"
        raise MalformedResponse(msg, request_id=request_id)


@attrs.frozen(kw_only=True)
class ConnectionInfo:
    """``GET /api/v1/connection``: the state of one customer connection."""

    id: str
    system: str | None
    status: str
    reauthorization_required: bool
    last_sync_at: dt.datetime | None
    request_id: str | None = attrs.field(default=None, eq=False)

    @property
    def is_active(self) -> bool:
        return self.status == "active" and not self.reauthorization_required

    @classmethod
    def from_data(cls, data: Mapping[str, Any], request_id: str | None) -> ConnectionInfo:
        _check_object(data, "connection", request_id)
        system = data.get("system")
        status = _str(data, "status", request_id)
        return cls(
            id=_str(data, "id", request_id),
            system=system if isinstance(system, str) else None,
            status=status,
            reauthorization_required=bool(data.get("reauthorization_required"))
            or status == "reauthorization_required",
            last_sync_at=_when(data.get("last_sync_at"), "last_sync_at", request_id),
            request_id=request_id,
        )


@attrs.frozen(kw_only=True)
class EntitySyncStatus:
    """The last sync of one entity."""

    last_synced_at: dt.datetime | None
    status: str


@attrs.frozen(kw_only=True)
class SyncStatus:
    """``GET /api/v1/sync-status``, keyed by entity path name."""

    entities: Mapping[str, EntitySyncStatus]
    request_id: str | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], request_id: str | None) -> SyncStatus:
        _check_object(data, "sync-status", request_id)
        raw = data.get("entities")
        if not isinstance(raw, Mapping):
            msg = "sync-status response has no 'entities' object"
            raise MalformedResponse(msg, request_id=request_id)
        entities: dict[str, EntitySyncStatus] = {}
        for name, item in raw.items():
            if not isinstance(item, Mapping):
                msg = f"sync-status entry for {clean(repr(name))} is not an object"
                raise MalformedResponse(msg, request_id=request_id)
            status = item.get("status")
            entities[str(name)] = EntitySyncStatus(
                last_synced_at=_when(item.get("last_synced_at"), "last_synced_at", request_id),
                status=status if isinstance(status, str) else "unknown",
            )
        return cls(entities=entities, request_id=request_id)


@attrs.frozen(kw_only=True)
class SyncJob:
    """``POST /api/v1/syncs`` accepted a sync (202)."""

    data: Mapping[str, Any]
    request_id: str | None = attrs.field(default=None, eq=False)

    @property
    def id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None
