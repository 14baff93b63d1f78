"""Every exception makini_async raises.

::

    MakiniError                      status, code, type, message, request_id
    ├── APIError                     an error answer from the Makini API
    │   ├── BadRequestError          400 INVALID_REQUEST
    │   │   ├── InvalidPageSizeError 400 INVALID_PAGE_SIZE (max_page_size)
    │   │   └── ValidationError      400 VALIDATION_FAILED (fields)
    │   ├── AuthenticationError      401 AUTHENTICATION_FAILED
    │   │   └── ReauthorizationRequired  401 REAUTHORIZATION_REQUIRED
    │   ├── PermissionDenied         403 PERMISSION_DENIED
    │   ├── NotFound                 404 NOT_FOUND
    │   ├── OperationNotSupported    405 OPERATION_NOT_SUPPORTED
    │   ├── ConflictError            409 CONFLICT
    │   ├── RateLimitError           429 RATE_LIMIT_EXCEEDED (retry_after)
    │   ├── ServerError              500 INTERNAL_ERROR, other 5xx
    │   │   ├── ConnectedSystemError 502 CONNECTED_SYSTEM_ERROR
    │   │   └── ServiceUnavailable   503 SERVICE_UNAVAILABLE (retry_after)
    │   └── UnexpectedRedirect       a 3xx answer (never followed; also a TransportError)
    ├── TransportError               no usable answer
    │   ├── RequestTimeout           the request or a read timed out
    │   ├── ConnectionFailed         refused, reset or dropped mid-body
    │   ├── MalformedResponse        a body that is not the contract's JSON
    │   ├── OutageError              the API unreachable for the whole outage budget
    │   ├── ResponseTooLarge         a body over Limits.max_body_bytes (not retried)
    │   └── TLSError                 certificate or TLS handshake failure (not retried)
    ├── RecordStructureError         a record that does not fit its model (field)
    ├── PaginationError              a listing whose cursors loop or never end
    ├── CircuitOpenError             the connection's breaker is open (retry_at)
    ├── CheckpointError              a checkpoint store could not be read or written
    │   ├── CheckpointInUse          another driver holds the checkpoint's lease
    │   └── LeaseLost                a newer driver took the lease: this unit stops writing
    ├── SinkError                    a page could not be stored (fails only its chain)
    │   └── SinkUnavailable          the destination is down (retried; then ends the pull once)
    ├── WebhookVerificationError     a webhook whose signature does not verify
    └── UsageError (also ValueError) bad arguments, or a closed pool

Programs branch on the class (or ``code``), never on the message. Messages
carry the request ID when there is one, and never a token: text that came from
a server is scrubbed of credentials, has control characters escaped and is
shortened before it is put in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import datetime as dt

    from makini_async._invalid import InvalidRecord

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CheckpointError",
    "CheckpointInUse",
    "CircuitOpenError",
    "ConflictError",
    "ConnectedSystemError",
    "ConnectionFailed",
    "InvalidPageSizeError",
    "LeaseLost",
    "MakiniError",
    "MalformedResponse",
    "NotFound",
    "OperationNotSupported",
    "OutageError",
    "PaginationError",
    "PermissionDenied",
    "RateLimitError",
    "ReauthorizationRequired",
    "RecordStructureError",
    "RequestTimeout",
    "ResponseTooLarge",
    "ServerError",
    "ServiceUnavailable",
    "SinkError",
    "SinkUnavailable",
    "TLSError",
    "TransportError",
    "UnexpectedRedirect",
    "UsageError",
    "ValidationError",
    "WebhookVerificationError",
    "WorkerLost",
    "error_class_for",
]


class MakiniError(Exception):
    """Base class of every makini_async error."""

    #: Whether a request that failed with this error may be sent again.
    retryable: ClassVar[bool] = False
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        connection: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code if code is not None else self.default_code
        self.type = type
        self.request_id = request_id
        self.details: Mapping[str, Any] = details if details is not None else {}
        #: The connection's display name (never its token).
        self.connection = connection
        super().__init__(message)

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        extras = []
        if self.connection:
            extras.append(f"connection={self.connection}")
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        if extras:
            text = f"{text} ({', '.join(extras)})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep keyword state through pickling (multiprocessing, checkpoints).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[MakiniError], message: str, state: dict[str, Any]) -> MakiniError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class APIError(MakiniError):
    """The API answered with an error status and (usually) a structured body."""

    #: Whether the answer carried the API's own error body (code, message,
    #: request ID): a proxy's or a gateway's page does not.
    structured: bool = False


class BadRequestError(APIError):
    default_code = "INVALID_REQUEST"


class InvalidPageSizeError(BadRequestError):
    default_code = "INVALID_PAGE_SIZE"

    @property
    def max_page_size(self) -> int | None:
        value = self.details.get("max_page_size")
        return value if isinstance(value, int) and value > 0 else None


class ValidationError(BadRequestError):
    default_code = "VALIDATION_FAILED"

    @property
    def fields(self) -> Mapping[str, Any]:
        """Field name to problem(s), as the API's ``details.fields`` gives them."""
        value = self.details.get("fields")
        return value if isinstance(value, Mapping) else {}


class AuthenticationError(APIError):
    default_code = "AUTHENTICATION_FAILED"


class ReauthorizationRequired(AuthenticationError):
    """The customer must reconnect; a new token will follow. Never retried."""

    default_code = "REAUTHORIZATION_REQUIRED"


class PermissionDenied(APIError):
    default_code = "PERMISSION_DENIED"


class NotFound(APIError):
    default_code = "NOT_FOUND"


class OperationNotSupported(APIError):
    default_code = "OPERATION_NOT_SUPPORTED"


class ConflictError(APIError):
    default_code = "CONFLICT"


class RateLimitError(APIError):
    """429: the connection's rate limit. ``retry_after`` is in seconds, if known."""

    retryable = True
    default_code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(APIError):
    retryable = True
    default_code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ConnectedSystemError(ServerError):
    default_code = "CONNECTED_SYSTEM_ERROR"


class ServiceUnavailable(ServerError):
    default_code = "SERVICE_UNAVAILABLE"


class TransportError(MakiniError):
    """No usable answer arrived. Retried for requests that are safe to repeat."""

    retryable = True


class RequestTimeout(TransportError):
    pass


class ConnectionFailed(TransportError):
    pass


class MalformedResponse(TransportError):
    pass


class OutageError(TransportError):
    """The API stayed unreachable from the whole pool for longer than the outage budget.

    Not retried: every request of the pool waited for the API to come back,
    and it did not within ``OutagePolicy.budget`` (or the call's own timeout).
    """

    retryable = False


class ResponseTooLarge(TransportError):
    """A body longer than ``Limits.max_body_bytes`` (on the wire or inflated).

    Not retried: sending the request again would bring the same body.
    """

    retryable = False


class TLSError(TransportError):
    """The server's certificate did not verify, or the TLS handshake failed.

    Not retried: a bad certificate does not fix itself between attempts, and
    retrying would keep offering the token to whoever answered.
    """

    retryable = False


class UnexpectedRedirect(APIError, TransportError):
    """The API answered with a redirect (3xx). Redirects are never followed.

    Following one would re-send the token, a write body and its idempotency
    key to wherever the ``Location`` points, or turn a write into a GET that
    seems to succeed. ``location`` is the target's origin only
    (``scheme://host[:port]``), or ``None``. Not retried.
    """

    retryable = False

    def __init__(self, message: str, *, location: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.location = location


class RecordStructureError(MakiniError):
    """A record in a response does not fit its model.

    ``field`` is the path to the bad value; ``invalid_record`` (when set)
    holds the record as the API sent it, so raising never loses it. From a
    listing, ``page_records`` holds the page's records that did fit,
    ``page_invalid`` every record of the page that did not, and
    ``next_cursor`` the cursor after that page: pass it as ``cursor=`` to go
    on without fetching the page again (``None``: it was the last page).
    """

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field
        self.invalid_record: InvalidRecord | None = None
        self.page_records: list[Any] | None = None
        self.page_invalid: list[InvalidRecord] | None = None
        self.next_cursor: str | None = None


class PaginationError(MakiniError):
    """A listing's cursors loop, or it runs past the page-count guard. Not retried."""


class CircuitOpenError(MakiniError):
    """The connection failed repeatedly; calls are refused until ``retry_at``."""

    def __init__(
        self,
        message: str,
        *,
        retry_at: dt.datetime | None = None,
        retry_at_monotonic: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        #: When a probe will be let through: an aware UTC datetime, to show a person.
        self.retry_at = retry_at
        #: The same moment on the pool clock (``time.monotonic`` unless injected).
        self.retry_at_monotonic = retry_at_monotonic


class CheckpointError(MakiniError):
    """A checkpoint store failed; a pull stops rather than lose its place."""


class CheckpointInUse(CheckpointError):
    """Another driver holds the checkpoint's lease: two pulls never run on one checkpoint."""


class LeaseLost(CheckpointError):
    """A newer driver took the checkpoint's lease: this (older) unit may no longer write."""


class SinkError(MakiniError):
    """A page could not be stored where the pull lands it; only its chain fails."""


class SinkUnavailable(SinkError):
    """The destination cannot take writes now (a database restarting, a full disk).

    Transient: the sink retries its write with backoff until its deadline
    (``retry_deadline``), and a destination that stays down ends the whole
    pull once with this error, not every chain with its own.
    """


class WorkerLost(MakiniError):
    """A sharded pull's worker died (killed, out of memory) more times than a unit may retry.

    The unit's chains end with it; their checkpoints hold what had landed, so
    the next run resumes them.
    """


class WebhookVerificationError(MakiniError):
    pass


class UsageError(MakiniError, ValueError):
    """Bad arguments, or a call on a closed pool."""


_BY_CODE: dict[str, type[APIError]] = {
    "INVALID_REQUEST": BadRequestError,
    "INVALID_PAGE_SIZE": InvalidPageSizeError,
    "VALIDATION_FAILED": ValidationError,
    "AUTHENTICATION_FAILED": AuthenticationError,
    "REAUTHORIZATION_REQUIRED": ReauthorizationRequired,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "OPERATION_NOT_SUPPORTED": OperationNotSupported,
    "CONFLICT": ConflictError,
    "RATE_LIMIT_EXCEEDED": RateLimitError,
    "INTERNAL_ERROR": ServerError,
    "CONNECTED_SYSTEM_ERROR": ConnectedSystemError,
    "SERVICE_UNAVAILABLE": ServiceUnavailable,
}

_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    405: OperationNotSupported,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
    500: ServerError,
    502: ConnectedSystemError,
    503: ServiceUnavailable,
}


def error_class_for(status: int, code: str | None) -> type[APIError]:
    """The class for an error answer: by code first, then by status."""
    if code is not None:
        cls = _BY_CODE.get(code)
        if cls is not None:
            return cls
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else APIError
