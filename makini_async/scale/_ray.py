"""Ray: units as Ray tasks, retried by Ray when their worker dies (the ``ray`` extra).

Ray's fault tolerance re-runs a task whose worker process or node died
(``max_retries``); it keeps no state of the task's own, so the unit resumes
from the shared checkpoint store (an SQLite file on one machine, PostgreSQL
across machines), never from the dead worker's memory. Progress comes back
through a small actor (``_Inbox``) that workers post rows to without
waiting; the coordinator collects them between waits.

Tokens travel inside :class:`~makini_async.scale.Hidden`, whose repr hides
them; task names carry only the unit's number.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING, Any, Final

from makini_async.errors import UsageError, WorkerLost
from makini_async.scale._worker import run_unit_sync

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.scale._units import Row, UnitEvents, UnitJob, UnitResult

__all__ = ["RayEngine"]

#: Ray's own default for tasks: retried three times after a worker or node dies.
DEFAULT_MAX_RETRIES: Final = 3


def _ray() -> Any:
    try:
        import ray  # noqa: PLC0415 - the optional extra, imported only when used
    except ImportError:
        msg = "the Ray engine needs the ray extra: pip install 'makini-async[ray]'"
        raise UsageError(msg) from None
    return ray


class _Inbox:
    """Progress rows posted by workers, taken in batches by the coordinator."""

    def __init__(self) -> None:
        self._items: list[Any] = []

    def put(self, item: Any) -> None:
        self._items.append(item)

    def take(self) -> list[Any]:
        items, self._items = self._items, []
        return items


def _run_task(job: UnitJob, inbox: Any) -> UnitResult:
    def send(message: tuple[int, str, int, list[Row]]) -> None:
        inbox.put.remote(message)  # fire and forget: one caller's calls arrive in order

    return run_unit_sync(job, send)


@functools.cache
def _remote() -> tuple[Any, Any]:
    ray = _ray()
    return ray.remote(_run_task), ray.remote(num_cpus=0)(_Inbox)


class RayEngine:
    """Units as Ray tasks on a local Ray (started on demand) or a cluster (``address``).

    ``workers`` is how many units run at once (default: the cluster's CPUs once
    connected; units are planned before that, from this machine's cores, unless
    ``workers`` is given).
    A Ray started here (no ``address``, none running) stops when the pull
    ends; one already initialised is used as it is. ``init_options`` go to
    ``ray.init`` (``_temp_dir=`` to keep its logs elsewhere, for example).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
        self.address = address
        self._workers = workers
        self.max_retries = max_retries
        self.init_options = dict(init_options or {})
        #: Seconds between collections of progress rows.
        self.poll_interval = 0.2

    def __repr__(self) -> str:
        return f"RayEngine(address={self.address!r}, workers={self._workers})"

    @property
    def workers(self) -> int:
        if self._workers is not None:
            return self._workers
        ray = _ray()
        if ray.is_initialized():
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return os.cpu_count() or 1

    def _start(self) -> bool:
        """Connect to Ray (starting a local one if needed); whether this call started it."""
        ray = _ray()
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False, **self.init_options}
        if self.address is not None:
            options["address"] = self.address
        elif self._workers is not None:
            options.setdefault("num_cpus", self._workers)
        ray.init(**options)
        return True

    async def run(self, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        ray = _ray()
        # In the main thread: ray.init installs signal handlers there (once, ~2 s locally).
        started = self._start()
        try:
            await self._run(ray, jobs, events)
        finally:
            if started:
                await asyncio.to_thread(ray.shutdown)

    async def _run(self, ray: Any, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        task, inbox_class = _remote()
        inbox = inbox_class.remote()
        slots = self.workers + 1  # one queued ahead, so a freed worker starts at once
        todo = list(reversed(jobs))
        running: dict[Any, UnitJob] = {}
        try:
            while todo or running:
                while todo and len(running) < slots:
                    job = todo.pop()
                    ref = task.options(
                        name=f"makini-unit-{job.unit}", max_retries=self.max_retries
                    ).remote(job, inbox)
                    running[ref] = job
                done, _ = await asyncio.to_thread(
                    ray.wait, list(running), num_returns=1, timeout=self.poll_interval
                )
                for message in await asyncio.to_thread(ray.get, inbox.take.remote()):
                    events.progress(message)
                for ref in done:
                    job = running.pop(ref)
                    try:
                        result = await asyncio.to_thread(ray.get, ref)
                    except ray.exceptions.RayTaskError as exc:
                        # The unit itself raised: its error, unwrapped, is the cause.
                        events.lost(job.unit, exc.cause if exc.cause is not None else exc)
                    except ray.exceptions.RayError as exc:
                        lost = WorkerLost(
                            f"unit {job.unit}: its Ray worker died "
                            f"{self.max_retries + 1} times ({type(exc).__name__})"
                        )
                        events.lost(job.unit, lost)
                    else:
                        events.finished(result)
            for message in await asyncio.to_thread(ray.get, inbox.take.remote()):
                events.progress(message)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            ray.kill(inbox)
