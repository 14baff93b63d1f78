"""Fan-out: one coroutine per connection, bounded, isolated, reported like a pull.

``await pool.fan_out(connections, fn)`` runs ``fn(conn)`` for every
connection with at most ``concurrency`` running at once. One connection's
failure is recorded in its :class:`ConnectionResult` and never stops the
others; the :class:`FanOutReport` says, per connection, how it ended
(:class:`~makini_async.Outcome`), what ``fn`` returned and what it raised.

Writes inside ``fn`` keep their idempotency: ``create``/``update`` generate
one key per call and send it on every retry, so a write answered 503 after
it was applied is not applied twice.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Generic, TypeVar

import attrs

from makini_async._pool.workers import run_workers
from makini_async.bulk._chain import connections_of
from makini_async.bulk._report import Outcome
from makini_async.connection import Connection  # noqa: TC001 - attrs field type at run time
from makini_async.errors import CircuitOpenError, ReauthorizationRequired, UsageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from makini_async.bulk._chain import ConnectionSource, ConnectionSpec

__all__ = ["ConnectionResult", "FanOutReport", "fan_out", "resolve"]

T = TypeVar("T")


@attrs.define(slots=True, kw_only=True, weakref_slot=False)
class ConnectionResult(Generic[T]):
    """How ``fn`` went on one connection: its outcome, its value or its error."""

    connection: str
    outcome: Outcome = Outcome.PENDING
    value: T | None = None
    error: BaseException | None = None
    started_at: float | None = None
    finished_at: float | None = None
    handle: Connection = attrs.field(repr=False, eq=False)

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@attrs.define(slots=True, kw_only=True)
class FanOutReport(Generic[T]):
    """Every connection's :class:`ConnectionResult`, in the order given, plus totals."""

    results: list[ConnectionResult[T]] = attrs.field(factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def elapsed(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return all(r.outcome is Outcome.COMPLETED for r in self.results)

    @property
    def failed_connections(self) -> list[str]:
        """Connections whose call did not complete (sorted)."""
        return sorted(r.connection for r in self.results if r.outcome is not Outcome.COMPLETED)

    def values(self) -> dict[str, T]:
        """What ``fn`` returned, per connection that completed."""
        return {
            r.connection: r.value  # type: ignore[misc]  # completed means a value was set
            for r in self.results
            if r.outcome is Outcome.COMPLETED
        }

    def errors(self) -> dict[str, BaseException]:
        """What ``fn`` raised, per connection that failed."""
        return {r.connection: r.error for r in self.results if r.error is not None}

    def outcomes(self) -> dict[Outcome, int]:
        counts = collections.Counter(r.outcome for r in self.results)
        return {o: counts[o] for o in Outcome if counts[o]}

    def summary(self) -> str:
        """Totals, then one line per connection that did not complete."""
        done = sum(r.outcome is Outcome.COMPLETED for r in self.results)
        lines = [
            f"{done}/{len(self.results)} connections completed in {self.elapsed:.1f}s",
            "outcomes: " + ", ".join(f"{o.value}={n}" for o, n in self.outcomes().items()),
        ]
        for r in self.results:
            if r.outcome is not Outcome.COMPLETED:
                reason = f": {type(r.error).__name__}: {r.error}" if r.error is not None else ""
                lines.append(f"  {r.connection}: {r.outcome.value}{reason}")
        return "\n".join(lines)


def _outcome(error: Exception) -> Outcome:
    if isinstance(error, ReauthorizationRequired):
        return Outcome.REAUTHORIZATION_REQUIRED
    if isinstance(error, CircuitOpenError):
        return Outcome.SKIPPED
    return Outcome.FAILED


async def fan_out(
    connections: Sequence[Connection],
    fn: Callable[[Connection], Awaitable[T]],
    *,
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
) -> FanOutReport[T]:
    """Run ``fn`` on every connection, ``concurrency`` at a time; never raises for one.

    ``concurrency`` defaults (in ``pool.fan_out``) to the pool's ``max_in_flight``;
    the pool's own limits still bound the requests the calls make.
    """
    if not callable(fn):
        msg = f"fn must be an async function taking a Connection, got {type(fn).__name__}"
        raise UsageError(msg)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        msg = f"concurrency must be an integer >= 1, got {concurrency!r}"
        raise UsageError(msg)
    report: FanOutReport[T] = FanOutReport(
        results=[ConnectionResult(connection=c.name, handle=c) for c in connections],
        started_at=clock(),
    )
    pending = collections.deque(report.results)

    async def worker() -> None:
        while pending:
            result = pending.popleft()
            result.outcome = Outcome.RUNNING
            result.started_at = clock()
            try:
                result.value = await fn(result.handle)
            except asyncio.CancelledError:
                result.outcome = Outcome.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001 - one connection's failure is data
                # Isolation: whatever one connection's call raises stays in its result.
                result.error = exc
                result.outcome = _outcome(exc)
            else:
                result.outcome = Outcome.COMPLETED
            finally:
                result.finished_at = clock()

    try:
        await run_workers(min(concurrency, len(pending)), worker)
    finally:
        for result in pending:
            result.outcome = Outcome.CANCELLED
        report.finished_at = clock()
    return report


def resolve(
    source: ConnectionSource, connections: Iterable[ConnectionSpec], what: str
) -> list[Connection]:
    """Handles for tokens, ``(name, token)`` pairs or handles; at least one."""
    specs = None if isinstance(connections, (str, bytes)) else list(connections)
    if not specs:
        msg = f"{what} needs a non-empty list of connections (tokens, pairs or handles)"
        raise UsageError(msg)
    return connections_of(source, specs)
