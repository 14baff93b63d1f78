"""One sink held open for the life of a sync, lent to each of its pulls.

A sync runs many short pulls, several at once. Opening a PostgreSQL sink for
each would cost a connection pool a pull; instead the service opens one and
gives every pull a :class:`LentSink`: it writes and flushes through the held
sink, and its ``close`` flushes without closing it. A group-committing sink
reports a page that failed after ``write`` returned to every pull that is
running; each pull ends only its own chain of that page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async.bulk import PulledPage, Sink
    from makini_async.checkpoint import AsyncCheckpointStore, ChainState, CheckpointStore
    from makini_async.entities import Entity
    from makini_async.errors import SinkError

    Failed = Callable[[str, Entity, SinkError], None]

__all__ = ["HeldSink", "LentSink"]


class HeldSink:
    """A sink opened once; :meth:`lend` gives a pull its view of it."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._views: set[LentSink] = set()

    async def open(self, entities: Sequence[Entity]) -> None:
        await self.sink.open(list(entities))
        report = getattr(self.sink, "report_failures", None)
        if report is not None:
            report(self._failed)

    async def close(self) -> None:
        await self.sink.close()

    def lend(self) -> LentSink:
        return LentSink(self)

    def _failed(self, connection: str, entity: Entity, error: SinkError) -> None:
        for view in list(self._views):
            if view.callback is not None:
                view.callback(connection, entity, error)


class LentSink:
    """One pull's view of a :class:`HeldSink`: the same destination, closed by flushing."""

    def __init__(self, held: HeldSink) -> None:
        self._held = held
        self._sink = held.sink
        self.callback: Failed | None = None
        #: The held sink's class: the checkpoint state is the held sink's own.
        self.stands_for = type(held.sink).__name__

    @property
    def location(self) -> str:
        return self._sink.location

    @property
    def destination(self) -> str:
        return str(getattr(self._sink, "destination", None) or self._sink.location)

    @property
    def checkpoint_store(self) -> CheckpointStore | AsyncCheckpointStore | None:
        return self._sink.checkpoint_store

    async def open(self, entities: Sequence[Entity]) -> None:  # noqa: ARG002 - held open
        self._held._views.add(self)

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        await self._sink.write(page, state)

    async def flush(self) -> None:
        await self._sink.flush()

    async def close(self) -> None:
        try:
            await self._sink.flush()
        finally:
            self._held._views.discard(self)

    async def forget(self, connection: str, entity: Entity) -> None:
        method = getattr(self._sink, "forget", None)
        if method is not None:
            await method(connection, entity)

    def report_failures(self, callback: Failed) -> None:
        self.callback = callback
