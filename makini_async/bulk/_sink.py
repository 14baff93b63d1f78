"""What a pull needs from a sink: the Protocol the pull's consumer writes pages to.

It lives here, beside the consumer that uses it, so the bulk package never
imports the sinks package (which is built on top of it);
``makini_async.sinks`` re-exports it with the sinks that implement it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async.bulk._report import PulledPage
    from makini_async.checkpoint import AsyncCheckpointStore, ChainState, CheckpointStore
    from makini_async.entities import Entity
    from makini_async.errors import SinkError

__all__ = ["Sink", "forget", "report_failures"]


@runtime_checkable
class Sink(Protocol):
    """Where a pull lands its pages, and what each sink guarantees.

    The pull calls ``open`` once before the first page, ``write`` for each
    page in the consumer (before the chain's checkpoint may move past that
    page), and ``close`` when it ends (``close`` flushes). A ``write`` that
    raises :class:`~makini_async.errors.SinkError` fails only that page's
    chain; its checkpoint stays before the page.

    ``state`` is the chain's checkpoint state *after* this page (``None``
    without a checkpoint). A sink whose ``checkpoint_store`` is not ``None``
    commits that state itself, atomically with the page (a database
    transaction, a manifest written with the file), and the pull then uses
    that store to plan every chain and never saves a cursor on its own: the
    page and its cursor become durable together. A sink with no store of its
    own only makes the page durable, and the pull saves the cursor after.

    A sink may also define ``async def forget(self, connection: str, entity:
    Entity) -> None``: the pull calls it (see :func:`forget`) before a chain
    starts again from its beginning (the API rejected its saved cursor), so a
    sink whose readers must see each record once can drop what that chain
    landed before. It is not part of the Protocol, so sinks written before it
    still are sinks.

    A sink that commits pages in groups (PostgreSQL, DuckDB) returns from
    ``write`` before the page is committed, and defines ``def
    report_failures(self, callback)``: the pull hands it a
    ``callback(connection, entity, error)`` (see :func:`report_failures`)
    that ends a chain whose page failed to commit after its ``write``
    returned. Such a sink drops that chain's later pages, so its cursor
    never moves past the failed page.

    A sink that stores records as JSON may set ``reads_texts = True``: in a
    dict pull its pages then carry :attr:`PulledPage.texts`, each record's
    JSON text as the API sent it, so it need not encode the records again.
    Also outside the Protocol; a page may still come without texts.
    """

    @property
    def location(self) -> str:
        """Where data lands, for people (a directory, a database; never a password)."""
        ...

    @property
    def checkpoint_store(self) -> CheckpointStore | AsyncCheckpointStore | None:
        """The store this sink commits chain states to, or ``None``."""
        ...

    async def open(self, entities: Sequence[Entity]) -> None:
        """Prepare to receive pages of ``entities`` (tables, directories, files)."""
        ...

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        """Store one page (and, for a sink with its own store, ``state`` with it)."""
        ...

    async def flush(self) -> None:
        """Make every page written so far durable."""
        ...

    async def close(self) -> None:
        """Flush and release everything (idempotent)."""
        ...


async def forget(sink: Sink, connection: str, entity: Entity) -> None:
    """Have ``sink`` drop what one chain landed, if it can (a no-op otherwise)."""
    method = getattr(sink, "forget", None)
    if method is not None:
        await method(connection, entity)


def report_failures(sink: Sink, callback: Callable[[str, Entity, SinkError], None]) -> None:
    """Have a group-committing ``sink`` tell ``callback`` of pages that failed later."""
    method = getattr(sink, "report_failures", None)
    if method is not None:
        method(callback)
