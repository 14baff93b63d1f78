"""Makini webhooks: signatures, typed events, and a receiver.

Pure helpers (no I/O)::

    verify(secret, body, request.headers["X-Makini-Signature"])
    event = typed_event(parse_event(body))      # SyncCompletedEvent, ...

Or the whole receiver (verify before parsing, answer at once, de-duplicate
by event id, hand events to workers through a bounded queue)::

    receiver = WebhookReceiver([new_secret, old_secret], handler, pool=pool)
    app.add_subapp("/makini/", receiver.app())

Signature (*contract*): ``t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 keyed with the webhook secret over ``b"<t>." + body``. Several
``v1=`` entries may appear during secret rotation; any match passes.
"""

from __future__ import annotations

from makini_async.webhooks._events import (
    STATUS_EVENT_TYPES,
    ConnectionStatusChangedEvent,
    ReauthorizationRequiredEvent,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    typed_event,
)
from makini_async.webhooks._receiver import (
    EventHandler,
    PoolBinding,
    ReceiverStats,
    WebhookReceiver,
)
from makini_async.webhooks._signature import (
    DEFAULT_TOLERANCE,
    EVENT_TYPES,
    SIGNATURE_HEADER,
    SeenEvents,
    WebhookEvent,
    parse_event,
    sign,
    verify,
)
from makini_async.webhooks._store import EventStore, MemoryEventStore, SQLiteEventStore

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "STATUS_EVENT_TYPES",
    "ConnectionStatusChangedEvent",
    "EventHandler",
    "EventStore",
    "MemoryEventStore",
    "PoolBinding",
    "ReauthorizationRequiredEvent",
    "ReceiverStats",
    "SQLiteEventStore",
    "SeenEvents",
    "SyncCompletedEvent",
    "SyncFailedEvent",
    "SystemErrorEvent",
    "WebhookEvent",
    "WebhookReceiver",
    "parse_event",
    "sign",
    "typed_event",
    "verify",
]
