"""One unit in a worker: its own event loop, pool, pull and sink; progress sent as rows.

A worker never returns records: it lands them in its own sink instance and
sends back only small rows of chain state, every ``progress_interval``
seconds (the chains that changed) and once at the end (every chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
from typing import TYPE_CHECKING, Any, Final

from makini_async import tuning
from makini_async._client.retry import set_testing
from makini_async.bulk import ChainReport, Outcome, Pull
from makini_async.checkpoint import PostgresCheckpoint, open_checkpoint
from makini_async.entities import Entity
from makini_async.pool import MakiniPool
from makini_async.scale._units import UnitJob, UnitResult, chain_row
from makini_async.sinks import open_sink

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async.bulk import Sink
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore, Fence
    from makini_async.scale._units import Row

__all__ = ["STOP_POLL", "is_dsn", "run_unit", "run_unit_sync", "unit_sink"]

#: Seconds between checks of a unit's stop request.
STOP_POLL: Final = 0.1


def is_dsn(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def unit_sink(spec: str | Callable[[int], Sink], bucket: int, *, append: bool) -> Sink:
    """A bucket's own sink: a directory sink writes under ``DIR/bucket-NNNNN/``.

    ``spec`` may also be a picklable factory, called in the worker with the
    bucket's number (your own sink, one instance per bucket).

    Each bucket owns its files, so no two processes ever append to one file or
    rewrite one manifest, and a unit that resumes on another worker finds
    exactly its own files (cutting a line its killed worker left half-written).
    A bucket folder that is a link is refused. PostgreSQL is shared: every page
    commits in its own transaction.
    """
    if callable(spec):
        return spec(bucket)
    if is_dsn(spec):
        return open_sink(spec)
    # DIR is the user's; the bucket folder is ours, so a link planted there is refused.
    # The workers use every core already: a Parquet helper process would only contend.
    return open_sink(spec, append=append, folder=f"bucket-{bucket:05d}", helper=False)


def _open_store(
    spec: str | None, fence: Fence | None
) -> CheckpointStore | AsyncCheckpointStore | None:
    if spec is None:
        return None
    if is_dsn(spec):
        store = open_checkpoint(spec)
        _fence(store, fence)
        return store
    # The coordinator holds the run lock; its workers share the file on purpose.
    return open_checkpoint(spec, lock=False)


async def run_unit(
    job: UnitJob,
    send: Callable[[tuple[int, str, int, list[Row]]], None],
    *,
    stopped: Callable[[], bool] | None = None,
) -> UnitResult:
    """Pull one unit into its sinks (one a bucket); return every chain's final row.

    ``stopped`` is polled: once it is true the unit stops gracefully (no
    bucket starts, and each running :class:`Pull` stops: what it had fetched
    lands), and returns its rows as a finished unit does.
    """
    settings = job.settings
    if settings.testing:
        set_testing(True)
    attempt = secrets.token_hex(6)  # tells the coordinator a retried unit from its first try
    pid = os.getpid()
    send((job.unit, attempt, pid, []))  # started: the coordinator learns where
    checkpoint = None if settings.checkpoint is None else settings.checkpoint.value
    spec = settings.sink.value
    connections = job.connections.value
    # PostgreSQL is one shared destination: the unit lands through one sink.
    groups = [(-1, len(connections))] if isinstance(spec, str) and is_dsn(spec) else job.buckets
    entities = list(settings.entities)
    # One report per chain from the start; a bucket's Pull replaces its part when it starts.
    chains: list[ChainReport] = [
        ChainReport(connection=name, entity=Entity(e)) for name, _ in connections for e in entities
    ]
    store = _open_store(checkpoint, settings.fence)
    try:
        async with MakiniPool(**settings.pool_options) as pool:
            reporter = asyncio.create_task(
                _report_every(settings.progress_interval, chains, job.unit, attempt, send)
            )
            halt = _Halt()
            watcher = None if stopped is None else asyncio.create_task(_stop_when(stopped, halt))
            try:
                await _run_buckets(
                    pool, job, groups, chains, store, append=checkpoint is not None, halt=halt
                )
            finally:
                for task in (reporter, watcher):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
    finally:
        if store is not None:
            closing = store.close()
            if inspect.isawaitable(closing):  # the PostgreSQL store closes asynchronously
                await closing
    rows = [chain_row(i, c) for i, c in enumerate(chains)]
    return UnitResult(job.unit, attempt, pid, rows, tuned=tuning.active())


async def _run_buckets(
    pool: MakiniPool,
    job: UnitJob,
    groups: Sequence[tuple[int, int]],
    chains: list[ChainReport],
    store: CheckpointStore | AsyncCheckpointStore | None,
    *,
    append: bool,
    halt: _Halt,
) -> None:
    """One Pull a bucket over the worker's pool, as many at once as fill its requests in flight."""
    settings = job.settings
    connections = job.connections.value
    per = len(settings.entities)
    wanted = settings.options.concurrency or pool.limits.max_in_flight
    busy = 0  # chains of the running Pulls

    async def one(bucket: int, start: int, count: int) -> None:
        nonlocal busy
        try:
            sink = unit_sink(settings.sink.value, bucket, append=append)
            _fence(sink.checkpoint_store, settings.fence)
            pull: Pull[Any] = Pull(
                pool,
                list(settings.entities),
                list(connections[start : start + count]),
                sink=sink,
                checkpoint=store,
                layout=settings.layout,
                as_dicts=settings.as_dicts,
                options=settings.options,
            )
            chains[start * per : (start + count) * per] = pull.report.chains
            halt.pulls.add(pull)
            if halt.requested:
                pull.stop()
            try:
                async with pull:
                    await pull.run()
            finally:
                halt.pulls.discard(pull)
        except Exception as exc:  # noqa: BLE001 - a bucket's failure ends only its chains
            for chain in chains[start * per : (start + count) * per]:
                if not chain.done:
                    chain.outcome = Outcome.FAILED
                    chain.error = exc
        finally:
            busy -= count * per

    running: set[asyncio.Task[None]] = set()
    start = 0
    try:
        for bucket, count in groups:
            while running and busy + count * per > wanted:
                _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if halt.requested:
                break  # the chains of buckets not started stay pending: the next run has them
            busy += count * per
            running.add(asyncio.create_task(one(bucket, start, count)))
            start += count
        if running:
            await asyncio.wait(running)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _fence(store: object, fence: Fence | None) -> None:
    """Fence a PostgreSQL store's saves by the driver's lease (other stores have none)."""
    if fence is not None and isinstance(store, PostgresCheckpoint):
        store.fence(fence)


class _Halt:
    """Stops a unit gracefully: its running Pulls, and any bucket that would start."""

    def __init__(self) -> None:
        self.requested = False
        self.pulls: set[Pull[Any]] = set()

    def __call__(self) -> None:
        self.requested = True
        for pull in list(self.pulls):
            pull.stop()


async def _stop_when(stopped: Callable[[], bool], halt: _Halt) -> None:
    """Halt the unit once ``stopped()`` is true (polled)."""
    # Polled: the flag is another process's (a multiprocessing Event), not this loop's.
    while not stopped():  # noqa: ASYNC110
        await asyncio.sleep(STOP_POLL)
    halt()


async def _report_every(
    interval: float,
    chains: list[ChainReport],
    unit: int,
    attempt: str,
    send: Callable[[tuple[int, str, int, list[Row]]], None],
) -> None:
    """Send the rows that changed since the last message, every ``interval`` seconds."""
    last: list[Row | None] = [None] * len(chains)
    pid = os.getpid()
    while True:
        await asyncio.sleep(interval)
        changed = []
        for i, chain in enumerate(chains):
            row = chain_row(i, chain)
            if row != last[i]:
                last[i] = row
                changed.append(row)
        if changed:
            send((unit, attempt, pid, changed))


def run_unit_sync(
    job: UnitJob,
    send: Callable[[tuple[int, str, int, list[Row]]], None],
    *,
    stopped: Callable[[], bool] | None = None,
) -> UnitResult:
    """:func:`run_unit` on a fresh event loop: the entry point of a worker process or Ray task.

    A worker owns its process, so it runs tuned (:func:`~makini_async.tuning.tuned`)
    unless the pull says ``tune=False``.
    """
    with tuning.owned(enabled=job.settings.tune):
        return asyncio.run(run_unit(job, send, stopped=stopped))
