"""makini_async: an asyncio-first client for the Makini unified API.

::

    async with MakiniPool() as pool:
        conn = pool.connection(token, name="acme")
        async for order in conn.list("work-orders", modified_after="2024-01-01"):
            ...

See :class:`MakiniPool`, :class:`Connection`, :mod:`makini_async.bulk` for
pulls across many connections, and :mod:`makini_async.testing` for the
embedded mock server.
"""

from __future__ import annotations

import logging as _logging

from makini_async._client.config import (
    BreakerPolicy,
    CallOptions,
    Limits,
    OutagePolicy,
    PageSizes,
    RetryPolicy,
    Timeouts,
)
from makini_async._client.retry import is_testing, set_testing
from makini_async._client.tokens import TokenProvider, TokenProviderError
from makini_async._pool.directory import StatusChange
from makini_async._pool.fanout import ConnectionResult, FanOutReport
from makini_async._pool.watch import Watch
from makini_async._wire.constants import VERSION as __version__  # noqa: N811
from makini_async.bulk import (
    ChainReport,
    Outcome,
    Pull,
    PulledPage,
    PulledRecord,
    PullOptions,
    PullReport,
)
from makini_async.checkpoint import ChainState, CheckpointStore, JSONCheckpoint, SQLiteCheckpoint
from makini_async.connection import Connection, ConnectionStats, ConnectionView
from makini_async.entities import MAX_PAGE_SIZE, Entity
from makini_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CheckpointError,
    CheckpointInUse,
    CircuitOpenError,
    ConflictError,
    ConnectedSystemError,
    ConnectionFailed,
    InvalidPageSizeError,
    LeaseLost,
    MakiniError,
    MalformedResponse,
    NotFound,
    OperationNotSupported,
    OutageError,
    PaginationError,
    PermissionDenied,
    RateLimitError,
    ReauthorizationRequired,
    RecordStructureError,
    RequestTimeout,
    ResponseTooLarge,
    ServerError,
    ServiceUnavailable,
    SinkError,
    SinkUnavailable,
    TLSError,
    TransportError,
    UnexpectedRedirect,
    UsageError,
    ValidationError,
    WebhookVerificationError,
    WorkerLost,
)
from makini_async.instrumentation import (
    ConnectionState,
    ConnectionStateEvent,
    Hook,
    LoggingHook,
    OutageEvent,
    PageEvent,
    RequestEvent,
    RetryEvent,
)
from makini_async.models import (
    Asset,
    InvalidRecord,
    InventoryItem,
    Location,
    OnInvalid,
    PurchaseOrder,
    Record,
    Vendor,
    WorkOrder,
)
from makini_async.models import unstructure as to_dict
from makini_async.pagination import Listing, Page
from makini_async.pool import MakiniPool, PoolView
from makini_async.resources import (
    AUTO,
    Assets,
    InventoryItems,
    Locations,
    PurchaseOrders,
    Resource,
    Vendors,
    WorkOrders,
)
from makini_async.responses import Response
from makini_async.status import ConnectionInfo, SyncJob, SyncStatus
from makini_async.webhooks import (
    ConnectionStatusChangedEvent,
    EventStore,
    MemoryEventStore,
    ReauthorizationRequiredEvent,
    SQLiteEventStore,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    WebhookEvent,
    WebhookReceiver,
)

__all__ = [
    "AUTO",
    "MAX_PAGE_SIZE",
    "APIError",
    "Asset",
    "Assets",
    "AuthenticationError",
    "BadRequestError",
    "BreakerPolicy",
    "CallOptions",
    "ChainReport",
    "ChainState",
    "CheckpointError",
    "CheckpointInUse",
    "CheckpointStore",
    "CircuitOpenError",
    "ConflictError",
    "ConnectedSystemError",
    "Connection",
    "ConnectionFailed",
    "ConnectionInfo",
    "ConnectionResult",
    "ConnectionState",
    "ConnectionStateEvent",
    "ConnectionStats",
    "ConnectionStatusChangedEvent",
    "ConnectionView",
    "Entity",
    "EventStore",
    "FanOutReport",
    "Hook",
    "InvalidPageSizeError",
    "InvalidRecord",
    "InventoryItem",
    "InventoryItems",
    "JSONCheckpoint",
    "LeaseLost",
    "Limits",
    "Listing",
    "Location",
    "Locations",
    "LoggingHook",
    "MakiniError",
    "MakiniPool",
    "MalformedResponse",
    "MemoryEventStore",
    "NotFound",
    "OnInvalid",
    "OperationNotSupported",
    "OutageError",
    "OutageEvent",
    "OutagePolicy",
    "Outcome",
    "Page",
    "PageEvent",
    "PageSizes",
    "PaginationError",
    "PermissionDenied",
    "PoolView",
    "Pull",
    "PullOptions",
    "PullReport",
    "PulledPage",
    "PulledRecord",
    "PurchaseOrder",
    "PurchaseOrders",
    "RateLimitError",
    "ReauthorizationRequired",
    "ReauthorizationRequiredEvent",
    "Record",
    "RecordStructureError",
    "RequestEvent",
    "RequestTimeout",
    "Resource",
    "Response",
    "ResponseTooLarge",
    "RetryEvent",
    "RetryPolicy",
    "SQLiteCheckpoint",
    "SQLiteEventStore",
    "ServerError",
    "ServiceUnavailable",
    "SinkError",
    "SinkUnavailable",
    "StatusChange",
    "SyncCompletedEvent",
    "SyncFailedEvent",
    "SyncJob",
    "SyncStatus",
    "SystemErrorEvent",
    "TLSError",
    "Timeouts",
    "TokenProvider",
    "TokenProviderError",
    "TransportError",
    "UnexpectedRedirect",
    "UsageError",
    "ValidationError",
    "Vendor",
    "Vendors",
    "Watch",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WorkOrder",
    "WorkOrders",
    "WorkerLost",
    "__version__",
    "is_testing",
    "set_testing",
    "to_dict",
]

# A library's logger hands records on and prints nothing by itself: a service
# that never configured logging does not get the library's warnings on stderr.
_logging.getLogger("makini_async").addHandler(_logging.NullHandler())
