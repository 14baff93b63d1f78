"""The Parquet sink: one directory per entity, files committed atomically with their cursors.

Guarantee: **exactly once** in the committed files. Pages are buffered per
entity as Arrow tables; when the buffer reaches ``file_size`` bytes or
the pull ends, it is written as ``DIR/ENTITY/.part-N.parquet.tmp``, fsynced,
renamed to ``part-N.parquet``, and then committed by replacing
``DIR/ENTITY/_manifest.json`` atomically (temporary file, fsync, rename)
with the new file's name **and the cursor of every chain whose pages it
holds**. The manifest is therefore this sink's checkpoint store
(:attr:`ParquetSink.checkpoint_store`): a process killed at any instant
resumes each chain after its last committed page, a file the manifest does
not list (renamed, not yet committed) is deleted on open, and a temporary
file never becomes data. So no file is partial and no page is committed
twice; pages still buffered at a kill are fetched again.

Read an entity with ``pyarrow.parquet.read_table("DIR/ENTITY")`` (names
starting with ``_`` or ``.`` are skipped); the columns are described in
:mod:`makini_async.sinks._parquet_schema`. Needs the ``parquet`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.checkpoint import state_from_json, state_to_json
from makini_async.errors import MakiniError, SinkError, UsageError
from makini_async.sinks._encode import unwritable
from makini_async.sinks._parquet_schema import table_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity

__all__ = ["DEFAULT_FILE_SIZE", "ManifestStore", "ParquetSink"]

#: Bytes of records (Arrow's in-memory size) buffered per entity before a file is written.
DEFAULT_FILE_SIZE: Final = 32 * 1024 * 1024
MANIFEST: Final = "_manifest.json"
_PART: Final = re.compile(r"^part-(\d{6,})\.parquet$")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa  # noqa: PLC0415 - an optional extra
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        msg = "the Parquet sink needs the parquet extra: pip install 'makini-async[parquet]'"
        raise UsageError(msg) from None
    return pa, pq


class _Entity:
    """One entity's directory: its committed manifest and its buffered pages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[str] = []
        self.chains: dict[str, dict[str, Any]] = {}  # committed chain states by connection
        self.pending: dict[str, dict[str, Any]] = {}  # states of the buffered pages
        self.tables: list[Any] = []  # one Arrow table per buffered page
        self.size = 0
        self.dirty = False  # chain states saved outside a file commit


class ManifestStore:
    """The chain states committed in the manifests: the Parquet sink's checkpoint store."""

    def __init__(self, sink: ParquetSink) -> None:
        self._sink = sink

    def load(self, connection: str, entity: str) -> ChainState | None:
        return state_from_json(self._sink.entity_dir(entity).chains.get(connection))

    def save(self, connection: str, entity: str, state: ChainState) -> None:
        # A chain's start (no page yet): safe to commit whenever, written with the next manifest.
        part = self._sink.entity_dir(entity)
        part.chains[connection] = state_to_json(state)
        part.dirty = True

    def flush(self) -> None:
        self._sink.write_manifests()

    def close(self) -> None:
        self.flush()


class ParquetSink:
    """``DIR/ENTITY/part-N.parquet`` files, each committed with its chains' cursors."""

    def __init__(
        self, directory: str | os.PathLike[str], *, file_size: int = DEFAULT_FILE_SIZE
    ) -> None:
        if file_size < 1:
            msg = f"file_size must be at least 1 byte, got {file_size}"
            raise UsageError(msg)
        _pyarrow()
        self.directory = Path(directory)
        self.file_size = file_size
        self._entities: dict[str, _Entity] = {}
        self._store = ManifestStore(self)
        self.committed_files = 0

    def __repr__(self) -> str:
        return f"<ParquetSink {self.directory}>"

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def checkpoint_store(self) -> ManifestStore:
        return self._store

    def entity_dir(self, entity: str) -> _Entity:
        part = self._entities.get(entity)
        if part is None:
            msg = f"the Parquet sink was not opened for {entity}"
            raise SinkError(msg)
        return part

    async def open(self, entities: Sequence[Entity]) -> None:
        for entity in entities:
            if entity.value not in self._entities:
                self._entities[entity.value] = _open_entity(self.directory / entity.value)

    async def write(self, page: PulledPage[Any], state: ChainState | None) -> None:
        part = self.entity_dir(page.entity.value)
        try:
            table = table_of(page)
        except (TypeError, ValueError, RecursionError, MakiniError) as exc:
            raise unwritable(page, None, exc, what="Parquet") from None
        if table.num_rows:
            part.tables.append(table)
            part.size += table.nbytes  # Arrow's in-memory size: what rolls a file
        if state is not None:
            part.pending[page.connection] = state_to_json(state)
        if part.size >= self.file_size:
            await self._commit(part)

    async def flush(self) -> None:
        for part in self._entities.values():
            await self._commit(part)
        self.write_manifests()

    async def close(self) -> None:
        await self.flush()

    async def _commit(self, part: _Entity) -> None:
        """Write the buffer as one file, then commit it and its chains' states."""
        if not part.tables and not part.pending:
            return
        tables, part.tables, part.size = part.tables, [], 0
        pending, part.pending = part.pending, {}
        number = 1 + max((_number(f) for f in part.files), default=0)
        name = f"part-{number:06d}.parquet"
        try:
            if tables:
                await asyncio.to_thread(_write_file, part.path, name, tables)
                part.files.append(name)
                self.committed_files += 1
            part.chains.update(pending)
            _write_manifest(part)
        except OSError as exc:
            msg = f"cannot write Parquet to {part.path}: {exc.strerror or exc}"
            raise SinkError(msg) from None

    def write_manifests(self) -> None:
        for part in self._entities.values():
            if part.dirty:
                try:
                    _write_manifest(part)
                except OSError as exc:
                    msg = f"cannot write {part.path / MANIFEST}: {exc.strerror or exc}"
                    raise SinkError(msg) from None


def _number(name: str) -> int:
    match = _PART.match(name)
    return int(match.group(1)) if match else 0


def _open_entity(path: Path) -> _Entity:
    """Load a directory's manifest; delete what it does not list (never committed)."""
    part = _Entity(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        manifest = path / MANIFEST
        if manifest.exists():
            data = orjson.loads(manifest.read_bytes())
            part.files = [f for f in data.get("files", []) if _PART.match(f)]
            part.chains = dict(data.get("chains", {}))
        listed = set(part.files)
        for child in path.iterdir():
            stale = child.name.endswith(".tmp") or (
                _PART.match(child.name) is not None and child.name not in listed
            )
            if stale and not child.is_symlink():
                child.unlink()
    except (OSError, orjson.JSONDecodeError, AttributeError) as exc:
        msg = f"cannot open Parquet directory {path}: {exc}"
        raise SinkError(msg) from None
    return part


def _write_file(directory: Path, name: str, tables: list[Any]) -> None:
    pa, pq = _pyarrow()
    table = pa.concat_tables(tables)
    tmp = directory / f".{name}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    _fsync(tmp)
    os.replace(tmp, directory / name)
    _fsync(directory)


def _write_manifest(part: _Entity) -> None:
    payload = orjson.dumps({"version": 1, "files": part.files, "chains": part.chains})
    tmp = part.path / f".{MANIFEST}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, part.path / MANIFEST)
    _fsync(part.path)
    part.dirty = False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)
