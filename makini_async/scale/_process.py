"""Local worker processes: ``concurrent.futures.ProcessPoolExecutor``, forkserver or spawn.

Never a fork of the coordinator: the child would inherit its event loop,
sockets and threads. Where the platform has it, workers fork from
multiprocessing's fork server, a clean process started once that has
already imported the worker's modules, so a worker is ready in milliseconds
instead of the half second an import takes; elsewhere they are spawned.
Either way each worker imports the main module as spawn does (keep your
script's entry point under ``if __name__ == "__main__":``) and starts with
the coordinator's environment as it is when the executor starts, not as it
was when the fork server started. Each unit runs as one executor call on a
fresh event loop in whichever worker is free. Progress comes back through a
``multiprocessing`` queue given to every worker at start-up.

A worker killed mid-unit breaks the whole executor (``BrokenProcessPool``:
the standard library then stops every worker with SIGTERM). The units that
were running go back to the front of the queue and a new executor starts;
each resumes from its checkpoint, so the unit of the dead worker finishes on
another. Only the units of the worker that died are charged an attempt: the
workers report their pid with every message, and the one that died is the
one that did not end by the executor's SIGTERM. When that cannot be told
(a worker that died before saying where it ran), every unit it may have run
is charged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from typing import TYPE_CHECKING, Any, Final

from makini_async.errors import UsageError, WorkerLost
from makini_async.scale._worker import run_unit_sync

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.scale._units import Row, UnitEvents, UnitJob, UnitResult

__all__ = ["ProcessEngine"]

#: Rows per progress message. A message stays well under PIPE_BUF (4 KiB), which the
#: kernel writes whole, so a worker killed mid-send never leaves half a message behind.
ROWS_PER_MESSAGE: Final = 24

_progress: Any = None  # the worker's end of the progress queue (set by _start_worker)
_stopping: Any = None  # the executor's stop event, set by ProcessEngine.stop (see _start_worker)


def _start_worker(progress: Any, environ: dict[str, str], stopping: Any = None) -> None:
    global _progress, _stopping  # noqa: PLW0603 - one of each per worker process, set at start
    _progress = progress
    _stopping = stopping
    # A forked worker has the fork server's environment, from when it started.
    if environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    # Ctrl-C reaches the whole process group; the coordinator alone decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _send(message: tuple[int, str, int, list[Row]]) -> None:
    unit, attempt, pid, rows = message
    if not rows:
        _progress.put(message)
    for i in range(0, len(rows), ROWS_PER_MESSAGE):
        _progress.put((unit, attempt, pid, rows[i : i + ROWS_PER_MESSAGE]))


def _run_in_worker(job: UnitJob) -> UnitResult:
    stopping = _stopping
    return run_unit_sync(job, _send, stopped=None if stopping is None else stopping.is_set)


def _nothing() -> None:
    """What the probe process runs: it only has to start."""


#: The fork server already answered a probe (its pid), so workers start at once.
_ready_server: int | None = None
_WORKER_MODULE: Final = "makini_async.scale._worker"


def _context() -> Any:
    """The fork server's context where there is one (it preloads the worker), else spawn's."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The preload list is the process's: add the worker to the application's own
    # list, never replace it. Python's default, ["__main__"], is left out: some
    # versions run the main script's top level in the fork server itself, without
    # its arguments, where an error stops every worker. Read when the fork server
    # starts, once per process.
    preload = list(getattr(forkserver._forkserver, "_preload_modules", None) or [])
    if preload == ["__main__"]:
        preload = []
    if _WORKER_MODULE not in preload:
        context.set_forkserver_preload([*preload, _WORKER_MODULE])
    return context


class ProcessEngine:
    """Units on ``workers`` local processes (default: the number of cores).

    ``max_attempts`` bounds how often a unit starts over after its worker died;
    past it, the unit's chains fail with :class:`~makini_async.WorkerLost`.
    """

    def __init__(self, workers: int | None = None, *, max_attempts: int = 4) -> None:
        count = workers if workers is not None else (os.cpu_count() or 1)
        if not isinstance(count, int) or count < 1:
            raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise UsageError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self._workers = count
        self.max_attempts = max_attempts
        self._stopping = False
        self._stop_event: Any = None
        self._executor: ProcessPoolExecutor | None = None
        #: Seconds between reads of the progress queue.
        self.poll_interval = 0.1

    def __repr__(self) -> str:
        return f"ProcessEngine(workers={self._workers})"

    @property
    def workers(self) -> int:
        return self._workers

    def warm_up(self) -> None:
        """Start the fork server and wait until it forks, so workers start at once (optional).

        Blocks for about as long as one import of the library the first time,
        then returns at once. :meth:`run` does it in a thread when it was not
        done. Does nothing where workers are spawned.
        """
        global _ready_server  # noqa: PLW0603 - one fork server per process
        context = _context()
        if context.get_start_method() != "forkserver":
            return
        forkserver.ensure_running()
        server = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if server is not None and server == _ready_server:
            return
        # The fork server answers only once it has imported what it preloads.
        probe = context.Process(target=_nothing, name="makini-warm-up")
        probe.start()
        probe.join()
        _ready_server = server

    def stop(self) -> None:
        """Stop gracefully: no unit starts, and each running unit stops fetching.

        A running unit lands what it had fetched, then returns its chains'
        state as a finished unit does (its unfinished chains ``CANCELLED``,
        resumed from their checkpoints by the next run). Call it on the loop
        that runs :meth:`run`.
        """
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    def kill(self) -> None:
        """Kill every worker process now (SIGKILL), idle ones included.

        For a program that must exit at once: no worker goes on writing after
        it, and none is left waiting for work that never comes. Each unit's
        checkpoint keeps what had landed.
        """
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(OSError, ValueError):
                process.kill()

    async def run(self, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        # Not on the event loop: the first fork waits for the server's imports.
        await asyncio.to_thread(self.warm_up)
        context = _context()
        todo = collections.deque(jobs)
        tries: collections.Counter[int] = collections.Counter()
        while todo and not self._stopping:
            # A fresh queue per executor: a worker killed while holding the queue's
            # write lock would leave it locked for every later writer.
            progress = context.Queue()
            self._stop_event = context.Event()
            executor = ProcessPoolExecutor(
                self._workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(progress, dict(os.environ), self._stop_event),
            )
            where: dict[int, int] = {}  # unit -> pid of the worker running it
            lost: list[UnitJob] = []
            workers: dict[int, Any] = {}
            finished = False
            self._executor = executor
            try:
                lost = await self._generation(executor, progress, todo, events, where)
                finished = True
            finally:
                self._executor = None
                workers = dict(getattr(executor, "_processes", None) or {})
                await asyncio.to_thread(_stop, executor, terminate=not finished)
                _drain(progress, events, where)
                progress.close()
                progress.join_thread()
            if lost and not self._stopping:  # stopping: each unit resumes next run
                for job, charged in reversed(_charged(lost, _dead(workers), where)):
                    tries[job.unit] += charged
                    if tries[job.unit] < self.max_attempts:
                        todo.appendleft(job)
                    else:
                        died = tries[job.unit]
                        lost_unit = WorkerLost(
                            f"unit {job.unit}: its worker process died {died} times"
                        )
                        events.lost(job.unit, lost_unit)

    async def _generation(
        self,
        executor: ProcessPoolExecutor,
        progress: Any,
        todo: collections.deque[UnitJob],
        events: UnitEvents,
        where: dict[int, int],
    ) -> list[UnitJob]:
        """Run jobs on one executor until they are all done or it breaks: the units it lost."""
        running: dict[asyncio.Future[UnitResult], UnitJob] = {}
        lost: list[UnitJob] = []
        while (todo and not self._stopping) or running:
            # One job queued ahead of the workers, so a worker that frees up starts at once.
            while todo and not lost and not self._stopping and len(running) <= self._workers:
                job = todo.popleft()
                running[asyncio.wrap_future(executor.submit(_run_in_worker, job))] = job
            done, _ = await asyncio.wait(
                running, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            _drain(progress, events, where)
            for future in done:
                job = running.pop(future)
                error = future.exception()
                if error is None:
                    events.finished(future.result())
                elif isinstance(error, BrokenProcessPool):
                    lost.append(job)
                else:
                    events.lost(job.unit, error)
            if lost and not running:
                break
        return lost


def _charged(
    lost: list[UnitJob], dead: set[int] | None, where: dict[int, int]
) -> list[tuple[UnitJob, bool]]:
    """Each lost unit, and whether it is charged an attempt: only if its worker died.

    ``dead`` is ``None`` when no worker can be told from the others: then
    every lost unit is charged. A unit that had not said where it ran is
    charged when a dead worker ran no unit that had.
    """
    if dead is None:
        return [(job, True) for job in lost]
    blamed = {where[job.unit] for job in lost if where.get(job.unit) in dead}
    unplaced = bool(dead - blamed)
    out = []
    for job in lost:
        pid = where.get(job.unit)
        out.append((job, pid in dead if pid is not None else unplaced))
    return out


def _dead(workers: dict[int, Any]) -> set[int] | None:
    """Workers that died on their own (not by the executor's SIGTERM), or ``None`` if none did."""
    dead = {
        pid
        for pid, process in workers.items()
        if process.exitcode is not None and process.exitcode != -signal.SIGTERM
    }
    return dead or None


def _drain(progress: Any, events: UnitEvents, where: dict[int, int]) -> None:
    while True:
        try:
            message = progress.get_nowait()
        except queue_module.Empty:
            return
        where[message[0]] = message[2]
        events.progress(message)


def _stop(executor: ProcessPoolExecutor, *, terminate: bool) -> None:
    """Shut the executor down and reap its processes; kill them first when cancelled."""
    if terminate:
        # The executor has no public way to stop a running call; the pull was
        # cancelled, and each unit's checkpoint keeps what had landed.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)
