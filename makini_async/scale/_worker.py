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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from makini_async._retry import set_testing
from makini_async.bulk import Pull
from makini_async.checkpoint import open_checkpoint
from makini_async.pool import MakiniPool
from makini_async.scale._units import UnitJob, UnitResult, chain_row
from makini_async.sinks import JsonLinesSink, open_sink

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.bulk import ChainReport, Sink
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore
    from makini_async.scale._units import Row

__all__ = ["STOP_POLL", "is_dsn", "run_unit", "run_unit_sync", "unit_sink"]

#: Seconds between checks of a unit's stop request.
STOP_POLL: Final = 0.1


def is_dsn(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def unit_sink(spec: str | Callable[[int], Sink], unit: int, *, append: bool) -> Sink:
    """The unit's own sink: a directory sink writes under ``DIR/unit-NNNNN/``.

    ``spec`` may also be a picklable factory, called in the worker with the
    unit's number (your own sink, one instance per unit).

    Each unit owns its files, so no two processes ever append to one file or
    rewrite one manifest, and a unit that resumes on another worker finds
    exactly its own files (cutting a line its killed worker left half-written).
    PostgreSQL is shared: every page commits in its own transaction.
    """
    if callable(spec):
        return spec(unit)
    if is_dsn(spec):
        return open_sink(spec)
    kind, _, where = spec.partition(":")
    directory = str(Path(os.path.expanduser(where)) / f"unit-{unit:05d}")
    if kind == "jsonl":
        return JsonLinesSink(directory, append=append)
    return open_sink(f"{kind}:{directory}")


def _open_store(spec: str | None) -> CheckpointStore | AsyncCheckpointStore | None:
    if spec is None:
        return None
    if is_dsn(spec):
        return open_checkpoint(spec)
    # The coordinator holds the run lock; its workers share the file on purpose.
    return open_checkpoint(spec, lock=False)


async def run_unit(
    job: UnitJob,
    send: Callable[[tuple[int, str, int, list[Row]]], None],
    *,
    stopped: Callable[[], bool] | None = None,
) -> UnitResult:
    """Pull one unit into its sink; return every chain's final row.

    ``stopped`` is polled: once it is true the unit stops gracefully
    (:meth:`Pull.stop`), landing what it had fetched.
    """
    settings = job.settings
    if settings.testing:
        set_testing(True)
    attempt = secrets.token_hex(6)  # tells the coordinator a retried unit from its first try
    pid = os.getpid()
    checkpoint = None if settings.checkpoint is None else settings.checkpoint.value
    sink = unit_sink(settings.sink.value, job.unit, append=checkpoint is not None)
    store = _open_store(checkpoint)
    try:
        async with MakiniPool(**settings.pool_options) as pool:
            pull: Pull[Any] = Pull(
                pool,
                list(settings.entities),
                list(job.connections.value),
                sink=sink,
                checkpoint=store,
                **settings.pull_options,
            )
            chains = pull.report.chains
            send((job.unit, attempt, pid, []))  # started: the coordinator learns where
            reporter = asyncio.create_task(
                _report_every(settings.progress_interval, chains, job.unit, attempt, send)
            )
            watcher = None if stopped is None else asyncio.create_task(_stop_when(stopped, pull))
            try:
                async with pull:
                    await pull.run()
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
    return UnitResult(job.unit, attempt, pid, [chain_row(i, c) for i, c in enumerate(chains)])


async def _stop_when(stopped: Callable[[], bool], pull: Pull[Any]) -> None:
    """Stop the pull gracefully once ``stopped()`` is true (polled)."""
    # Polled: the flag is another process's (a multiprocessing Event), not this loop's.
    while not stopped():  # noqa: ASYNC110
        await asyncio.sleep(STOP_POLL)
    pull.stop()


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
    """:func:`run_unit` on a fresh event loop: the entry point of a worker process or Ray task."""
    return asyncio.run(run_unit(job, send, stopped=stopped))
