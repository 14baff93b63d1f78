"""One connection's health: a small state machine on the injected clock.

::

    ACTIVE --429--> RATE_LIMITED --cooldown over--> ACTIVE
    ACTIVE --threshold retryable failures--> CIRCUIT_OPEN --cooldown--> probe
        probe answered --> ACTIVE          probe failed --> CIRCUIT_OPEN
    any --REAUTHORIZATION_REQUIRED--> REAUTHORIZATION_REQUIRED (sticky until reset)
    any --disconnect()--> DISCONNECTED (sticky)

:class:`Health` is the base class of :class:`~makini_async.connection.Connection`
(slots, so an idle handle stays small); the send loop drives it with the
outcome of each attempt and asks it whether a call may go out at all.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import TYPE_CHECKING, Any

from makini_async.errors import (
    AuthenticationError,
    CircuitOpenError,
    MakiniError,
    RateLimitError,
    ReauthorizationRequired,
)
from makini_async.instrumentation import ConnectionState, ConnectionStateEvent, emit

if TYPE_CHECKING:
    from makini_async._client.shared import Shared

__all__ = ["Health"]

logger = logging.getLogger("makini_async")


class Health:
    """Breaker, rate-limit cooldown and reauthorization mark of one connection."""

    __slots__ = (
        "_cooldown_until",
        "_failures",
        "_open_until",
        "_probing",
        "_reauth_request_id",
        "_shared",
        "_sticky",
    )

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._cooldown_until = 0.0
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._sticky: ConnectionState | None = None
        self._reauth_request_id: str | None = None

    @property
    def name(self) -> str:  # pragma: no cover - the connection defines it
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """What the handle allows now: active, rate-limited, circuit open, or a mark."""
        if self._sticky is not None:
            return self._sticky
        if self._open_until is not None:
            return ConnectionState.CIRCUIT_OPEN
        if self._cooldown_until > self._shared.clock():
            return ConnectionState.RATE_LIMITED
        return ConnectionState.ACTIVE

    @property
    def needs_reauthorization(self) -> bool:
        return self._sticky is ConnectionState.REAUTHORIZATION_REQUIRED

    @property
    def breaker_open(self) -> bool:
        return self._open_until is not None

    @property
    def _probe_at(self) -> float | None:
        """When an open breaker lets its next probe through (pool clock), else ``None``."""
        return self._open_until

    @property
    def _calm(self) -> bool:
        """No mark, no open breaker, no pause: nothing would be lost by forgetting it."""
        return (
            self._sticky is None
            and self._open_until is None
            and self._cooldown_until <= self._shared.clock()
        )

    def _cooldown_left(self) -> float:
        """Seconds until the connection's shared 429 pause ends (0 when none)."""
        return self._cooldown_until - self._shared.clock() if self._cooldown_until else 0.0

    def reset(self) -> None:
        """Clear the reauthorization mark, breaker and cooldown (after a fix)."""
        self._sticky = None
        self._reauth_request_id = None
        self._open_until = None
        self._failures = 0
        self._probing = False
        self._cooldown_until = 0.0

    # -- before a call -------------------------------------------------------------

    def _guard(self) -> bool:
        """Fail fast on a marked connection; return True if this call is the breaker probe."""
        sticky = self._sticky
        if sticky is ConnectionState.REAUTHORIZATION_REQUIRED:
            msg = (
                "the customer must reconnect this connection (reauthorization required); "
                "a new token will follow"
            )
            raise ReauthorizationRequired(
                msg, status=401, request_id=self._reauth_request_id, connection=self.name
            )
        if sticky is ConnectionState.DISCONNECTED:
            msg = "this connection was disconnected; its token no longer works"
            raise AuthenticationError(msg, connection=self.name)
        if self._open_until is None:
            return False
        now = self._shared.clock()
        if now < self._open_until or self._probing:
            msg = (
                f"circuit breaker open after {self._failures} consecutive failures; "
                f"next probe in {max(0.0, self._open_until - now):.1f}s"
            )
            raise CircuitOpenError(msg, **self._retry_at(), connection=self.name)
        self._probing = True
        return True

    def _breaker_error(self, error: MakiniError, *, while_waiting: bool) -> CircuitOpenError:
        """The error that ends a call whose retries the open breaker cuts short."""
        if while_waiting:
            msg = f"circuit breaker opened while retrying; last: {type(error).__name__}"
        else:
            msg = (
                f"circuit breaker opened after {self._failures} consecutive failures; "
                f"last: {type(error).__name__}: {error.message}"
            )
        return CircuitOpenError(
            msg, **self._retry_at(), connection=self.name, request_id=error.request_id
        )

    def _retry_at(self) -> dict[str, Any]:
        """When the breaker lets a probe through: on the pool clock, and on the wall clock."""
        until = self._open_until
        if until is None:
            return {}
        left = max(0.0, until - self._shared.clock())
        wall = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=left)
        return {"retry_at": wall, "retry_at_monotonic": until}

    def _end_probe(self) -> None:
        """A probe that ended without an answer (cancelled) frees the probe slot."""
        self._probing = False

    # -- after an attempt ----------------------------------------------------------

    def _succeeded(self) -> None:
        self._failures = 0
        self._shared.budget.on_success()

    async def _failed(
        self, error: MakiniError, *, probe: bool, pause: float, blameless: bool = False
    ) -> None:
        """Record a failed attempt; ``pause`` is how long a 429 pauses the connection.

        ``blameless`` failures (during an outage of the whole API) say nothing
        about this connection: they never count towards its breaker.
        """
        if probe and not (error.retryable and not isinstance(error, RateLimitError)):
            # The probe got an answer from Makini (a 429, a 4xx, a reauthorization
            # mark): the connection is reachable again, so the breaker closes.
            await self._close_breaker(error.request_id)
        if isinstance(error, RateLimitError):
            await self._pause(pause, error.request_id)
            return
        if isinstance(error, ReauthorizationRequired):
            await self._mark_reauthorization(error.request_id, "API error code")
            return
        if not error.retryable:
            # The connection answered: it is up, whatever the request's fault.
            self._failures = 0
            return
        if blameless:
            return
        self._failures += 1
        threshold = self._shared.breaker.threshold
        if probe or (self._open_until is None and self._failures >= threshold):
            await self._open(error)

    async def _pause(self, pause: float, request_id: str | None) -> None:
        now = self._shared.clock()
        until = now + pause
        was_limited = self._cooldown_until > now
        self._cooldown_until = max(self._cooldown_until, until)
        if not was_limited:
            await self._emit(
                ConnectionState.ACTIVE,
                ConnectionState.RATE_LIMITED,
                f"429, pausing {pause:.1f}s",
                request_id,
            )

    async def _open(self, error: MakiniError) -> None:
        self._probing = False
        was_open = self._open_until is not None
        self._open_until = self._shared.clock() + self._shared.breaker.cooldown
        logger.warning(
            "circuit breaker %s for connection %s after %d consecutive failures "
            "(last: %s, request_id=%s)",
            "re-opened" if was_open else "opened",
            self.name,
            self._failures,
            type(error).__name__,
            error.request_id,
        )
        if not was_open:
            await self._emit(
                ConnectionState.ACTIVE,
                ConnectionState.CIRCUIT_OPEN,
                f"{self._failures} consecutive failures",
                error.request_id,
            )

    async def _close_breaker(self, request_id: str | None) -> None:
        self._probing = False
        if self._open_until is not None:
            self._open_until = None
            self._failures = 0
            logger.info("circuit breaker closed for connection %s", self.name)
            await self._emit(
                ConnectionState.CIRCUIT_OPEN, ConnectionState.ACTIVE, "probe succeeded", request_id
            )

    async def _mark_reauthorization(self, request_id: str | None, reason: str) -> None:
        if self._sticky is ConnectionState.REAUTHORIZATION_REQUIRED:
            return
        self._reauth_request_id = request_id
        logger.warning(
            "connection %s requires reauthorization (%s, request_id=%s)",
            self.name,
            reason,
            request_id,
        )
        await self._set_sticky(ConnectionState.REAUTHORIZATION_REQUIRED, reason, request_id)
        await self._shared.notify_reauthorization(self)

    async def _set_sticky(self, new: ConnectionState, reason: str, request_id: str | None) -> None:
        old = self.state
        self._sticky = new
        if old is not new:
            await self._emit(old, new, reason, request_id)

    async def _emit(
        self, old: ConnectionState, new: ConnectionState, reason: str, request_id: str | None
    ) -> None:
        listeners = self._shared.hooks.on_connection_state
        if listeners:
            await emit(listeners, ConnectionStateEvent(self.name, old, new, reason, request_id))
