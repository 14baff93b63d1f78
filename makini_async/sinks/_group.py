"""Group commit: pages from many chains land in one transaction, bounded by rows, bytes and time.

A database sink pays a transaction, a WAL flush and a round trip per commit.
Committing one page at a time caps it at a few hundred pages a second, far
below what the pull fetches. :class:`GroupCommit` collects the pages handed
to the sink and commits them together once the batch holds ``max_rows``
rows or ``max_bytes`` bytes, or ``max_delay`` seconds after its first page,
whichever comes first; each batch commits its pages *and* the cursor of
every chain in it in one transaction, so exactly once still holds: a batch
lands whole or not at all, and a chain's cursor never commits ahead of its
pages.

The pull goes on fetching and parsing while a batch commits. One batch
commits while the next fills; a full next batch makes :meth:`GroupCommit.add`
wait (back-pressure), so at most two batches are held in memory.

**Failures.** The sink's ``commit`` waits out a destination that is away
(its own retry) and raises :class:`~makini_async.errors.SinkUnavailable`
past its deadline: every chain of the batch fails with it, and so does every
later ``add``. Any other :class:`~makini_async.errors.SinkError` (a row the
database refuses) is isolated: each page of the batch is committed on its
own, in order, and only the chains whose page fails are failed; their later
pages are dropped, never committed past the failed one. A failure found
after ``add`` returned is reported through the callback given to
:meth:`GroupCommit.report_failures` (the pull ends that chain), and raised
by that chain's next ``add``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async.errors import SinkError, SinkUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from makini_async.entities import Entity

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DELAY", "DEFAULT_MAX_ROWS", "GroupCommit", "Pending"]

#: Rows a batch holds before it is committed.
DEFAULT_MAX_ROWS: Final = 5000
#: Bytes of encoded records a batch holds before it is committed.
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
#: Seconds a batch waits for more pages after its first one.
DEFAULT_MAX_DELAY: Final = 0.25


@attrs.define(slots=True)
class Pending:
    """One page waiting in a batch: its chain, its size, and what the sink commits."""

    connection: str
    entity: Entity
    rows: int
    size: int
    payload: Any


def _copy(error: SinkError, connection: str) -> SinkError:
    """The same failure told for one chain (each chain's error names its connection)."""
    copy = type(error)(error.message, request_id=error.request_id, connection=connection)
    copy.__cause__ = error.__cause__
    return copy


def _unexpected(exc: Exception) -> SinkError:
    error = SinkError(f"cannot commit a batch: unexpected {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class GroupCommit:
    """Batches of pending pages committed by ``commit``, one batch at a time."""

    def __init__(
        self,
        commit: Callable[[list[Pending]], Awaitable[None]],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._commit = commit
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._max_delay = max_delay
        self._clock = clock
        self._batch: list[Pending] = []
        self._rows = 0
        self._bytes = 0
        self._first_at = 0.0
        self._failed: dict[tuple[str, Entity], SinkError] = {}
        self._down: SinkUnavailable | None = None
        self._unreported: list[SinkError] = []
        self._on_failure: Callable[[str, Entity, SinkError], None] | None = None
        self._ready = asyncio.Event()  # the batch is worth committing now
        self._taken = asyncio.Event()  # the committer took the batch: there is room again
        self._idle = asyncio.Event()  # nothing pending, nothing committing
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # batches committed (for tests and reports)

    def report_failures(self, callback: Callable[[str, Entity, SinkError], None]) -> None:
        """Have ``callback(connection, entity, error)`` told of a chain whose page failed later."""
        self._on_failure = callback

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="makini-group-commit"
            )

    def _full(self) -> bool:
        return self._rows >= self._max_rows or self._bytes >= self._max_bytes

    async def add(self, item: Pending) -> None:
        """Queue one page; waits while the batch is full and the previous one commits."""
        self._raise_for(item.connection, item.entity)
        while self._full():
            self._ready.set()
            self._taken.clear()
            await self._taken.wait()
            self._raise_for(item.connection, item.entity)
        if not self._batch:
            self._first_at = self._clock()
            self._idle.clear()
        self._batch.append(item)
        self._rows += item.rows
        self._bytes += item.size
        self.start()
        if self._full() or self._max_delay <= 0:
            self._ready.set()
        elif len(self._batch) == 1:
            asyncio.get_running_loop().call_later(self._max_delay, self._due, self._first_at)

    def _raise_for(self, connection: str, entity: Entity) -> None:
        if self._down is not None:
            raise _copy(self._down, connection)
        failed = self._failed.get((connection, entity))
        if failed is not None:
            raise _copy(failed, connection)

    async def flush(self) -> None:
        """Commit every page added so far; raise what failed and was told to no one."""
        if self._batch:
            self._ready.set()
            self.start()
        await self._idle.wait()
        if self._down is not None:
            raise _copy(self._down, self._down.connection or "")
        if self._unreported:
            error, self._unreported = self._unreported[0], []
            raise error

    async def close(self) -> None:
        """Flush, then stop the committer (idempotent)."""
        try:
            await self.flush()
        finally:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _due(self, first_at: float) -> None:
        # A timer of a batch already taken (it filled up first) is a no-op.
        if self._batch and self._first_at == first_at:
            self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._batch, self._rows, self._bytes = self._batch, [], 0, 0
            self._taken.set()
            if batch:
                await self._commit_batch(batch)
            if not self._batch:
                self._idle.set()
            elif self._full() or self._clock() - self._first_at >= self._max_delay:
                self._ready.set()
            # Otherwise the timer the batch's first page started wakes this loop.

    async def _commit_batch(self, batch: list[Pending]) -> None:
        batch = [p for p in batch if (p.connection, p.entity) not in self._failed]
        if self._down is not None or not batch:
            if self._down is not None:
                self._fail_all(batch, self._down)
            return
        try:
            await self._commit(batch)
        except SinkUnavailable as exc:
            self._down = exc
            self._fail_all(batch, exc)
            return
        except SinkError as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
            else:
                await self._isolate(batch)
            return
        except Exception as exc:  # noqa: BLE001 - a sink's bug fails its chains, never hangs a flush
            self._fail_all(batch, _unexpected(exc))
            return
        self.batches += 1

    async def _isolate(self, batch: list[Pending]) -> None:
        """Commit each page alone, in order: only the chains whose page fails are failed."""
        for n, item in enumerate(batch):
            if (item.connection, item.entity) in self._failed:
                continue  # never past a page of this chain that failed
            try:
                await self._commit([item])
            except SinkUnavailable as exc:
                self._down = exc
                self._fail_all(batch[n:], exc)  # the pages committed before it stand
                return
            except SinkError as exc:
                self._fail(item, exc)
            except Exception as exc:  # noqa: BLE001 - as in _commit_batch
                self._fail(item, _unexpected(exc))
            else:
                self.batches += 1

    def _fail_all(self, batch: list[Pending], error: SinkError) -> None:
        for item in batch:
            self._fail(item, error)

    def _fail(self, item: Pending, error: SinkError) -> None:
        key = (item.connection, item.entity)
        if key in self._failed:
            return
        told = _copy(error, item.connection)
        self._failed[key] = told
        if self._on_failure is not None:
            self._on_failure(item.connection, item.entity, told)
        elif not isinstance(error, SinkUnavailable):
            self._unreported.append(told)


class Lanes:
    """Several :class:`GroupCommit` lanes committing side by side, a chain always in one.

    A chain's pages all go through the same lane, so they commit in order
    and its cursor never passes a page; different chains touch different
    rows, so the lanes' transactions do not wait for each other. More lanes
    use more of the database's cores (one connection each).
    """

    def __init__(
        self,
        commit: Callable[[list[Pending]], Awaitable[None]],
        *,
        lanes: int = 1,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self._lanes = [
            GroupCommit(commit, max_rows=max_rows, max_delay=max_delay) for _ in range(lanes)
        ]

    @property
    def batches(self) -> int:
        return sum(lane.batches for lane in self._lanes)

    def report_failures(self, callback: Callable[[str, Entity, SinkError], None]) -> None:
        for lane in self._lanes:
            lane.report_failures(callback)

    async def add(self, item: Pending) -> None:
        lanes = self._lanes
        if len(lanes) == 1:
            await lanes[0].add(item)
            return
        # A stable hash (not ``hash()``, salted per process): a chain's lane never changes.
        key = f"{item.connection}\0{item.entity.value}".encode()
        await lanes[zlib.crc32(key) % len(lanes)].add(item)

    async def flush(self) -> None:
        results = await asyncio.gather(
            *(lane.flush() for lane in self._lanes), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        results = await asyncio.gather(
            *(lane.close() for lane in self._lanes), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
