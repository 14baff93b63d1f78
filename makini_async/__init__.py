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

__version__ = "0.1.0"

from makini_async._config import BreakerPolicy, Limits, PageSizes, RetryPolicy, Timeouts
from makini_async._retry import is_testing, set_testing
from makini_async.bulk import (
    ChainReport,
    Outcome,
    Pull,
    PulledPage,
    PulledRecord,
    PullReport,
)
from makini_async.checkpoint import ChainState, CheckpointStore, JSONCheckpoint, SQLiteCheckpoint
from makini_async.connection import AUTO, Connection, ConnectionStats
from makini_async.entities import MAX_PAGE_SIZE, Entity
from makini_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CheckpointError,
    CircuitOpenError,
    ConflictError,
    ConnectedSystemError,
    ConnectionFailed,
    InvalidPageSizeError,
    MakiniError,
    MalformedResponse,
    NotFound,
    OperationNotSupported,
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
    TLSError,
    TransportError,
    UnexpectedRedirect,
    UsageError,
    ValidationError,
    WebhookVerificationError,
)
from makini_async.instrumentation import (
    ConnectionState,
    ConnectionStateEvent,
    Hook,
    LoggingHook,
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
from makini_async.pagination import Listing, Page
from makini_async.pool import MakiniPool
from makini_async.status import ConnectionInfo, SyncJob, SyncStatus

__all__ = [
    "AUTO",
    "MAX_PAGE_SIZE",
    "APIError",
    "Asset",
    "AuthenticationError",
    "BadRequestError",
    "BreakerPolicy",
    "ChainReport",
    "ChainState",
    "CheckpointError",
    "CheckpointStore",
    "CircuitOpenError",
    "ConflictError",
    "ConnectedSystemError",
    "Connection",
    "ConnectionFailed",
    "ConnectionInfo",
    "ConnectionState",
    "ConnectionStateEvent",
    "ConnectionStats",
    "Entity",
    "Hook",
    "InvalidPageSizeError",
    "InvalidRecord",
    "InventoryItem",
    "JSONCheckpoint",
    "Limits",
    "Listing",
    "Location",
    "LoggingHook",
    "MakiniError",
    "MakiniPool",
    "MalformedResponse",
    "NotFound",
    "OnInvalid",
    "OperationNotSupported",
    "Outcome",
    "Page",
    "PageEvent",
    "PageSizes",
    "PaginationError",
    "PermissionDenied",
    "Pull",
    "PullReport",
    "PulledPage",
    "PulledRecord",
    "PurchaseOrder",
    "RateLimitError",
    "ReauthorizationRequired",
    "Record",
    "RecordStructureError",
    "RequestEvent",
    "RequestTimeout",
    "ResponseTooLarge",
    "RetryEvent",
    "RetryPolicy",
    "SQLiteCheckpoint",
    "ServerError",
    "ServiceUnavailable",
    "SinkError",
    "SyncJob",
    "SyncStatus",
    "TLSError",
    "Timeouts",
    "TransportError",
    "UnexpectedRedirect",
    "UsageError",
    "ValidationError",
    "Vendor",
    "WebhookVerificationError",
    "WorkOrder",
    "__version__",
    "is_testing",
    "set_testing",
]
