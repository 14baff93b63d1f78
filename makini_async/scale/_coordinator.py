"""The coordinator: units out to an engine, chain rows back into one live report."""

from __future__ import annotations

import math
import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async._client.retry import is_testing
from makini_async._wire.constants import DEFAULT_MAX_IN_FLIGHT
from makini_async.bulk import ChainReport, Outcome, PullReport
from makini_async.bulk._chain import entities_of
from makini_async.bulk._options import sharded_options
from makini_async.checkpoint import PullLease, open_checkpoint
from makini_async.connection import default_name
from makini_async.errors import MakiniError, UsageError, WorkerLost
from makini_async.scale._layout import layout_name, prepare, resolve_buckets
from makini_async.scale._units import (
    COUNTERS,
    STATE,
    Engine,
    Hidden,
    UnitJob,
    UnitResult,
    WorkerSettings,
    default_units,
    plan_buckets,
    plan_units,
)
from makini_async.scale._worker import is_dsn, unit_sink
from makini_async.sinks import open_sink

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from typing_extensions import Unpack

    from makini_async.bulk import PullKeywords, PullOptions, Sink
    from makini_async.entities import EntityLike
    from makini_async.scale._units import Row

__all__ = ["ShardedPull", "UnitStatus"]


@attrs.define(slots=True)
class UnitStatus:
    """Where one unit stands: its connections, its current attempt and the worker running it.

    Its connections are ``ShardedPull.unit_chains(unit)``'s (positions ``start``
    to ``stop`` of the connections sorted by bucket).
    """

    unit: int
    start: int
    stop: int
    attempt: str | None = None
    attempts: int = 0
    pid: int | None = None
    #: The Ray node its last attempt ran on (``None`` for a local process, or until it ends).
    node: str | None = None
    done: bool = False
    #: Whether its worker ran tuned, as the worker observed (``None`` until it finished).
    tuned: bool | None = None
    #: Counters of earlier attempts, per chain: a retried unit's rows start again from zero.
    carried: list[tuple[int, ...]] | None = None
    #: Attempts a retry replaced: their late messages are dropped.
    superseded: tuple[str, ...] = ()


_OUTCOMES = {o.value: o for o in Outcome}
# Where a chain_row's parts start: index, outcome, COUNTERS, STATE, error.
_STATE_AT: Final = 2 + len(COUNTERS)
_ERROR_AT: Final = _STATE_AT + len(STATE)


class ShardedPull:
    """A pull split into units of whole connections, run by an engine's workers.

    Each worker lands its records in its own sink instance (``sink`` is a spec:
    ``jsonl:DIR``, ``parquet:DIR`` or a ``postgresql://`` DSN); the coordinator
    only merges chain state into :attr:`report`, a :class:`PullReport` that is
    live while :meth:`run` runs. ``as_dicts=None`` leaves the choice to the
    workers' pools (``pool_options["as_dicts"]``, typed records by default),
    as ``pool.pull`` does. See the README's "Scaling out".

    A connection's *bucket* (a stable hash of its name into ``buckets``
    buckets) decides where a directory sink lands it, ``DIR/bucket-NNNNN/``,
    whatever the worker count or the other connections; ``DIR/_layout.json``
    records the count, so later pulls into ``DIR`` use it (another explicit
    count is refused). Units are runs of non-empty buckets. Workers run
    :func:`~makini_async.tuning.tuned` (they own their process) unless
    ``tune=False``; the coordinator's process is left as it is.
    """

    def __init__(
        self,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[str | tuple[str, str]],
        *,
        sink: str | Callable[[int], Sink],
        engine: Engine | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        units: int | None = None,
        buckets: int | None = None,
        pool_options: Mapping[str, Any] | None = None,
        as_dicts: bool | None = None,
        options: PullOptions | None = None,
        progress_interval: float = 0.5,
        tune: bool = True,
        clock: Callable[[], float] = time.monotonic,
        **keywords: Unpack[PullKeywords],
    ) -> None:
        if engine is None:
            from makini_async.scale._process import ProcessEngine  # noqa: PLC0415

            engine = ProcessEngine()
        self.engine = engine
        ents = entities_of(entities)
        opts = sharded_options(options, keywords)
        #: The options every unit's pull runs with.
        self.options = opts
        conns = tuple(
            (default_name(c), c) if isinstance(c, str) else (str(c[0]), str(c[1]))
            for c in connections
        )
        if not conns:
            raise UsageError("a sharded pull needs at least one connection")
        names = [name for name, _ in conns]
        if len(set(names)) != len(names):
            raise UsageError("connection names must be unique: checkpoints are keyed by name")
        if not isinstance(sink, str) and not callable(sink):
            msg = (
                "sink must be a spec (jsonl:DIR, parquet:DIR, postgresql://...) or a "
                f"picklable factory of a unit's sink, not {type(sink).__name__}"
            )
            raise UsageError(msg)
        if isinstance(sink, str) and sink.startswith("duckdb:"):
            msg = (
                "a DuckDB file takes one writing process: pull into it without workers, "
                "or shard into postgresql://... or parquet:DIR"
            )
            raise UsageError(msg)
        self._sink = sink
        # Checks the spec; opens nothing. A directory sink's probe is at the root.
        probe = open_sink(sink) if isinstance(sink, str) else unit_sink(sink, 0, append=True)
        self._checkpoint = _checkpoint_spec(
            checkpoint, own_store=probe.checkpoint_store is not None
        )
        directory = isinstance(sink, str) and not is_dsn(sink)
        self.location = probe.location
        self._root = Path(self.location) if directory else None
        #: How many buckets connections hash into (recorded by a directory sink).
        self.buckets = resolve_buckets(self._root, buckets)
        #: The placement of connections as one string (for a checkpoint's identity).
        self.layout = layout_name(self.buckets)
        settings = WorkerSettings(
            entities=tuple(e.value for e in ents),
            sink=Hidden(sink),
            checkpoint=None if self._checkpoint is None else Hidden(self._checkpoint),
            pool_options=dict(pool_options or {}),
            # None: the workers' pools decide (``pool_options["as_dicts"]``), as pool.pull does.
            as_dicts=as_dicts,
            options=opts,
            testing=is_testing(),
            progress_interval=progress_interval,
            tune=bool(tune),
            layout=None if isinstance(sink, str) and is_dsn(sink) else self.layout,
        )
        try:
            pickle.dumps(settings)
        except Exception as exc:  # noqa: BLE001 - any reason: the options cannot reach a worker
            msg = (
                "pool_options and a sink factory must pickle to reach the workers: "
                f"{type(exc).__name__}: {exc}"
            )
            raise UsageError(msg) from None
        # Enough chains per unit to fill one pool's requests in flight (its concurrency).
        in_flight = opts.concurrency or _max_in_flight((pool_options or {}).get("limits"))
        min_size = math.ceil(in_flight / len(ents))
        count = (
            units
            if units is not None
            else default_units(len(conns), engine.workers, min_size=min_size)
        )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"units must be an integer >= 1, got {count!r}")
        order, groups = plan_buckets(names, self.buckets)
        self._order = order
        self._jobs = []
        self.units = []
        for i, (first, stop) in enumerate(plan_units(groups, count)):
            start, end = groups[first][1], groups[stop - 1][2]
            members = tuple(conns[order[j]] for j in range(start, end))
            sizes = tuple(
                (bucket, b_end - b_start) for bucket, b_start, b_end in groups[first:stop]
            )
            self._jobs.append(UnitJob(i, Hidden(members), settings, sizes))
            self.units.append(UnitStatus(i, start, end))
        self._per_connection = len(ents)
        self._clock = clock
        # One ChainReport per chain, in the order a worker's Pull builds them.
        self.report = PullReport(
            [ChainReport(connection=name, entity=e, clock=clock) for name in names for e in ents],
            clock=clock,
        )
        self._ran = False

    async def run(self) -> PullReport:
        """Run every unit to its end; return the merged report."""
        if self._ran:
            raise UsageError("a ShardedPull runs once; start a new one")
        self._ran = True
        self.report.started_at = self._clock()
        lock = None
        lease = None
        jobs = self._jobs
        if self._checkpoint is not None and not is_dsn(self._checkpoint):
            # The coordinator holds the run lock; workers open the file unlocked.
            lock = open_checkpoint(self._checkpoint)
        elif (dsn := self._lease_dsn()) is not None:
            # One driver at a time, and units fenced by its epoch (see PullLease).
            lease = PullLease(dsn, f"pull {self.location}")
            fence = await lease.acquire()
            settings = attrs.evolve(jobs[0].settings, fence=fence)
            jobs = [attrs.evolve(job, settings=settings) for job in jobs]
        try:
            self._prepare_folder()  # only once the run is this driver's
            await self.engine.run(jobs, _Events(self))
        finally:
            if lock is not None:
                lock.close()
            if lease is not None:
                await lease.release()
            now = self._clock()
            for chain in self.report.chains:
                if not chain.done:
                    chain.outcome = Outcome.CANCELLED
                    chain.finished_at = now if chain.started_at is not None else None
            self.report.finished_at = now
        return self.report

    def _lease_dsn(self) -> str | None:
        """The database that holds this pull's checkpoints, if it is PostgreSQL."""
        if self._checkpoint is not None and is_dsn(self._checkpoint):
            return self._checkpoint
        if isinstance(self._sink, str) and is_dsn(self._sink):
            return self._sink
        return None

    def stop(self) -> bool:
        """Stop gracefully, where the engine can: no unit starts, running ones land and report.

        :meth:`run` then returns the report, unfinished chains ``CANCELLED``
        (resumed from their checkpoints by the next run). ``False`` when the
        engine has no graceful stop: cancel :meth:`run` instead.
        """
        stop = getattr(self.engine, "stop", None)
        if stop is None:
            return False
        stop()
        return True

    @property
    def tuned(self) -> bool | None:
        """Whether every unit's worker ran tuned (``None`` before any unit finished)."""
        seen = {u.tuned for u in self.units if u.tuned is not None}
        return None if not seen else all(seen)

    def unit_chains(self, unit: int) -> list[ChainReport]:
        """The chains of one unit, in the order its worker reports them."""
        return self._chains(self.units[unit])

    def _prepare_folder(self) -> None:
        """A directory sink's folder: no links, the layout recorded, stale buckets swept.

        Without a checkpoint, JSON Lines buckets start afresh, and the files of
        buckets with none of this run's connections are dropped: a reader of
        ``DIR/bucket-*/`` would still count the records of connections no
        longer pulled.
        """
        if self._root is None:
            return
        keep = None
        if self._checkpoint is None and str(self._sink).startswith("jsonl:"):
            keep = frozenset(bucket for job in self._jobs for bucket, _ in job.buckets)
        prepare(self._root, self.buckets, keep=keep)

    # -- merging rows ---------------------------------------------------------------

    def _chains(self, status: UnitStatus) -> list[ChainReport]:
        k, chains, order = self._per_connection, self.report.chains, self._order
        positions = range(status.start, status.stop)
        return [chains[order[j] * k + e] for j in positions for e in range(k)]

    def _attempt(self, status: UnitStatus, attempt: str, pid: int) -> bool:
        """Note a unit's attempt; ``False`` for a message of an attempt already superseded."""
        if status.done or attempt in status.superseded:
            return False
        if status.attempt != attempt:
            if status.attempt is not None:
                status.superseded += (status.attempt,)
                # A retry: what earlier attempts delivered stays counted.
                status.carried = [
                    tuple(getattr(c, name) for name in COUNTERS) for c in self._chains(status)
                ]
            status.attempt = attempt
            status.attempts += 1
        status.pid = pid
        return True

    def _apply(self, status: UnitStatus, rows: list[Row]) -> None:
        chains, order, k = self.report.chains, self._order, self._per_connection
        carried = status.carried
        now = self._clock()
        for row in rows:
            index, outcome = row[0], _OUTCOMES[row[1]]
            position, entity = divmod(index, k)
            chain = chains[order[status.start + position] * k + entity]
            counts = row[2:_STATE_AT]
            if carried is not None:
                counts = tuple(a + b for a, b in zip(carried[index], counts, strict=True))
            for name, value in zip(COUNTERS, counts, strict=True):
                setattr(chain, name, value)
            for name, value in zip(STATE, row[_STATE_AT:_ERROR_AT], strict=True):
                setattr(chain, name, value)
            if outcome is not Outcome.PENDING and chain.started_at is None:
                chain.started_at = now
            if outcome in (Outcome.PENDING, Outcome.RUNNING):
                chain.outcome = outcome
                continue
            chain.outcome = outcome
            chain.error = row[_ERROR_AT]
            if chain.finished_at is None:
                chain.finished_at = now

    def _lose(self, status: UnitStatus, error: BaseException) -> None:
        status.done = True
        now = self._clock()
        lost = (
            error
            if isinstance(error, MakiniError)
            else WorkerLost(f"unit {status.unit} failed: {type(error).__name__}: {error}")
        )
        for chain in self._chains(status):
            if not chain.done or chain.outcome is Outcome.CANCELLED:
                chain.outcome = Outcome.FAILED
                chain.error = lost
                chain.finished_at = now


class _Events:
    """The coordinator's side of :class:`UnitEvents`."""

    def __init__(self, pull: ShardedPull) -> None:
        self._pull = pull

    def progress(self, message: tuple[int, str, int, list[Row]]) -> None:
        unit, attempt, pid, rows = message
        status = self._pull.units[unit]
        if self._pull._attempt(status, attempt, pid):
            self._pull._apply(status, rows)

    def finished(self, result: UnitResult) -> None:
        status = self._pull.units[result.unit]
        if self._pull._attempt(status, result.attempt, result.pid):
            self._pull._apply(status, result.rows)
            status.done = True
            status.tuned = result.tuned
            status.node = result.node

    def lost(self, unit: int, error: BaseException) -> None:
        self._pull._lose(self._pull.units[unit], error)


def _max_in_flight(limits: Any) -> int:
    return int(getattr(limits, "max_in_flight", DEFAULT_MAX_IN_FLIGHT))


def _checkpoint_spec(value: str | os.PathLike[str] | None, *, own_store: bool) -> str | None:
    if value is None:
        return None
    if own_store:
        raise UsageError(
            "Parquet and PostgreSQL sinks keep their own checkpoint (committed with each "
            "page); leave checkpoint= out"
        )
    spec = os.fspath(value)
    if is_dsn(spec):
        return spec
    if spec.lower().endswith(".json"):
        raise UsageError(
            "a JSON checkpoint cannot be shared by worker processes (each would rewrite the "
            "whole file); use an SQLite path on one machine or a postgresql:// DSN"
        )
    return spec
