"""Buckets and units of a sharded pull, what crosses process boundaries, the progress rows.

A connection's *bucket* is a stable hash of its name into a fixed number of
buckets: it never depends on the worker count or on the other connections,
so a directory sink's ``bucket-NNNNN/`` folder of a connection is the same in
every run. *Units* are runs of consecutive non-empty buckets, the work one
worker takes at a time; how buckets group into units may change from run to
run, where each connection's files are does not.

Everything here is plain data that pickles: a unit's job goes to a worker
process (or a Ray task), and rows of chain state come back. Tokens and DSNs
travel inside :class:`Hidden`, whose ``repr`` shows nothing of them, so a
job printed by a traceback, a Ray log or a debugger never shows a secret.
"""

from __future__ import annotations

import array
import hashlib
import math
import operator
import pickle
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import attrs

from makini_async.bulk import ChainReport, Outcome, PullOptions
from makini_async.errors import MakiniError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.checkpoint import Fence

__all__ = [
    "COUNTERS",
    "DEFAULT_BUCKETS",
    "MAX_BUCKETS",
    "STATE",
    "Engine",
    "Hidden",
    "Row",
    "UnitEvents",
    "UnitJob",
    "UnitResult",
    "WorkerSettings",
    "bucket_of",
    "chain_row",
    "default_units",
    "plan_buckets",
    "plan_units",
    "portable_error",
]

T = TypeVar("T")

#: Units per worker by default: enough that one slow unit leaves the others busy.
UNITS_PER_WORKER: Final = 8
#: At most this many connections per unit by default (bounds the work lost with a worker).
MAX_UNIT_CONNECTIONS: Final = 1000

#: Buckets connections hash into by default: folders of a directory sink, at most.
DEFAULT_BUCKETS: Final = 256
#: At most this many buckets (``bucket-NNNNN`` has five digits).
MAX_BUCKETS: Final = 65_536
_PERSON: Final = b"makini-bucket"

#: The counters a row carries, in order, after ``(index, outcome)``.
COUNTERS: Final = (
    "records",
    "pages",
    "invalid",
    "duplicates",
    "retries",
    "rate_limited",
    "deferrals",
    "restarts",
)
#: A chain's state that a worker reports as it is (a retried unit's replaces the last).
STATE: Final = (
    "total",
    "page_size",
    "resumed",
    "modified_after",
    "start",
    "modified_after_source",
    "resumed_from",
)
_counters: Final = operator.attrgetter(*COUNTERS)
_state: Final = operator.attrgetter(*STATE)

#: ``(index in the unit, outcome, *COUNTERS, *STATE, error)``: one chain's state,
#: small and picklable (a ChainReport holds a clock and, in a worker, its connection).
Row = tuple[Any, ...]


class Hidden(Generic[T]):
    """A value (tokens, a DSN with a password) whose ``repr`` and ``str`` show nothing.

    It pickles (the value goes to a worker process); only code that asks for
    ``.value`` sees it.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Hidden(***)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Hidden, (self.value,))


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """What every unit of one pull shares: the pool, the pull, the sink, the checkpoint."""

    entities: tuple[str, ...]
    #: ``jsonl:DIR``, ``parquet:DIR``, a ``postgresql://`` DSN (hidden: a DSN has a
    #: password), or a picklable factory of a unit's sink.
    sink: Hidden[Any]
    #: An SQLite path or a ``postgresql://`` DSN, or ``None``.
    checkpoint: Hidden[str] | None = None
    pool_options: dict[str, Any] = attrs.field(factory=dict)
    #: The records' shape (``None``: the pool's) and how every unit's pull reads.
    as_dicts: bool | None = None
    options: PullOptions = attrs.field(factory=PullOptions)
    #: The coordinator's testing mode (zero waits), carried to each worker.
    testing: bool = False
    progress_interval: float = 0.5
    #: Workers own their process: they run :func:`~makini_async.tuning.tuned` unless ``False``.
    tune: bool = True
    #: How connections map to buckets, recorded in each bucket's checkpoint state
    #: (``None`` for PostgreSQL, one destination whatever the layout).
    layout: str | None = None
    #: The driver's lease on a PostgreSQL checkpoint: every commit of a unit checks it.
    fence: Fence | None = None


@attrs.frozen
class UnitJob:
    """One unit: whole connections (every chain of each), for one worker at a time.

    ``connections`` are in bucket order; ``buckets`` says which bucket the
    next ``count`` of them belong to: ``((bucket, count), ...)``.
    """

    unit: int
    connections: Hidden[tuple[tuple[str, str], ...]] = attrs.field(repr=False)
    settings: WorkerSettings = attrs.field(repr=False)
    buckets: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class UnitResult:
    """What a worker returns for a unit: which attempt, where it ran, every chain's final row."""

    unit: int
    attempt: str
    pid: int
    rows: list[Row]
    #: Whether the worker ran tuned (as observed in it: the collector's threshold raised).
    tuned: bool = False
    #: The Ray node it ran on (``None`` for a local process).
    node: str | None = None


def bucket_of(name: str, buckets: int) -> int:
    """The bucket of the connection named ``name``: the same in every process and run.

    A keyless BLAKE2b of the name (never Python's ``hash``, which changes from
    process to process), reduced modulo ``buckets``.
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") % buckets


def plan_buckets(
    names: Sequence[str], buckets: int
) -> tuple[array.array[int], list[tuple[int, int, int]]]:
    """Connections sorted by bucket: ``(order, groups)``.

    ``order`` holds indexes into ``names``, bucket by bucket (in the given order
    within a bucket); ``groups`` has one ``(bucket, start, stop)`` per non-empty
    bucket, a slice of ``order``. Compact: four bytes a connection.
    """
    of = array.array("I", (bucket_of(name, buckets) for name in names))
    counts = array.array("I", bytes(4 * buckets))
    for bucket in of:
        counts[bucket] += 1
    starts = array.array("I", bytes(4 * buckets))
    groups = []
    at = 0
    for bucket, count in enumerate(counts):
        starts[bucket] = at
        if count:
            groups.append((bucket, at, at + count))
        at += count
    order = array.array("I", bytes(4 * len(names)))
    for index, bucket in enumerate(of):
        order[starts[bucket]] = index
        starts[bucket] += 1
    return order, groups


def default_units(connections: int, workers: int, *, min_size: int = 1) -> int:
    """Many more units than workers, none above :data:`MAX_UNIT_CONNECTIONS` connections.

    A worker runs one unit at a time, so a unit also needs enough chains to
    keep its pool's requests in flight: ``min_size`` connections at least,
    unless that would leave a worker without a unit.
    """
    wanted = max(workers * UNITS_PER_WORKER, math.ceil(connections / MAX_UNIT_CONNECTIONS))
    wanted = min(wanted, max(workers, connections // max(1, min_size)))
    return max(1, min(connections, wanted))


def plan_units(groups: Sequence[tuple[int, int, int]], units: int) -> list[tuple[int, int]]:
    """Units as runs of consecutive ``groups`` (non-empty buckets): ``(first, stop)`` indexes.

    ``units`` runs at most (never more than there are buckets), each as close
    as whole buckets allow to an equal share of the connections.
    """
    if not groups:
        return []
    units = max(1, min(units, len(groups)))
    total = groups[-1][2] - groups[0][1]
    out = []
    first = 0
    for i in range(1, units + 1):
        # Cut after the bucket that reaches i shares, leaving a bucket for each unit after.
        target = groups[0][1] + total * i / units
        stop = first + 1
        while stop < len(groups) - (units - i) and groups[stop - 1][2] < target:
            stop += 1
        if i == units:
            stop = len(groups)
        out.append((first, stop))
        first = stop
    return out


def portable_error(error: BaseException | None) -> MakiniError | None:
    """``error`` as something that pickles and is typed: a MakiniError.

    Errors of the library pickle by design (``MakiniError.__reduce__``); any
    other exception becomes a MakiniError naming its type and message, since
    its class may not exist, or not unpickle, in the coordinator.
    """
    if error is None:
        return None
    if isinstance(error, MakiniError):
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an attribute that does not pickle
            return MakiniError(error.message, connection=error.connection)
        else:
            return error
    return MakiniError(f"{type(error).__name__}: {error}")


def chain_row(index: int, chain: ChainReport) -> Row:
    """One chain's state as a row; errors come along only once the chain is done."""
    error = portable_error(chain.error) if chain.outcome in _ERRORS else None
    return (index, chain.outcome.value, *_counters(chain), *_state(chain), error)


_ERRORS: Final = frozenset(
    {Outcome.FAILED, Outcome.REAUTHORIZATION_REQUIRED, Outcome.SKIPPED, Outcome.CANCELLED}
)


# -- the engine's side and the coordinator's: Protocols, so engines import no coordinator --


class UnitEvents(Protocol):
    """What an engine tells the coordinator about units."""

    def progress(self, message: tuple[int, str, int, list[Row]]) -> None:
        """Rows of chains that changed in a running unit: ``(unit, attempt, pid, rows)``."""

    def finished(self, result: UnitResult) -> None:
        """A unit ran to its end (its chains may still have failed, each on its own)."""

    def lost(self, unit: int, error: BaseException) -> None:
        """A unit's worker died more often than it may retry: its unfinished chains fail."""


class Engine(Protocol):
    """Runs units on workers: local processes (``ProcessEngine``) or Ray (``RayEngine``)."""

    @property
    def workers(self) -> int:
        """How many units run at once."""
        ...

    async def run(self, jobs: Sequence[UnitJob], events: UnitEvents) -> None:
        """Run every job, handing them out as workers free up; report through ``events``."""
        ...
