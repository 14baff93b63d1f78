"""Sinks: where a bulk pull lands its pages, each with its stated guarantee.

::

    sink = PostgresSink("postgresql://app@db/warehouse")        # exactly once
    async with pool.pull(["work-orders"], tokens, sink=sink) as pull:
        await pull.run()

The pull writes each page to the sink before that page's chain may
checkpoint past it (:class:`Sink` says how):

=====================  =================================================================
:class:`JsonLinesSink`  at least once: ``DIR/ENTITY.jsonl``; a resumed run may repeat the
                        pages after the last checkpoint, and cuts a half-written last line
:class:`ParquetSink`    exactly once per file: ``DIR/ENTITY/part-*.parquet``, each file
                        written under a temporary name and renamed, then committed with its
                        chains' cursors in ``DIR/ENTITY/_manifest.json`` (``parquet`` extra)
:class:`PostgresSink`   exactly once: upserts by ``(connection, id)``, newest ``updated_at``
                        wins, pages and their cursors group-committed (``postgresql`` extra)
:class:`DuckDBSink`     exactly once: the PostgreSQL layout in one DuckDB file, loaded
                        through Arrow (``duckdb`` extra)
=====================  =================================================================

:func:`open_sink` builds one from the command line's spelling
(``jsonl:DIR``, ``parquet:DIR``, ``duckdb:FILE``, ``postgresql://...``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from makini_async.bulk._sink import Sink
from makini_async.errors import UsageError
from makini_async.sinks._disk import DEFAULT_DISK_DEADLINE
from makini_async.sinks._jsonl import JsonLinesSink

if TYPE_CHECKING:
    from makini_async.sinks._duckdb import DuckDBSink
    from makini_async.sinks._parquet import ParquetSink
    from makini_async.sinks._postgres import PostgresSink

__all__ = ["DuckDBSink", "JsonLinesSink", "ParquetSink", "PostgresSink", "Sink", "open_sink"]


def __getattr__(name: str) -> Any:
    # The Parquet, DuckDB and PostgreSQL sinks import their optional extras only when used.
    if name == "DuckDBSink":
        from makini_async.sinks._duckdb import DuckDBSink  # noqa: PLC0415

        return DuckDBSink
    if name == "ParquetSink":
        from makini_async.sinks._parquet import ParquetSink  # noqa: PLC0415

        return ParquetSink
    if name == "PostgresSink":
        from makini_async.sinks._postgres import PostgresSink  # noqa: PLC0415

        return PostgresSink
    raise AttributeError(name)


def open_sink(
    spec: str,
    *,
    append: bool = True,
    folder: str | None = None,
    retry_deadline: float | None = None,
    helper: bool | None = None,
) -> Sink:
    """A sink from ``jsonl:DIR``, ``parquet:DIR``, ``duckdb:FILE`` or a ``postgresql://`` DSN.

    ``append`` applies to JSON Lines (``False`` truncates the files first).
    ``folder`` puts a directory sink's files under ``DIR/folder/``, a folder
    the sink makes and refuses to follow if it is a link. ``retry_deadline``
    (seconds) bounds how long Parquet and PostgreSQL wait out a destination
    that is away before :class:`~makini_async.errors.SinkUnavailable`
    (``None``: their default, 120). ``helper`` is the Parquet sink's (a helper
    process builds its tables; ``None``: when this process may use two cores).
    """
    deadline = DEFAULT_DISK_DEADLINE if retry_deadline is None else retry_deadline
    if spec.startswith(("postgresql://", "postgres://")):
        from makini_async.sinks._postgres import PostgresSink  # noqa: PLC0415

        return PostgresSink(spec, retry_deadline=deadline)
    kind, sep, where = spec.partition(":")
    if sep and where and kind == "jsonl":
        return JsonLinesSink(os.path.expanduser(where), append=append, folder=folder)
    if sep and where and kind == "parquet":
        from makini_async.sinks._parquet import ParquetSink  # noqa: PLC0415

        return ParquetSink(
            os.path.expanduser(where), folder=folder, retry_deadline=deadline, helper=helper
        )
    if sep and where and kind == "duckdb":
        from makini_async.sinks._duckdb import DuckDBSink  # noqa: PLC0415

        return DuckDBSink(os.path.expanduser(where))
    shown = spec if "://" not in spec else spec.split("://", 1)[0] + "://..."
    msg = (
        f"unknown sink {shown!r}: expected jsonl:DIR, parquet:DIR, duckdb:FILE or postgresql://..."
    )
    raise UsageError(msg)
