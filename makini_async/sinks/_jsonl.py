"""The JSON Lines sink: one file per entity, appended page by page.

Guarantee: **at least once**. A page is written and flushed to the
operating system before the pull may checkpoint past it, so a killed process
loses nothing it had written; on resume the pages after the last checkpoint
come again (lines repeat; make the reader's writes idempotent by
``(_connection, id)``), and a last line left half-written by the kill is cut
first (its page was never checkpointed). Not fsynced per page: a power cut
may lose the operating system's unwritten tail, which the checkpoint (also
ahead of it) then re-fetches only if the checkpoint lost it too.

A chain started again from its beginning (the API rejected its cursor) is not
taken out of the file: its records come again (at least once).

Files are opened in the open output folder without following links (see
:mod:`makini_async._files`): a link planted at a file, or at the ``folder``
the sink makes under ``DIR`` (a sharded pull's ``unit-NNNNN``), is refused
and nothing is truncated through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from makini_async._files import Folder, LinkRefused
from makini_async.errors import MakiniError, SinkError, SinkUnavailable
from makini_async.sinks._disk import is_transient
from makini_async.sinks._encode import as_json_dict, check_folder, unwritable
from makini_async.sinks._nul import has_nul_escape, without_nul

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["JsonLinesSink", "drop_partial_line"]


class JsonLinesSink:
    """``DIR/ENTITY.jsonl``, one record a line, each with ``"_connection"`` (its name).

    Records that do not fit their model go, whole, to ``DIR/ENTITY.invalid.jsonl``
    (opened on the first one) with the field path and the reason. With
    ``append`` (the default, for resumable pulls) files are appended to after
    cutting a half-written last line; ``append=False`` truncates them.
    ``folder`` puts the files under ``DIR/folder/`` (made by the sink, and
    refused if it is a link).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, append: bool = True, folder: str | None = None
    ) -> None:
        check_folder(folder)
        self.root = Path(directory)
        self.folder = folder
        self.directory = self.root / folder if folder else self.root
        self.append = append
        self._dir: Folder | None = None
        self.paths: dict[Entity, Path] = {}
        self.invalid_paths: dict[Entity, Path] = {}
        self._files: dict[Entity, IO[bytes]] = {}
        self._invalid_files: dict[Entity, IO[bytes]] = {}

    #: Dict pulls hand over each record's JSON text as sent: written, not encoded again.
    reads_texts = True

    def __repr__(self) -> str:
        return f"<JsonLinesSink {self.directory}>"

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def checkpoint_store(self) -> None:
        return None

    async def open(self, entities: Sequence[Entity]) -> None:
        self.open_sync(entities)

    def open_sync(self, entities: Sequence[Entity]) -> None:
        """Open (and, appending, repair) every entity's file, or raise :class:`SinkError`."""
        if self._dir is None:
            try:
                root = Folder.root(self.root)
                try:
                    self._dir = root.sub(self.folder) if self.folder else root
                finally:
                    if self.folder:
                        root.close()
            except OSError as exc:
                msg = f"cannot create output directory {self.directory}: {exc.strerror or exc}"
                raise SinkError(msg) from None
        try:
            for entity in entities:
                name = f"{entity.value}.jsonl"
                self._files[entity] = self._open(name)
                self.paths[entity] = self.directory / name
        except BaseException:
            self.close_sync()
            raise

    def _open(self, name: str) -> IO[bytes]:
        folder = self._dir
        if folder is None:
            msg = f"the JSON Lines sink in {self.directory} is not open"
            raise SinkError(msg)
        path = self.directory / name
        try:
            handle = folder.open_file(name, append=self.append)
        except LinkRefused as exc:
            msg = f"output file {exc.strerror}"
            raise SinkError(msg) from None
        except OSError as exc:
            msg = f"cannot open output file {path}: {exc.strerror or exc}"
            raise SinkError(msg) from None
        if self.append:
            try:
                drop_partial_line(handle)
            except OSError as exc:
                handle.close()
                msg = f"cannot repair output file {path}: {exc.strerror or exc}"
                raise SinkError(msg) from None
        return handle

    async def write(
        self,
        page: PulledPage[Any],
        state: ChainState | None,  # noqa: ARG002 - the pull saves the cursor after this
    ) -> None:
        self.write_sync(page)

    def write_sync(self, page: PulledPage[Any]) -> None:
        """Write one page's records and invalid records, or raise :class:`SinkError`.

        Every line is encoded before any is written, so a record that cannot
        be encoded leaves nothing of its page behind. Each file gets the page
        in one ``write`` straight to the operating system (before the pull
        checkpoints past it, so a process killed after that loses nothing);
        a write that fails (a full disk) is cut back, in both files, so no
        half page stays in the middle of a file. A transient failure (a full
        disk, an I/O error) raises :class:`SinkUnavailable`.
        """
        records = _encode_lines(page) if page.records else None
        invalid = _encode_invalid(page) if page.invalid else None
        written: list[tuple[int, int]] = []
        try:
            if invalid is not None:
                handle = self._invalid_files.get(page.entity)
                if handle is None:
                    name = f"{page.entity.value}.invalid.jsonl"
                    handle = self._invalid_files[page.entity] = self._open(name)
                    self.invalid_paths[page.entity] = self.directory / name
                _append(handle.fileno(), invalid, written)
            if records is not None:
                _append(self._files[page.entity].fileno(), records, written)
        except OSError as exc:
            for fd, start in written:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
            reason = f"cannot write {page.entity.value} to {self.directory}: {exc.strerror or exc}"
            kind = SinkUnavailable if is_transient(exc) else SinkError
            msg = f"sink unavailable: {reason}" if kind is SinkUnavailable else reason
            raise kind(msg, request_id=page.request_id, connection=page.connection) from None

    async def flush(self) -> None:
        """fsync every file (pages are already in the operating system)."""
        handles = [*self._files.values(), *self._invalid_files.values()]
        await asyncio.to_thread(_fsync_all, handles)

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        files, self._files = self._files, {}
        invalid, self._invalid_files = self._invalid_files, {}
        for handle in (*files.values(), *invalid.values()):
            handle.close()
        folder, self._dir = self._dir, None
        if folder is not None:
            folder.close()


def _append(fd: int, data: bytes | bytearray, written: list[tuple[int, int]]) -> None:
    """Append ``data`` to the file (one ``write`` unless the system takes less)."""
    start = os.lseek(fd, 0, os.SEEK_END)
    written.append((fd, start))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_all(handles: list[IO[bytes]]) -> None:
    for handle in handles:
        handle.flush()
        os.fsync(handle.fileno())


def _encode_lines(page: PulledPage[Any]) -> bytes | bytearray:
    texts = page.texts
    if texts is not None and len(texts) == len(page.records):
        return _sent_lines(page, texts)
    data = _lines(page, clean=False)
    # U+0000 lands as U+FFFD, as in every sink (makini_async.sinks._nul).
    return _lines(page, clean=True) if has_nul_escape(data) else data


def _lines(page: PulledPage[Any], *, clean: bool) -> bytes:
    name = page.connection
    # ``"_connection"`` goes in as the last key, spliced into the record's JSON:
    # no copy of the record (the consumer still gets it as the API sent it).
    tail = b',"_connection":' + orjson.dumps(without_nul(name) if clean else name) + b"}"
    dumps = orjson.dumps
    parts = []
    record: Any = None
    try:
        for record in page.records:
            row = record if record.__class__ is dict else as_json_dict(record)
            if clean:
                row = without_nul(row)
            if row and "_connection" not in row:
                parts.append(dumps(row)[:-1] + tail)
            else:  # empty, or a record with a key of that name: the key is replaced
                row = dict(row)
                row["_connection"] = name
                parts.append(dumps(without_nul(row) if clean else row))
    except (TypeError, RecursionError, MakiniError) as exc:
        raise unwritable(page, record, exc, what="JSON") from None
    parts.append(b"")
    return b"\n".join(parts)


def _sent_lines(page: PulledPage[Any], texts: Sequence[Any]) -> bytearray:
    """The page's lines from each record's JSON text as sent: nothing encoded again.

    The texts hold no escaped U+0000 and no line break
    (:mod:`makini_async._wire.texts`); the connection's name is cleaned here.
    """
    name = without_nul(page.connection)
    tail = b',"_connection":' + orjson.dumps(name) + b"}\n"
    # One buffer, grown in place: no object per record for the collector to track.
    # (Two memoryviews a record cost a young-generation collection every two pages,
    # and each one moved the page's parsed records to an older generation.)
    lines = bytearray()
    add = lines.extend
    for record, text in zip(page.records, texts, strict=True):
        if record and "_connection" not in record:
            add(text)
            del lines[-1]  # the text's closing brace: the key goes in before it
            add(tail)
        else:  # as _lines does: the key is replaced
            row = dict(record)
            row["_connection"] = name
            add(orjson.dumps(row))
            add(b"\n")
    return lines


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
            parts.append(orjson.dumps(without_nul(line)))
    except (TypeError, RecursionError) as exc:
        raise unwritable(page, item, exc, what="JSON") from None
    parts.append(b"")
    return b"\n".join(parts)


def drop_partial_line(handle: IO[bytes]) -> None:
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
