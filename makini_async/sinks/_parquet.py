"""The Parquet sink: one directory per entity, files committed atomically with their cursors.

Guarantee: **exactly once** in the committed files. Pages are buffered per
entity as Arrow tables; when the buffer reaches ``file_size`` bytes or
the pull ends, it is written as ``DIR/ENTITY/part-N.parquet`` (a temporary
file, fsynced, renamed), and then committed by replacing
``DIR/ENTITY/_manifest.json`` atomically with the new file's name **and the
cursor of every chain whose pages it holds**. The manifest is therefore this
sink's checkpoint store (:attr:`ParquetSink.checkpoint_store`): a process
killed at any instant resumes each chain after its last committed page, a
file the manifest does not list (renamed, not yet committed) is deleted on
open, and a temporary file never becomes data. So no file is partial and no
page is committed twice; pages still buffered at a kill are fetched again.

**Failures.** A buffered page leaves the buffer only once its file is
committed, and no chain's state is committed ahead of its pages. A full or
failing disk (``ENOSPC``, ``EIO``, ...) is retried with backoff for
``retry_deadline`` seconds, then raises
:class:`~makini_async.errors.SinkUnavailable` (the page being written is not
taken; the others stay buffered). Any other failure to write a file ends only
the chain whose page was being written (its buffered pages are dropped, its
state stays before them); the other chains' pages go into the next file.

**A helper process.** A dict page's Arrow table is built in a helper
process, on another core, from the records' JSON texts as the API sent them
(:mod:`makini_async.sinks._parquet_helper`); files, the manifest and every
cursor stay here. ``helper=None`` (the default) starts one when this process
may run on two cores or more and the pull has brought 2,000 records (a
short pull is over before a helper would have started); ``True`` starts it
when the sink opens; ``False`` builds every table in this process.
A page the helper could not build is built here, and a page that cannot be
written ends its chain as it does here (told to the pull once its turn to
be committed comes).

**One writer.** The sink holds an advisory lock (``DIR/.makini.lock``,
``flock``) from ``open`` to ``close``: a second pull into the same directory
gets a :class:`~makini_async.errors.SinkError` naming it.

**Links.** ``DIR`` may be a link (it is the user's); an entity folder (or the
``folder`` under ``DIR``, a sharded pull's ``unit-NNNNN``) that is a link is
refused, and nothing is written or deleted through a link.

**A chain started again** (its cursor rejected): :meth:`ParquetSink.forget`
takes that chain's rows of its current run out of the committed files before
it starts again, so a reader never sees them twice.

Read an entity with ``pyarrow.parquet.read_table("DIR/ENTITY")`` (names
starting with ``_`` or ``.`` are skipped); the columns are described in
:mod:`makini_async.sinks._parquet_schema`. Needs the ``parquet`` extra.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from makini_async._files import Folder, LockHeld
from makini_async.checkpoint import state_from_json, state_to_json
from makini_async.errors import MakiniError, SinkError, SinkUnavailable, UsageError
from makini_async.sinks._disk import DEFAULT_DISK_DEADLINE, DiskRetry
from makini_async.sinks._encode import check_folder, unwritable
from makini_async.sinks._parquet_dir import MANIFEST, EntityDir, encode
from makini_async.sinks._parquet_helper import Building, TableHelper, cores
from makini_async.sinks._parquet_schema import table_of

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["DEFAULT_FILE_SIZE", "LOCK", "ManifestStore", "ParquetSink"]

#: Bytes of records (Arrow's in-memory size) buffered per entity before a file is written.
DEFAULT_FILE_SIZE: Final = 32 * 1024 * 1024
#: Records of dict pages after which a sink left to decide (``helper=None``) starts its helper.
HELPER_AFTER_RECORDS: Final = 2_000
#: The lock file a writer holds in the sink's directory.
LOCK: Final = ".makini.lock"


def _pyarrow() -> None:
    try:
        import pyarrow  # noqa: PLC0415 - an optional extra
        import pyarrow.parquet  # noqa: F401, PLC0415
    except ImportError:
        msg = "the Parquet sink needs the parquet extra: pip install 'makini-async[parquet]'"
        raise UsageError(msg) from None


class _Unwritable(Exception):
    """Writing a file failed for a reason waiting will not cure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ManifestStore:
    """The chain states committed in the manifests: the Parquet sink's checkpoint store."""

    def __init__(self, sink: ParquetSink) -> None:
        self._sink = sink

    def load(self, connection: str, entity: str) -> ChainState | None:
        return state_from_json(self._sink.entity_dir(entity).chains.get(connection))

    def save(self, connection: str, entity: str, state: ChainState) -> None:
        # A chain's start (no page yet): safe to commit whenever, written with the next manifest.
        part = self._sink.entity_dir(entity)
        part.save(connection, state_to_json(state), start=state.cursor is None)

    def flush(self) -> None:
        self._sink.write_manifests()

    def close(self) -> None:
        self.flush()


class ParquetSink:
    """``DIR/ENTITY/part-N.parquet`` files, each committed with its chains' cursors.

    ``folder`` puts the files under ``DIR/folder/`` (a folder the sink makes:
    refused if it is a link). ``retry_deadline``, ``sleep`` and ``clock``
    govern the retries of a full or failing disk. ``helper`` builds dict
    pages' tables in a helper process (``None``: when this process may use
    two cores or more).
    """

    #: Whether dict pulls hand over each record's JSON text (for the helper).
    reads_texts: bool

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_size: int = DEFAULT_FILE_SIZE,
        folder: str | None = None,
        retry_deadline: float = DEFAULT_DISK_DEADLINE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        helper: bool | None = None,
    ) -> None:
        if helper is not None and not isinstance(helper, bool):
            msg = f"helper must be True, False or None, got {helper!r}"
            raise UsageError(msg)
        if file_size < 1:
            msg = f"file_size must be at least 1 byte, got {file_size}"
            raise UsageError(msg)
        if not retry_deadline >= 0:
            msg = f"retry_deadline must be a number of seconds >= 0, got {retry_deadline!r}"
            raise UsageError(msg)
        _pyarrow()
        check_folder(folder)
        self.root = Path(directory)
        self.folder = folder
        self.directory = self.root / folder if folder else self.root
        self.file_size = file_size
        self._retry = DiskRetry(retry_deadline, sleep, clock)
        self._entities: dict[str, EntityDir] = {}
        self._store = ManifestStore(self)
        self._dir: Folder | None = None
        self._lock: Any = None
        self.committed_files = 0
        self.reads_texts = cores() > 1 if helper is None else helper
        # Asked for: from open. Left to the sink: once a pull has proved long enough to
        # repay the helper's half second of start-up (a short pull never starts one).
        self._helper_from = 0 if helper else HELPER_AFTER_RECORDS
        self._records_seen = 0
        self._helper: TableHelper | None = None
        self._helper_built = 0
        self._building: list[Building] = []  # sent to the helper, in order, not yet taken
        self._failed: dict[tuple[str, str], SinkError] = {}  # (entity, connection)
        self._on_failure: Callable[[str, Entity, SinkError], None] | None = None

    def __repr__(self) -> str:
        return f"<ParquetSink {self.directory}>"

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def checkpoint_store(self) -> ManifestStore:
        return self._store

    @property
    def helper(self) -> TableHelper | None:
        """The helper process building dict pages' tables, while the sink is open."""
        return self._helper

    @property
    def helper_pages(self) -> int:
        """How many pages' tables the helper process built (the rest were built here)."""
        return self._helper_built + (0 if self._helper is None else self._helper.built)

    @property
    def disk_retries(self) -> int:
        """How many times a write waited for the disk (full, failing) and tried again."""
        return self._retry.retries

    def entity_dir(self, entity: str) -> EntityDir:
        part = self._entities.get(entity)
        if part is None:
            msg = f"the Parquet sink was not opened for {entity}"
            raise SinkError(msg)
        return part

    async def open(self, entities: Sequence[Entity]) -> None:
        """Take the directory's lock (if not held) and open each entity's folder."""
        if self._dir is None:
            self._dir = self._take_lock()
        if self._helper_from == 0:
            await self._start_helper()
        for entity in entities:
            if entity.value not in self._entities:
                self._entities[entity.value] = self._open_entity(self._dir, entity.value)

    def _take_lock(self) -> Folder:
        where = self.directory
        try:
            root = Folder.root(self.root)
            try:
                base = root.sub(self.folder) if self.folder else root
            finally:
                if self.folder:
                    root.close()
        except OSError as exc:
            msg = f"cannot open Parquet directory {where}: {exc.strerror or exc}"
            raise SinkError(msg) from None
        try:
            self._lock = base.lock(LOCK)
        except LockHeld as exc:
            base.close()
            msg = (
                f"Parquet directory {where} is in use by another pull (process "
                f"{exc.holder}); wait for it to end, or write to another directory"
            )
            raise SinkError(msg) from None
        except OSError as exc:
            base.close()
            msg = f"cannot lock Parquet directory {where}: {exc.strerror or exc}"
            raise SinkError(msg) from None
        return base

    @staticmethod
    def _open_entity(base: Folder, name: str) -> EntityDir:
        try:
            return EntityDir.open(base, name)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            msg = f"cannot open Parquet directory {base.path / name}: {reason}"
            raise SinkError(msg) from None

    async def _start_helper(self) -> None:
        if self.reads_texts and self._helper is None:
            self._helper = TableHelper()
            await self._helper.start()

    def report_failures(self, callback: Callable[[str, Entity, SinkError], None]) -> None:
        """Have ``callback(connection, entity, error)`` told of a page found unwritable later.

        A page the helper was building is found unwritable only when its
        file is committed: its chain's buffered pages are dropped then, and
        its state stays before them.
        """
        self._on_failure = callback

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        part = self.entity_dir(page.entity.value)
        connection = page.connection
        failed = self._failed.get((page.entity.value, connection))
        if failed is not None:  # never past a page of this chain that failed
            raise SinkError(failed.message, request_id=failed.request_id, connection=connection)
        self._take_built()
        table: Any
        texts = page.texts
        if texts and self._helper is None and self.reads_texts:
            self._records_seen += len(texts)
            if self._records_seen >= self._helper_from:
                await self._start_helper()
        helper = self._helper
        if helper is not None and helper.usable and texts and not page.invalid:
            future = await helper.build(page.entity, texts, connection, page.request_id)
            table = Building(future, page.entity, texts, connection, page.request_id)
            self._building.append(table)
            added = True
        else:
            try:
                table = table_of(page)
            except (TypeError, ValueError, RecursionError, MakiniError) as exc:
                raise unwritable(page, None, exc, what="Parquet") from None
            added = bool(table.num_rows)
        before = part.pending.get(connection)
        if added:
            part.pages.append((connection, table))
            part.size += table.nbytes  # Arrow's in-memory size: what rolls a file
        if state is not None:
            part.pending[connection] = state_to_json(state)
        if part.size < self.file_size:
            return
        try:
            await self._commit(part)
        except SinkUnavailable:
            # This page was not taken: the chain's state stays before it.
            if added and part.pages and part.pages[-1][1] is table:
                part.pages.pop()
                part.size = sum(t.nbytes for _, t in part.pages)
            if state is not None:
                if before is None:
                    part.pending.pop(connection, None)
                else:
                    part.pending[connection] = before
            raise
        except _Unwritable as exc:
            # Only this chain ends: its pages go, its committed state stays before them.
            part.drop(connection)
            msg = f"cannot write Parquet to {part.path}: {exc.reason}"
            raise SinkError(msg, request_id=page.request_id, connection=connection) from None

    async def flush(self) -> None:
        for part in self._entities.values():
            try:
                await self._commit(part)
            except _Unwritable as exc:  # noqa: PERF203 - ends the loop
                msg = f"cannot write Parquet to {part.path}: {exc.reason}"
                raise SinkError(msg) from None
        self.write_manifests()

    async def close(self) -> None:
        """Flush, then release the directory (idempotent)."""
        if self._dir is None:
            return
        try:
            await self.flush()
        finally:
            helper, self._helper = self._helper, None
            if helper is not None:
                await helper.close()
                self._helper_built += helper.built
            self._building = []
            self._failed = {}  # a later pull with this sink starts those chains again
            self._records_seen = 0
            entities, self._entities = self._entities, {}
            for part in entities.values():
                part.folder.close()
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()
            base, self._dir = self._dir, None
            base.close()

    async def forget(self, connection: str, entity: Entity) -> None:
        """Take what ``connection``'s current run of ``entity`` landed out of the dataset.

        Called before that chain starts again from its beginning: its
        buffered pages are dropped, and the committed files holding its rows
        from this run are rewritten without them (see :meth:`EntityDir.forget`).
        """
        part = self.entity_dir(entity.value)

        async def call() -> None:
            await asyncio.to_thread(part.forget, connection)

        try:
            async with part.guard:
                part.drop(connection)
                await self._retry.run(call, str(part.path))
        except OSError as exc:
            msg = f"cannot rewrite Parquet in {part.path}: {exc.strerror or exc}"
            raise SinkError(msg, connection=connection) from None
        except (ValueError, TypeError) as exc:  # pyarrow cannot read a file back
            msg = f"cannot rewrite Parquet in {part.path}: {exc}"
            raise SinkError(msg, connection=connection) from None

    async def _commit(self, part: EntityDir) -> None:
        """Write the buffer as one file, then commit it and its chains' states.

        The buffer leaves memory only once both are committed; a transient
        disk fault is retried, any other raises :class:`_Unwritable`.
        """
        async with part.guard:
            await self._commit_now(part)

    def _take_built(self) -> None:
        """Keep the tables the helper has sent back, letting their pages go (memory)."""
        building = self._building
        done = 0
        for entry in building:
            if not entry.future.done():
                break
            entry.take()
            done += 1
        del building[:done]

    async def _settle(self, part: EntityDir) -> None:
        """Every buffered page as its table: awaited from the helper, or built here.

        A page that cannot be written ends its chain: its buffered pages are
        dropped, its state stays before them, and the pull is told.
        """
        failed: dict[str, tuple[Entity, SinkError]] = {}
        for connection, entry in list(part.pages):
            if not isinstance(entry, Building) or entry.table is not None:
                continue
            if connection in failed:
                continue
            if self._helper is not None:
                await self._helper.wait(entry.future)
            if entry.take():
                continue
            try:
                entry.build_here()
            except (TypeError, ValueError, RecursionError, MakiniError) as exc:
                error = unwritable(entry, None, exc, what="Parquet")  # it names the same parts
                failed[connection] = (entry.entity, error)
        self._take_built()
        for connection, (entity, error) in failed.items():
            part.drop(connection)
            self._failed[(entity.value, connection)] = error
            if self._on_failure is None:
                raise error
            self._on_failure(connection, entity, error)

    async def _commit_now(self, part: EntityDir) -> None:
        await self._settle(part)
        if not part.pages and not part.pending:
            return
        count = len(part.pages)
        pending = dict(part.pending)
        data = None
        if count:
            import pyarrow as pa  # noqa: PLC0415 - the optional extra

            tables = [t.table if isinstance(t, Building) else t for _, t in part.pages]
            try:
                data = await asyncio.to_thread(encode, tables)
            except (pa.ArrowException, ValueError, TypeError, MemoryError) as exc:
                raise _Unwritable(f"{type(exc).__name__}: {exc}") from None

        async def call() -> str | None:
            return await asyncio.to_thread(part.land, data, pending)

        try:
            name = await self._retry.run(call, str(part.path))
        except SinkUnavailable:
            raise
        except OSError as exc:
            raise _Unwritable(exc.strerror or str(exc)) from None
        part.trim(count, pending)
        if name is not None:
            self.committed_files += 1

    def write_manifests(self) -> None:
        for part in self._entities.values():
            if part.dirty:
                try:
                    part.write_manifest()
                except OSError as exc:
                    msg = f"cannot write {part.path / MANIFEST}: {exc.strerror or exc}"
                    raise SinkError(msg) from None
