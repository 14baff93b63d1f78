"""Output files of ``makini-async pull``: JSON Lines per entity, written safely."""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

import orjson

from makini_async.cli._args import CliError
from makini_async.errors import (
    MakiniError,
    SinkError,
)
from makini_async.models import unstructure

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from makini_async.bulk import PulledPage
    from makini_async.entities import Entity

__all__ = ["Writer", "open_output"]


class Writer:
    """One JSON Lines file per entity; one ``write`` call per page.

    Records that do not fit their model go to ``ENTITY.invalid.jsonl``
    (opened on the first one), each line the record as sent plus where it
    came from and why it does not fit.
    """

    def __init__(self, out: Path, entities: Sequence[Entity], *, append: bool) -> None:
        self.out = out
        self.paths = {e: out / f"{e.value}.jsonl" for e in entities}
        self.invalid_paths: dict[Entity, Path] = {}
        self._append = append
        self._files: dict[Entity, IO[bytes]] = {}
        self._invalid_files: dict[Entity, IO[bytes]] = {}

    def __enter__(self) -> Writer:
        try:
            for entity, path in self.paths.items():
                self._files[entity] = self._open(path)
        except OSError as exc:
            self.close()
            msg = f"cannot open output file {exc.filename}: {exc.strerror}"
            raise CliError(msg) from None
        return self

    def _open(self, path: Path) -> IO[bytes]:
        handle = open_output(path, append=self._append)
        if self._append:
            _drop_partial_line(handle)
        return handle

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        files, self._files = self._files, {}
        invalid, self._invalid_files = self._invalid_files, {}
        for handle in (*files.values(), *invalid.values()):
            handle.close()

    def write(self, page: PulledPage[Any], *, typed: bool) -> None:
        """Write one page's records and invalid records, or raise :class:`SinkError`.

        Every line is encoded before any is written, so a record that cannot
        be encoded leaves nothing of its page behind.
        """
        records = _encode_lines(page, typed=typed) if page.records else None
        invalid = _encode_invalid(page) if page.invalid else None
        if invalid is not None:
            handle = self._invalid_files.get(page.entity)
            if handle is None:
                path = self.out / f"{page.entity.value}.invalid.jsonl"
                handle = self._invalid_files[page.entity] = self._open(path)
                self.invalid_paths[page.entity] = path
            handle.write(invalid)
            handle.flush()
        if records is not None:
            handle = self._files[page.entity]
            handle.write(records)
            # Into the OS before the pull checkpoints past this page (when we ask
            # for the next one): a process killed after that loses nothing it wrote.
            handle.flush()


def _encode_lines(page: PulledPage[Any], *, typed: bool) -> bytes:
    name = page.connection
    parts = []
    record: Any = None
    try:
        for record in page.records:
            row: dict[str, Any] = unstructure(record) if typed else record
            row["_connection"] = name
            parts.append(orjson.dumps(row))
    except (TypeError, RecursionError, MakiniError) as exc:
        raise _unwritable(page, record, exc) from None
    parts.append(b"")
    return b"\n".join(parts)


def _encode_invalid(page: PulledPage[Any]) -> bytes:
    parts = []
    item: Any = None
    try:
        for item in page.invalid:
            line = {
                "_connection": page.connection,
                "field": item.field,
                "reason": item.reason,
                "request_id": item.request_id,
                "record": item.data,
            }
            parts.append(orjson.dumps(line))
    except (TypeError, RecursionError) as exc:
        raise _unwritable(page, item, exc) from None
    parts.append(b"")
    return b"\n".join(parts)


def _unwritable(page: PulledPage[Any], record: Any, exc: BaseException) -> SinkError:
    """The typed error for a record JSON cannot hold (orjson stops at 254 levels)."""
    rid = getattr(record, "id", None) if not isinstance(record, dict) else record.get("id")
    reason = exc.message if isinstance(exc, MakiniError) else f"{type(exc).__name__}: {exc}"
    msg = f"cannot write {page.entity.value} record {rid!r} as JSON ({reason})"
    return SinkError(msg, request_id=page.request_id, connection=page.connection)


def open_output(path: Path, *, append: bool) -> IO[bytes]:
    """Open an output file for writing without following a symbolic link.

    A link planted where an output file goes would otherwise have the pull
    overwrite whatever it points to.
    """
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= (os.O_RDWR | os.O_APPEND) if append else (os.O_WRONLY | os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if path.is_symlink():
            msg = f"output file {path} is a symbolic link; refusing to follow it"
            raise CliError(msg) from None
        raise
    return os.fdopen(fd, "a+b" if append else "wb")


def _drop_partial_line(handle: IO[bytes]) -> None:
    """Cut a last line without its newline: a page half-written when the process died.

    That page was never checkpointed, so the resumed pull delivers it again;
    kept, the fragment would be a line that is not JSON.
    """
    end = handle.seek(0, os.SEEK_END)
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        handle.seek(start)
        chunk = handle.read(pos - start)
        if pos == end and chunk.endswith(b"\n"):
            return
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            handle.truncate(start + cut + 1)
            return
        pos = start
    handle.truncate(0)
