"""Ray: units as Ray tasks, retried by Ray when their worker dies (the ``ray`` extra).

Ray's fault tolerance re-runs a task whose worker process or node died
(``max_retries``); it keeps no state of the task's own, so the unit resumes
from the shared checkpoint store (an SQLite file on one machine, PostgreSQL
across machines), never from the dead worker's memory. Progress comes back
through a small actor (``_Inbox``) that workers post rows to without
waiting; the coordinator collects them between waits.

The inbox lives on the driver's node (the head, through Ray Client), so
losing any other node loses no progress. A unit whose node died is re-run
by Ray on another; a unit no live node can run (every node offering its
resources gone) waits ``node_wait`` seconds, then fails with
:class:`~makini_async.errors.WorkerLost` naming what it needs, so a pull
never hangs on a cluster that shrank.

Tokens travel inside :class:`~makini_async.scale.Hidden` in the task's
arguments, which Ray keeps in its object store and never logs or lists;
task names carry only the unit's number.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async.errors import MakiniError, UsageError, WorkerLost
from makini_async.scale._worker import run_unit_sync

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.scale._units import Row, UnitEvents, UnitJob, UnitResult

__all__ = ["RayEngine"]

#: Ray's own default for tasks: retried three times after a worker or node dies.
DEFAULT_MAX_RETRIES: Final = 3
#: Seconds a unit may wait for a live node that can run it before it fails.
DEFAULT_NODE_WAIT: Final = 300.0
#: Tries at connecting to a cluster before the pull fails.
CONNECT_ATTEMPTS: Final = 3
#: Seconds between looks at which nodes are alive (only while units wait or run).
NODE_CHECK_INTERVAL: Final = 1.0


def _ray() -> Any:
    try:
        import ray  # noqa: PLC0415 - the optional extra, imported only when used
    except ImportError:
        msg = "the Ray engine needs the ray extra: pip install 'makini-async[ray]'"
        raise UsageError(msg) from None
    return ray


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What Ray Client raises when its server is gone.

    Most calls raise ``ConnectionError``; a few (the cluster's node list, a
    wait that cannot reconnect) let gRPC's own error through.
    """
    try:
        import grpc  # noqa: PLC0415 - ships with ray[client]
    except ImportError:
        return (ConnectionError,)
    return (ConnectionError, grpc.RpcError)


def _why_lost(exc: BaseException) -> str:
    """One line on a lost connection: gRPC's status and details, not its repr."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{getattr(code(), 'name', code())}: {details()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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

    result = run_unit_sync(job, send)
    return attrs.evolve(result, node=_ray().get_runtime_context().get_node_id())


@functools.cache
def _remote() -> tuple[Any, Any]:
    ray = _ray()
    return ray.remote(_run_task), ray.remote(num_cpus=0)(_Inbox)


def _needs(options: dict[str, Any]) -> dict[str, float]:
    """The resources one unit's task asks for (Ray's default: one CPU)."""
    needs = {"CPU": float(options.get("num_cpus", 1))}
    if options.get("num_gpus"):
        needs["GPU"] = float(options["num_gpus"])
    needs.update({k: float(v) for k, v in (options.get("resources") or {}).items()})
    return {k: v for k, v in needs.items() if v > 0}


def _runnable(nodes: list[dict[str, Any]], needs: dict[str, float]) -> bool:
    """Whether some live node offers everything a unit needs."""
    return any(
        node.get("Alive")
        and all(node.get("Resources", {}).get(k, 0) >= v for k, v in needs.items())
        for node in nodes
    )


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
        task_options: dict[str, Any] | None = None,
        node_wait: float = DEFAULT_NODE_WAIT,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
        if not node_wait > 0:
            raise UsageError(f"node_wait must be a number of seconds > 0, got {node_wait!r}")
        task_options = dict(task_options or {})
        reserved = {"name", "max_retries"} & set(task_options)
        if reserved:
            msg = f"task_options cannot set {', '.join(sorted(reserved))}: the engine sets it"
            raise UsageError(msg)
        self.address = address
        self._workers = workers
        self.max_retries = max_retries
        self.init_options = dict(init_options or {})
        #: Options of every unit's task (``num_cpus``, ``resources``, ``scheduling_strategy``).
        self.task_options = task_options
        self.node_wait = node_wait
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
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                ray.init(**options)
                break
            except ConnectionError as exc:
                # Ray Client's server may fail a session as it starts it (a race in its
                # proxy); a new session is the cure. Blocking: nothing runs before this.
                if attempt == CONNECT_ATTEMPTS:
                    where = self.address or "a local Ray"
                    msg = f"cannot connect to Ray at {where}: {type(exc).__name__}: {exc}"
                    raise MakiniError(msg.splitlines()[0]) from None
                time.sleep(float(attempt))
        return True

    async def run(self, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        ray = _ray()
        # In the main thread: ray.init installs signal handlers there (once, ~2 s locally).
        started = self._start()
        try:
            await self._run(ray, jobs, events)
        finally:
            if started:
                with contextlib.suppress(*_lost_errors()):  # a cluster already gone
                    await asyncio.to_thread(ray.shutdown)

    async def _run(self, ray: Any, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        task, inbox_class = _remote()
        inbox = self._inbox(ray, inbox_class)
        slots = self.workers + 1  # one queued ahead, so a freed worker starts at once
        todo = list(reversed(jobs))
        running: dict[Any, UnitJob] = {}
        watch = _NodeWatch(ray, _needs(self.task_options), self.node_wait)
        try:
            while todo or running:
                while todo and len(running) < slots:
                    job = todo.pop()
                    ref = task.options(
                        name=f"makini-unit-{job.unit}",
                        max_retries=self.max_retries,
                        **self.task_options,
                    ).remote(job, inbox)
                    running[ref] = job
                done, _ = await asyncio.to_thread(
                    ray.wait, list(running), num_returns=1, timeout=self.poll_interval
                )
                for message in await self._take(ray, inbox):
                    events.progress(message)
                for ref in done:
                    await self._settle(ray, running.pop(ref), ref, events)
                stranded = await watch.stranded()
                if stranded is not None:
                    _lose_all(running, todo, events, stranded)
                    break
            for message in await self._take(ray, inbox):
                events.progress(message)
        except _lost_errors() as exc:
            # Ray Client lost its server (the head died, or the network): no unit can be
            # told about any more. Their chains fail; a rerun resumes them from the store.
            _lose_all(running, todo, events, f"lost the Ray cluster ({_why_lost(exc)})")
            running.clear()  # nothing to cancel on a cluster that is gone
        finally:
            # Not after the connection is gone: Ray would start a local Ray to run them.
            if ray.is_initialized():
                with contextlib.suppress(*_lost_errors(), ray.exceptions.RayError):
                    for ref in running:
                        ray.cancel(ref, force=True)
                    ray.kill(inbox)

    @staticmethod
    def _inbox(ray: Any, inbox_class: Any) -> Any:
        """The progress inbox, on the driver's node: a lost worker node takes none of it."""
        from ray.util.scheduling_strategies import (  # noqa: PLC0415 - the optional extra
            NodeAffinitySchedulingStrategy,
        )

        here = ray.get_runtime_context().get_node_id()
        where = NodeAffinitySchedulingStrategy(here, soft=True)
        return inbox_class.options(scheduling_strategy=where).remote()

    @staticmethod
    async def _take(ray: Any, inbox: Any) -> list[Any]:
        """Progress rows posted so far; none if the inbox cannot answer (its rows are late, not
        lost: each unit's result carries every chain's final row)."""
        try:
            return list(await asyncio.to_thread(ray.get, inbox.take.remote(), timeout=30))
        except ray.exceptions.RayError:
            return []

    async def _settle(self, ray: Any, job: UnitJob, ref: Any, events: UnitEvents) -> None:
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


def _lose_all(
    running: dict[Any, UnitJob], todo: list[UnitJob], events: UnitEvents, why: str
) -> None:
    """Every unit not finished ends as lost, for ``why``; none is left to start."""
    for job in [*running.values(), *reversed(todo)]:
        events.lost(job.unit, WorkerLost(f"unit {job.unit}: {why}"))
    todo.clear()


class _NodeWatch:
    """Notices a cluster where no live node can run a unit, for longer than ``wait``."""

    def __init__(self, ray: Any, needs: dict[str, float], wait: float) -> None:
        self._ray = ray
        self._needs = needs
        self._wait = wait
        self._checked = -NODE_CHECK_INTERVAL
        self._since: float | None = None

    async def stranded(self) -> str | None:
        """Why the waiting units cannot run, once that has lasted ``wait`` seconds."""
        now = time.monotonic()
        if now - self._checked < NODE_CHECK_INTERVAL:
            return None
        self._checked = now
        try:
            nodes = await asyncio.to_thread(self._ray.nodes)
        except (self._ray.exceptions.RayError, *_lost_errors()):
            # The cluster's state is unknown: keep waiting. A server that is gone for
            # good fails the next wait, which ends the pull as lost.
            return None
        if _runnable(nodes, self._needs):
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since < self._wait:
            return None
        needs = ", ".join(f"{k} {v:g}" for k, v in self._needs.items())
        alive = sum(bool(n.get("Alive")) for n in nodes)
        return (
            f"no live Ray node could run it for {self._wait:g}s (it needs {needs}; "
            f"{alive} node(s) alive, none offering that)"
        )
