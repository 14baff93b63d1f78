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
* any answer from the API (a success, or an error only the API could have
  sent: a 404, a 429, a customer system's 502) ends the outage; a request
  that has waited ``budget`` seconds (or its own timeout) ends with
  :class:`OutageError`, while requests that came later keep waiting and
  probing, so a pool never refuses work for good.

The state machine is driven by the send loop and the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from makini_async.errors import OutageError, ServerError, TransportError
from makini_async.instrumentation import OutageEvent, emit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from makini_async._client.config import OutagePolicy
    from makini_async.errors import MakiniError
    from makini_async.instrumentation import HookSet

__all__ = ["Outage", "Waiter", "is_outage_class"]

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


class Waiter:
    """One call's place in an outage: how long it may wait and the probe it holds."""

    __slots__ = ("deadline", "outage", "ticket", "until")

    def __init__(self, deadline: float) -> None:
        #: The call's own deadline (``inf`` for a patient call).
        self.deadline = deadline
        #: When this call stops waiting, fixed when it first waits in an outage.
        self.until = math.inf
        #: When that outage began: a later outage gives the call a budget of its own.
        self.outage: float | None = None
        #: The probe this call carries (0: none); a stale ticket is ignored.
        self.ticket = 0


class Outage:
    """The pool-wide outage state machine (see the module docstring)."""

    __slots__ = (
        "_changed",
        "_clock",
        "_failing",
        "_failures",
        "_first_failure",
        "_hooks",
        "_next_probe",
        "_policy",
        "_probe_wait",
        "_probing",
        "_sleep",
        "_tickets",
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
        # Set (and replaced) whenever a waiting call may act: a probe ended, the outage ended.
        self._changed = asyncio.Event()
        self._probing = False
        self._tickets = 0
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

    async def answered(self, waiter: Waiter, sent_at: float) -> None:
        """The API answered ``waiter``'s request sent at ``sent_at``: its probe, if any, is done."""
        waiter.ticket = 0
        await self.succeeded(sent_at)

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

    async def admit(self, waiter: Waiter) -> None:
        """Wait while the API is down; hand ``waiter`` the probe when one is due.

        Raises :class:`OutageError` once the waiter has waited its budget or
        its deadline is past.
        """
        while (since := self.since) is not None:
            now = self._clock()
            if waiter.outage != since:
                waiter.outage = since
                waiter.until = min(waiter.deadline, now + self._policy.budget)
            if now >= waiter.until:
                raise OutageError(self._giving_up(now - since, waiter))
            if not self._probing and now >= self._next_probe:
                self._probing = True
                self._tickets += 1
                waiter.ticket = self._tickets
                return
            # While a probe is out, wake when it ends (the event) or, at the
            # latest, after the longest probe interval: never a busy loop.
            due = now + self._policy.probe_interval_max if self._probing else self._next_probe
            await self._wait(max(0.0, min(due, waiter.until) - now))

    def probe_failed(self, waiter: Waiter) -> None:
        """The probe got no answer: the next one goes out later, less often each time."""
        if not self._owns_probe(waiter):
            return
        self._next_probe = self._clock() + self._probe_wait
        self._probe_wait = min(self._probe_wait * 2, self._policy.probe_interval_max)
        self._notify()

    def probe_ended(self, waiter: Waiter) -> None:
        """A probe that ended without a result (cancelled, given up) frees its slot."""
        if self._owns_probe(waiter):
            self._notify()

    def _owns_probe(self, waiter: Waiter) -> bool:
        ticket, waiter.ticket = waiter.ticket, 0
        if ticket == 0 or ticket != self._tickets or not self._probing:
            return False  # a probe of an outage that has ended since
        self._probing = False
        return True

    def _giving_up(self, waited: float, waiter: Waiter) -> str:
        by_budget = waiter.until < waiter.deadline
        return (
            f"the Makini API has been unreachable from this pool for {waited:.0f}s "
            f"(an outage: every connection failing at once); giving up after "
            f"{'the outage budget' if by_budget else 'the call timeout'}"
        )

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(self._changed.wait())
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
        self._notify()
        logger.warning("the Makini API answers again after %.1fs; resuming", lasted)
        listeners = self._hooks.on_outage
        if listeners:
            await emit(listeners, OutageEvent("ended", 0, lasted, None))
