"""What every connection handle of one pool shares, handed to them in one object.

A :class:`~makini_async.connection.Connection` needs the pool's transport,
clock, sleep, random source, retry budget, pool-wide semaphore, hooks and
policies, and nothing else of it: :class:`Shared` is exactly that, so a
connection never reaches into the pool (and the pool module is not imported
by the modules below it).
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from makini_async._client.gate import Gate
from makini_async._client.outage import Outage
from makini_async.errors import UsageError

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable

    from makini_async._client.config import (
        BreakerPolicy,
        Limits,
        OutagePolicy,
        PageSizes,
        RetryPolicy,
        Timeouts,
    )
    from makini_async._client.retry import RetryBudget
    from makini_async._client.transport import Transport
    from makini_async.instrumentation import HookSet
    from makini_async.telemetry._otel import Telemetry

__all__ = ["Shared"]

logger = logging.getLogger("makini_async")

_NEW, _OPEN, _CLOSED = "new", "open", "closed"


class Shared:
    """The pool's shared parts: policies, clock, transport, budget, limits, hooks."""

    __slots__ = (
        "api_url",
        "as_dicts",
        "breaker",
        "budget",
        "clock",
        "gate",
        "hooks",
        "limits",
        "on_reauthorization",
        "outage",
        "page_sizes",
        "retry",
        "rng",
        "sleep",
        "state",
        "telemetry",
        "testing",
        "timeouts",
        "transport_or_none",
    )

    def __init__(
        self,
        *,
        api_url: str,
        timeouts: Timeouts,
        limits: Limits,
        retry: RetryPolicy,
        breaker: BreakerPolicy,
        page_sizes: PageSizes,
        outage: OutagePolicy,
        hooks: HookSet,
        budget: RetryBudget,
        as_dicts: bool,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        on_reauthorization: Callable[[Any], Awaitable[None] | None] | None,
        transport: Transport | None,
        telemetry: Telemetry | None = None,
        testing: bool = False,
    ) -> None:
        self.api_url = api_url
        #: This pool's own testing mode (every wait zero), whatever the process-wide switch.
        self.testing = testing
        #: OpenTelemetry's spans and metrics (``None``: off, or not installed).
        self.telemetry = telemetry
        self.timeouts = timeouts
        self.limits = limits
        self.retry = retry
        self.breaker = breaker
        self.page_sizes = page_sizes
        self.hooks = hooks
        self.budget = budget
        self.as_dicts = as_dicts
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.on_reauthorization = on_reauthorization
        self.transport_or_none = transport
        self.gate = Gate(limits.max_in_flight)
        #: Tells an outage of the API from one connection's trouble (see _outage).
        self.outage = Outage(outage, clock=clock, sleep=sleep, hooks=hooks)
        self.state = _NEW

    def ensure_open(self) -> None:
        """Raise :class:`UsageError` unless the pool is open."""
        if self.state != _OPEN:
            if self.state == _CLOSED:
                msg = "this MakiniPool is closed; create a new one"
            else:
                msg = "the pool is not open: use `async with MakiniPool(...) as pool:`"
            raise UsageError(msg)

    @property
    def transport(self) -> Transport:
        """The open pool's transport (:class:`UsageError` when it is not open)."""
        transport = self.transport_or_none
        if transport is None:
            self.ensure_open()
            msg = "the pool has no transport"
            raise UsageError(msg)
        return transport

    async def notify_reauthorization(self, conn: Any) -> None:
        """Call the pool's ``on_reauthorization_required`` callback (errors logged)."""
        callback = self.on_reauthorization
        if callback is None:
            return
        try:
            result = callback(conn)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_reauthorization_required raised for %s", conn.name)
