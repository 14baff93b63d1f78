"""What the database sinks share: each page as rows, group-committed through :class:`Lanes`.

A sink built on :class:`BatchedRows` defines ``_commit(batch)`` (one
transaction for a batch of :class:`~makini_async.sinks._group.Pending`
pages) and sets ``_batch_settings``; ``write``, ``flush`` and
``report_failures`` are this class's (see :mod:`makini_async.sinks._group`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makini_async.sinks._group import DEFAULT_MAX_DELAY, DEFAULT_MAX_ROWS, Lanes, Pending
from makini_async.sinks._rows import page_rows

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity
    from makini_async.errors import SinkError

__all__ = ["BatchedRows"]


class BatchedRows:
    """Pages queued as rows for the next batch; batches committed by ``_commit``."""

    #: ``(max_batch_rows, max_batch_delay, lanes)``, set by the sink's constructor.
    _batch_settings: tuple[int, float, int] = (DEFAULT_MAX_ROWS, DEFAULT_MAX_DELAY, 1)
    _landing: Lanes | None = None
    #: Dict pulls hand over each record's JSON text as sent: stored, not encoded again.
    reads_texts = True

    async def _commit(self, batch: list[Pending]) -> None:
        raise NotImplementedError  # pragma: no cover - every sink defines it

    def _lanes_made(self, lanes: Lanes) -> None:
        """Called once, when the lanes are made (a sink may hand them on)."""

    def report_failures(self, callback: Callable[[str, Entity, SinkError], None]) -> None:
        """Have ``callback`` told of a chain whose batch failed after its ``write`` returned."""
        self._group().report_failures(callback)

    def _group(self) -> Lanes:
        if self._landing is None:
            rows, delay, lanes = self._batch_settings
            self._landing = Lanes(self._commit, lanes=lanes, max_rows=rows, max_delay=delay)
            self._lanes_made(self._landing)
        return self._landing

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        """Queue a page (and its chain's ``state``) for the next batch.

        Returns once the page is in a batch, not once it is committed;
        :meth:`flush` waits for that. A record the database cannot hold
        raises here, for this page only.
        """
        rows, invalid, size = page_rows(page)
        pending = Pending(
            page.connection, page.entity, len(rows) + len(invalid), size, (rows, invalid, state)
        )
        await self._group().add(pending)

    async def flush(self) -> None:
        """Commit every page written so far (raises what could not be committed)."""
        if self._landing is not None:
            await self._landing.flush()

    async def _close_batches(self) -> None:
        if self._landing is not None:
            await self._landing.close()
