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
from typing import TYPE_CHECKING, Any

from makini_async._retry import set_testing
from makini_async.bulk import Pull
from makini_async.checkpoint import open_checkpoint
from makini_async.pool import MakiniPool
from makini_async.scale._units import UnitJob, UnitResult, chain_row
from makini_async.sinks import open_sink

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.bulk import ChainReport, Sink
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore
    from makini_async.scale._units import Row

__all__ = ["is_dsn", "run_unit", "run_unit_sync", "unit_sink"]


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
    # DIR is the user's; the unit folder is ours, so a link planted there is refused.
    return open_sink(spec, append=append, folder=f"unit-{unit:05d}")


def _open_store(spec: str | None) -> CheckpointStore | AsyncCheckpointStore | None:
    if spec is None:
        return None
    if is_dsn(spec):
        return open_checkpoint(spec)
    # The coordinator holds the run lock; its workers share the file on purpose.
    return open_checkpoint(spec, lock=False)


async def run_unit(
    job: UnitJob, send: Callable[[tuple[int, str, int, list[Row]]], None]
) -> UnitResult:
    """Pull one unit into its sink; return every chain's final row."""
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
            try:
                async with pull:
                    await pull.run()
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
    finally:
        if store is not None:
            closing = store.close()
            if inspect.isawaitable(closing):  # the PostgreSQL store closes asynchronously
                await closing
    return UnitResult(job.unit, attempt, pid, [chain_row(i, c) for i, c in enumerate(chains)])


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
    job: UnitJob, send: Callable[[tuple[int, str, int, list[Row]]], None]
) -> UnitResult:
    """:func:`run_unit` on a fresh event loop: the entry point of a worker process or Ray task."""
    return asyncio.run(run_unit(job, send))
