"""Sharded pulls: units of whole connections over local processes or a Ray cluster.

::

    from makini_async.scale import ProcessEngine, ShardedPull

    pull = ShardedPull(["work-orders"], tokens, sink="jsonl:out/", checkpoint="pull.sqlite",
                       engine=ProcessEngine(workers=4))
    report = await pull.run()          # pull.report is live meanwhile

A pull splits into *units* of whole connections (every chain of a connection
in one worker, so its rate limit, breaker and reauthorization mark stay in
one pool), many more units than workers, handed out as workers free up. Each
worker runs its own pool and :class:`~makini_async.bulk.Pull` over its unit
and lands records in its own sink instance; only small rows of chain state
come back, merged into one live :class:`~makini_async.bulk.PullReport`.

Engines: :class:`ProcessEngine` (local processes, no extra dependency) and
:class:`RayEngine` (the ``ray`` extra: a local Ray started on demand, or a
cluster). Progress lives in the checkpoint store, not in a worker: a unit
whose worker dies starts again elsewhere and resumes from its checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makini_async.errors import WorkerLost
from makini_async.scale._coordinator import ShardedPull, UnitStatus
from makini_async.scale._process import ProcessEngine
from makini_async.scale._units import Engine, Hidden, UnitEvents, UnitJob, UnitResult

if TYPE_CHECKING:
    from makini_async.scale._ray import RayEngine

__all__ = [
    "Engine",
    "Hidden",
    "ProcessEngine",
    "RayEngine",
    "ShardedPull",
    "UnitEvents",
    "UnitJob",
    "UnitResult",
    "UnitStatus",
    "WorkerLost",
]


def __getattr__(name: str) -> Any:
    # Ray is an optional extra, imported only when its engine is used.
    if name == "RayEngine":
        from makini_async.scale._ray import RayEngine  # noqa: PLC0415

        return RayEngine
    raise AttributeError(name)
