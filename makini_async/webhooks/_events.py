"""Typed webhook events: one attrs class per contract event type.

:func:`typed_event` turns a parsed :class:`WebhookEvent` into the subclass of
its type, reading the fields it knows from ``data`` (a value of an unexpected
type becomes ``None``: the whole ``data`` is still there). An event type the
contract does not list stays a plain :class:`WebhookEvent`, so a handler sees
new types as they appear instead of an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async.webhooks._signature import WebhookEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "STATUS_EVENT_TYPES",
    "ConnectionStatusChangedEvent",
    "ReauthorizationRequiredEvent",
    "SyncCompletedEvent",
    "SyncFailedEvent",
    "SystemErrorEvent",
    "typed_event",
]


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _count(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@attrs.frozen
class SyncCompletedEvent(WebhookEvent):
    """``sync.completed``: Makini finished syncing ``entity`` from the customer's system."""

    entity: str | None = None
    records: int | None = None


@attrs.frozen
class SyncFailedEvent(WebhookEvent):
    """``sync.failed``: a sync of ``entity`` failed; ``error`` is Makini's description."""

    entity: str | None = None
    error: str | None = None


@attrs.frozen
class ReauthorizationRequiredEvent(WebhookEvent):
    """``connection.reauthorization_required``: the customer must reconnect."""

    reason: str | None = None


@attrs.frozen
class ConnectionStatusChangedEvent(WebhookEvent):
    """``connection.status_changed``: ``status`` is the connection's new status.

    One of ``active``, ``reauthorization_required``, ``offline`` or
    ``disconnected`` (as ``GET /api/v1/connection`` reports it);
    ``previous_status`` when Makini sends it.
    """

    status: str | None = None
    previous_status: str | None = None


@attrs.frozen
class SystemErrorEvent(WebhookEvent):
    """``system.error``: something went wrong at Makini; ``message`` describes it."""

    message: str | None = None
    code: str | None = None


#: The event types that change a connection's status.
STATUS_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"connection.reauthorization_required", "connection.status_changed"}
)


def typed_event(event: WebhookEvent) -> WebhookEvent:
    """The typed event for ``event``'s type; unknown types come back unchanged."""
    base: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at,
        "connection_id": event.connection_id,
        "data": event.data,
    }
    data = event.data
    kind = event.type
    if kind == "sync.completed":
        return SyncCompletedEvent(
            **base, entity=_text(data, "entity"), records=_count(data, "records")
        )
    if kind == "sync.failed":
        return SyncFailedEvent(**base, entity=_text(data, "entity"), error=_text(data, "error"))
    if kind == "connection.reauthorization_required":
        return ReauthorizationRequiredEvent(**base, reason=_text(data, "reason"))
    if kind == "connection.status_changed":
        return ConnectionStatusChangedEvent(
            **base,
            status=_text(data, "status"),
            previous_status=_text(data, "previous_status"),
        )
    if kind == "system.error":
        return SystemErrorEvent(**base, message=_text(data, "message"), code=_text(data, "code"))
    return event
