"""Output of ``makini-async pull`` for ``--out DIR``: the JSON Lines sink, synchronously.

The writing itself is :class:`~makini_async.sinks.JsonLinesSink`; this keeps
the command's error type (:class:`CliError`, exit code 2) for files that
cannot be opened.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from makini_async.cli._args import CliError
from makini_async.errors import SinkError
from makini_async.sinks._encode import open_no_follow
from makini_async.sinks._jsonl import JsonLinesSink

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from makini_async.bulk import PulledPage
    from makini_async.entities import Entity

__all__ = ["Writer", "open_output"]


class Writer:
    """One JSON Lines file per entity; one ``write`` call per page (see :class:`JsonLinesSink`)."""

    def __init__(self, out: Path, entities: Sequence[Entity], *, append: bool) -> None:
        self.sink = JsonLinesSink(out, append=append)
        self._entities = list(entities)

    def __enter__(self) -> Writer:
        try:
            self.sink.open_sync(self._entities)
        except SinkError as exc:
            raise CliError(exc.message) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sink.close_sync()

    def write(self, page: PulledPage[Any]) -> None:
        """Write one page, or raise :class:`SinkError` (a record JSON cannot hold)."""
        self.sink.write_sync(page)


def open_output(path: Path, *, append: bool) -> IO[bytes]:
    """Open an output file without following a symbolic link (:class:`CliError` if one)."""
    try:
        return open_no_follow(path, append=append)
    except SinkError as exc:
        raise CliError(exc.message) from None
