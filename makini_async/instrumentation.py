"""Events as data, and the hook protocol that receives them.

A hook is any object with some of the ``on_*`` methods below; each may be a
plain or an ``async`` method (awaited in place, so keep it quick). Subclass
:class:`Hook` to implement only what you need. A hook that raises is logged
and ignored: instrumentation never fails a request. :class:`LoggingHook`
turns events into standard :mod:`logging` records (the pool logs retries,
breaker and reauthorization changes itself; add ``LoggingHook`` for one line
per request and page).

Events name connections by their display name, never by token.
"""

from __future__ import annotations

import enum
import inspect
import logging
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    Listener = Callable[[Any], Awaitable[None] | None]

__all__ = [
    "ConnectionState",
    "ConnectionStateEvent",
    "Hook",
    "LoggingHook",
    "OutageEvent",
    "PageEvent",
    "RequestEvent",
    "RetryEvent",
]

logger = logging.getLogger("makini_async")


class ConnectionState(str, enum.Enum):
    """What a connection handle currently allows."""

    ACTIVE = "active"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    DISCONNECTED = "disconnected"


@attrs.frozen(slots=True)
class RequestEvent:
    """One attempt finished: ``status`` is None when no answer arrived."""

    connection: str
    method: str
    path: str
    status: int | None
    request_id: str | None
    elapsed: float
    attempt: int
    error: str | None = None


@attrs.frozen(slots=True)
class RetryEvent:
    """A failed attempt is about to be retried after ``wait`` seconds."""

    connection: str
    method: str
    path: str
    attempt: int
    wait: float
    error: str
    request_id: str | None


@attrs.frozen(slots=True)
class PageEvent:
    """A listing page arrived: ``records`` that fit their model, ``invalid`` that did not."""

    connection: str
    entity: str
    records: int
    page_size: int
    has_more: bool
    request_id: str | None
    invalid: int = 0


@attrs.frozen(slots=True)
class ConnectionStateEvent:
    """A connection moved from ``old`` to ``new`` state."""

    connection: str
    old: ConnectionState
    new: ConnectionState
    reason: str
    request_id: str | None = None


@attrs.frozen(slots=True)
class OutageEvent:
    """The pool decided the API is down (``"began"``), or that it answers again (``"ended"``).

    ``connections`` is how many connections failed at once when it began;
    ``duration`` how long it lasted, when it ended.
    """

    kind: str
    connections: int
    duration: float
    error: str | None = None


class Hook:
    """Base class for hooks: every method is a no-op; override what you need."""

    def on_request(self, event: RequestEvent) -> Awaitable[None] | None:
        """After every attempt."""

    def on_retry(self, event: RetryEvent) -> Awaitable[None] | None:
        """Before the wait that precedes a retry."""

    def on_page(self, event: PageEvent) -> Awaitable[None] | None:
        """After each listing page is parsed."""

    def on_connection_state(self, event: ConnectionStateEvent) -> Awaitable[None] | None:
        """When a connection's state changes."""

    def on_outage(self, event: OutageEvent) -> Awaitable[None] | None:
        """When a pool-wide outage of the API begins or ends."""


class LoggingHook(Hook):
    """Log requests and pages at DEBUG on the ``makini_async`` logger."""

    def __init__(self, log: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self._log = log or logger
        self._level = level

    def on_request(self, event: RequestEvent) -> None:
        if self._log.isEnabledFor(self._level):
            self._log.log(
                self._level,
                "%s %s -> %s in %.3fs (connection=%s, attempt=%d, request_id=%s)",
                event.method,
                event.path,
                event.status if event.status is not None else event.error,
                event.elapsed,
                event.connection,
                event.attempt,
                event.request_id,
            )

    def on_page(self, event: PageEvent) -> None:
        if self._log.isEnabledFor(self._level):
            self._log.log(
                self._level,
                "page of %d %s (connection=%s, request_id=%s, more=%s)",
                event.records,
                event.entity,
                event.connection,
                event.request_id,
                event.has_more,
            )


class HookSet:
    """The hooks' bound methods, looked up once, per event kind.

    An empty tuple means nobody listens, so the event is not even built: the
    hot path pays nothing for instrumentation it does not use.
    """

    __slots__ = ("on_connection_state", "on_outage", "on_page", "on_request", "on_retry")

    def __init__(self, hooks: Sequence[object]) -> None:
        self.on_request = self._bound(hooks, "on_request")
        self.on_retry = self._bound(hooks, "on_retry")
        self.on_page = self._bound(hooks, "on_page")
        self.on_connection_state = self._bound(hooks, "on_connection_state")
        self.on_outage = self._bound(hooks, "on_outage")

    @staticmethod
    def _bound(hooks: Sequence[object], method: str) -> tuple[Listener, ...]:
        found: list[Listener] = []
        for hook in hooks:
            fn = getattr(hook, method, None)
            # A Hook subclass that does not override a method does not listen to it.
            if fn is not None and getattr(type(hook), method, None) is not getattr(Hook, method):
                found.append(fn)
        return tuple(found)


async def emit(listeners: Sequence[Listener], event: object) -> None:
    """Call every listener; await what returns an awaitable; log and swallow errors."""
    for fn in listeners:
        try:
            result = fn(event)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:  # noqa: PERF203 - one hook's failure must not skip the others
            logger.exception("hook %r raised for %s", fn, type(event).__name__)
