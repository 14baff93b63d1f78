"""Telling an outage of the API from one connection's trouble, and riding it out.

One customer's SAP being down makes that connection fail while the others
succeed: its own circuit breaker is the right answer. When the API, a proxy
in front of it or the network is down, every connection fails at once, and
opening thousands of breakers (or failing thousands of chains) would turn a
blip into a rerun. :class:`Outage` watches every attempt of a pool:

* an *outage-class* failure is one that says nothing about the customer's
  system: a timeout, a connection that fails, a body that is not the API's,
  or a 5xx without a Makini error code (a proxy's HTML page);
* when ``min_failures`` such failures in a row, from ``min_connections``
  different connections, come with no success anywhere in between (and
  within ``window`` seconds), the pool is in an outage (a few random faults
  here and there never line up like that): new requests wait, one probe at a time goes out
  (every ``probe_interval`` seconds, growing to ``probe_interval_max``),
  failures do not count against any connection's breaker, and a request
  that failed waits with the others for the outage to end instead of
  spending its attempts;
* any success ends the outage; one that lasts longer than ``budget``
  seconds ends every waiting request with :class:`OutageError`.

The state machine is driven by the send loop and the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from makini_async.errors import OutageError, ServerError, TransportError
from makini_async.instrumentation import OutageEvent, emit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from makini_async._config import OutagePolicy
    from makini_async.errors import MakiniError
    from makini_async.instrumentation import HookSet

__all__ = ["Outage", "is_outage_class"]

logger = logging.getLogger("makini_async")


def is_outage_class(error: MakiniError) -> bool:
    """Whether ``error`` could come from the API (or what is in front of it) being down.

    A 502 ``CONNECTED_SYSTEM_ERROR`` in the API's own error body is the
    customer's system failing: one connection's trouble. The same status
    from a proxy (an HTML page, no error body) is not.
    """
    if isinstance(error, OutageError):
        return False
    if isinstance(error, TransportError):
        return error.retryable
    if isinstance(error, ServerError):
        return not error.structured or error.code != "CONNECTED_SYSTEM_ERROR"
    return False


class Outage:
    """The pool-wide outage state machine (see the module docstring)."""

    __slots__ = (
        "_clock",
        "_ended",
        "_failing",
        "_failures",
        "_first_failure",
        "_hooks",
        "_next_probe",
        "_policy",
        "_probe_wait",
        "_probing",
        "_sleep",
        "since",
    )

    def __init__(
        self,
        policy: OutagePolicy,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        hooks: HookSet,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._hooks = hooks
        self._failing: set[str] = set()  # connections failing since the last success
        self._failures = 0  # outage-class failures in a row
        self._first_failure = 0.0
        #: When the outage began (pool clock), or ``None`` when there is none.
        self.since: float | None = None
        self._ended: asyncio.Event | None = None
        self._probing = False
        self._next_probe = 0.0
        self._probe_wait = policy.probe_interval

    @property
    def active(self) -> bool:
        return self.since is not None

    @property
    def quiet(self) -> bool:
        """No recent outage-class failure and no outage: a success has nothing to report."""
        return not self._failing and self.since is None

    # -- what the send loop reports ----------------------------------------------

    async def succeeded(self, sent_at: float) -> None:
        """An answer from the API to a request sent at ``sent_at``: nothing is down.

        Any answer breaks a run of failures. Only an answer to a request sent
        since the outage began ends it: one that was in flight while the API
        went away says nothing about now.
        """
        if self._failing:
            self._failing.clear()
            self._failures = 0
        if self.since is not None and sent_at >= self.since:
            await self._end()

    async def failed(self, connection: str, error: MakiniError) -> None:
        """An attempt failed; an outage-class failure may begin an outage."""
        if self.since is not None or not is_outage_class(error):
            return
        now = self._clock()
        if not self._failing or now - self._first_failure > self._policy.window:
            self._failing.clear()
            self._failures = 0
            self._first_failure = now
        self._failing.add(connection)
        self._failures += 1
        policy = self._policy
        if len(self._failing) >= policy.min_connections and self._failures >= policy.min_failures:
            await self._begin(error)

    # -- waiting ---------------------------------------------------------------------

    async def admit(self, deadline: float) -> bool:
        """Wait while the API is down; return True when this request is the probe."""
        while self.since is not None:
            now = self._clock()
            self._give_up_if_due(now, deadline)
            if not self._probing and now >= self._next_probe:
                self._probing = True
                return True
            wake = min(self._next_probe, deadline, self.since + self._policy.budget)
            await self._wait(max(0.0, wake - now))
        return False

    def probe_failed(self) -> None:
        """The probe got no answer: the next one goes out later, less often each time."""
        self._probing = False
        self._next_probe = self._clock() + self._probe_wait
        self._probe_wait = min(self._probe_wait * 2, self._policy.probe_interval_max)

    def probe_ended(self) -> None:
        """A probe that ended without a result (cancelled) frees its slot."""
        self._probing = False

    def _give_up_if_due(self, now: float, deadline: float) -> None:
        since = self.since
        assert since is not None  # noqa: S101 - only called during an outage
        lasted = now - since
        if lasted >= self._policy.budget or now >= deadline:
            msg = (
                f"the Makini API has been unreachable from this pool for {lasted:.0f}s "
                f"(an outage: every connection failing at once); giving up after "
                f"{'the outage budget' if lasted >= self._policy.budget else 'the call timeout'}"
            )
            raise OutageError(msg)

    async def _wait(self, seconds: float) -> None:
        ended = self._ended
        if ended is None:  # pragma: no cover - only during an outage
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(ended.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                if not task.done():
                    task.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)

    # -- transitions -----------------------------------------------------------------

    async def _begin(self, error: MakiniError) -> None:
        now = self._clock()
        self.since = now
        self._ended = asyncio.Event()
        self._probing = False
        self._probe_wait = self._policy.probe_interval
        self._next_probe = now + self._probe_wait
        failing = len(self._failing)
        logger.warning(
            "the Makini API looks down: %d connections failing at once (last: %s, "
            "request_id=%s); pausing requests and probing",
            failing,
            type(error).__name__,
            error.request_id,
        )
        listeners = self._hooks.on_outage
        if listeners:
            await emit(listeners, OutageEvent("began", failing, 0.0, type(error).__name__))

    async def _end(self) -> None:
        since = self.since
        if since is None:
            return
        lasted = self._clock() - since
        self.since = None
        self._probing = False
        ended, self._ended = self._ended, None
        if ended is not None:
            ended.set()
        logger.warning("the Makini API answers again after %.1fs; resuming", lasted)
        listeners = self._hooks.on_outage
        if listeners:
            await emit(listeners, OutageEvent("ended", 0, lasted, None))
