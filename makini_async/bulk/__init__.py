"""Bulk pulls: entities from many connections, with checkpoints and resume.

::

    async with MakiniPool() as pool:
        async with pool.pull(["work-orders", "assets"], tokens, checkpoint="pull.sqlite") as pull:
            async for item in pull:            # PulledRecord(connection, entity, record)
                handle(item)
        print(pull.report.summary())

Every (connection, entity) pair is a *chain*: its pages are walked in order,
one at a time; up to ``concurrency`` chains run at once. Pages pass to the
consumer through a bounded queue, so a slow consumer slows the fetching and
memory stays flat whatever the number of connections; each chain may fetch
its next page while the consumer works on the previous one.

Delivery is **at least once** across restarts and exactly once within a run:

* the checkpoint records, per chain, the cursor after the last page the
  consumer has *finished with* (asked for the next item after), so a process
  killed at any instant re-delivers at most the pages it had in hand;
* within one run, records are de-duplicated by id per chain (``dedupe``);
* with ``sink=`` (:mod:`makini_async.sinks`) each page is written to the sink
  before its chain's checkpoint moves, and a sink that commits the cursor with
  the page (Parquet, PostgreSQL) makes delivery exactly once.

A record that does not fit its model never ends its chain: by default it is
delivered as an :class:`~makini_async.models.InvalidRecord` (the data as
sent, the field path, the reason, the request ID) and counted in the report
(``on_invalid`` chooses ``"skip"`` or ``"raise"`` instead).

A failing, stalled or reauthorization-needing connection only ends its own
chains: the report says what happened, the other chains carry on
(``raise_on_error=True`` raises the first failure instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makini_async.bulk._chain import ConnectionSource, ConnectionSpec
from makini_async.bulk._options import DEFAULT_OVERLAP, DEFAULT_PATIENCE, PullKeywords, PullOptions
from makini_async.bulk._pull import Pull
from makini_async.bulk._report import ChainReport, Outcome, PulledPage, PulledRecord, PullReport
from makini_async.bulk._sink import Sink

if TYPE_CHECKING:
    from collections.abc import Iterable

    from makini_async.entities import EntityLike

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PATIENCE",
    "ChainReport",
    "ConnectionSource",
    "ConnectionSpec",
    "Outcome",
    "Pull",
    "PullKeywords",
    "PullOptions",
    "PullReport",
    "PulledPage",
    "PulledRecord",
    "Sink",
    "pull",
]


def pull(
    pool: ConnectionSource,
    entities: EntityLike | Iterable[EntityLike],
    connections: Iterable[ConnectionSpec],
    **options: Any,
) -> Pull[Any]:
    """Start describing a bulk pull; see :class:`Pull` for the options."""
    return Pull(pool, entities, connections, **options)
