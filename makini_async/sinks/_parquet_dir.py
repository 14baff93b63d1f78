"""One entity's Parquet directory: its manifest, its part files, and the pages buffered for it.

The manifest (``_manifest.json``, replaced atomically) lists the committed
files, the committed state of every chain, where each chain's current run
began (``starts``: the number of the first part file written after it), and
the chains whose current run is being taken out of the files (``forget``).

Every file operation is relative to the open folder (:class:`Folder`): a link
planted in the directory is never written, truncated or deleted through.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.sinks._arrow import arrow_pool
from makini_async.sinks._parquet_schema import table_without_nul

if TYPE_CHECKING:
    from pathlib import Path

    from makini_async._files import Folder

__all__ = ["MANIFEST", "EntityDir", "encode", "part_number"]

logger = logging.getLogger("makini_async")

MANIFEST: Final = "_manifest.json"
_PART: Final = re.compile(r"^part-(\d{6,})\.parquet$")


def part_number(name: str) -> int:
    match = _PART.match(name)
    return int(match.group(1)) if match else 0


def encode(tables: list[Any]) -> Any:
    """The tables as one Parquet file's bytes (an Arrow buffer): no disk involved.

    U+0000 becomes U+FFFD here, for the whole file at once.
    """
    import pyarrow as pa  # noqa: PLC0415 - the optional extra
    import pyarrow.parquet as pq  # noqa: PLC0415

    pool = arrow_pool()
    out = pa.BufferOutputStream(memory_pool=pool)
    table = table_without_nul(pa.concat_tables(tables, memory_pool=pool))
    with pq.ParquetWriter(out, table.schema, compression="zstd", memory_pool=pool) as writer:
        writer.write_table(table)
    return out.getvalue()


def _decode(data: bytes) -> Any:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    return pq.read_table(pa.BufferReader(data))


class EntityDir:
    """An entity's folder: what is committed, and what is buffered for the next file."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.files: list[str] = []
        self.chains: dict[str, dict[str, Any]] = {}  # committed chain states by connection
        self.starts: dict[str, int] = {}  # first part number of each chain's current run
        self.forgetting: dict[str, int] = {}  # chains whose rows from that number are dropped
        self.next = 1  # part numbers are never reused (see ``starts``)
        self.pages: list[tuple[str, Any]] = []  # (connection, Arrow table) per buffered page
        self.pending: dict[str, dict[str, Any]] = {}  # states of the buffered pages
        self.size = 0
        self.dirty = False  # chain states saved outside a file commit
        self.saves = 0  # counts those saves, so a manifest written meanwhile keeps ``dirty``
        self.guard = asyncio.Lock()  # one commit or forget at a time

    @property
    def path(self) -> Path:
        return self.folder.path

    @classmethod
    def open(cls, parent: Folder, name: str) -> EntityDir:
        """Open (make) ``parent/name``, load its manifest, finish an interrupted forget,
        and delete what the manifest does not list (never committed)."""
        part = cls(parent.sub(name))
        try:
            raw = part.folder.read(MANIFEST)
            if raw is not None:
                data = orjson.loads(raw)
                part.files = [f for f in data.get("files", []) if _PART.match(f)]
                part.chains = dict(data.get("chains", {}))
                part.starts = {k: int(v) for k, v in dict(data.get("starts", {})).items()}
                part.forgetting = {k: int(v) for k, v in dict(data.get("forget", {})).items()}
                part.next = int(data.get("next", 1))
            if part.forgetting:
                part.finish_forget()
            listed = set(part.files)
            part.folder.remove(
                n
                for n in part.folder.names()
                if n.endswith(".tmp") or (_PART.match(n) is not None and n not in listed)
            )
        except BaseException:
            part.folder.close()
            raise
        return part

    def next_number(self) -> int:
        return max(self.next, 1 + max((part_number(f) for f in self.files), default=0))

    # -- buffering -------------------------------------------------------------------

    def drop(self, connection: str) -> None:
        """Forget every buffered page and state of one chain."""
        self.pages = [(c, t) for c, t in self.pages if c != connection]
        self.size = sum(t.nbytes for _, t in self.pages)
        self.pending.pop(connection, None)

    def save(self, connection: str, state: dict[str, Any], *, start: bool) -> None:
        """Record a chain's state outside a file commit (its start), for the next manifest."""
        self.chains[connection] = state
        if start:
            # Its run's rows go into files from this number on (what forget takes out).
            self.starts[connection] = self.next_number()
        self.saves += 1
        self.dirty = True

    def trim(self, pages: int, pending: dict[str, dict[str, Any]]) -> None:
        """Let go of the first ``pages`` buffered pages and the states committed with them."""
        del self.pages[:pages]
        self.size = sum(t.nbytes for _, t in self.pages)
        for connection, state in pending.items():
            if self.pending.get(connection) is state:
                del self.pending[connection]

    # -- committing (called in a thread, under ``guard``) ------------------------------

    def land(self, data: Any, pending: dict[str, dict[str, Any]]) -> str | None:
        """Write ``data`` as the next part file and commit it with ``pending``; its name.

        A failure leaves the committed state as it was: a part file renamed
        into place but not committed is deleted again (best effort; the next
        open deletes it otherwise). The buffer is the caller's to trim.
        """
        saves = self.saves
        files = list(self.files)
        name = None
        number = self.next_number()
        if data is not None:
            name = f"part-{number:06d}.parquet"
            self.folder.write_atomic(name, memoryview(data))
            files.append(name)
            number += 1
        chains = {**self.chains, **pending}
        try:
            self._write_manifest(files, chains, self.forgetting, number)
        except BaseException:
            if name is not None:
                try:
                    self.folder.remove([name])
                except OSError:
                    logger.warning("could not remove uncommitted %s", self.path / name)
            raise
        self.files, self.next = files, number
        self.chains.update(pending)  # in place: a chain's start saved meanwhile stays
        if self.saves == saves:
            self.dirty = False
        return name

    def write_manifest(self) -> None:
        saves = self.saves
        self._write_manifest(self.files, self.chains, self.forgetting, self.next_number())
        if self.saves == saves:
            self.dirty = False

    def _write_manifest(
        self, files: list[str], chains: dict[str, Any], forgetting: dict[str, int], number: int
    ) -> None:
        payload: dict[str, Any] = {"version": 1, "files": files, "chains": chains}
        payload["starts"] = self.starts
        payload["next"] = number
        if forgetting:
            payload["forget"] = forgetting
        self.folder.write_atomic(MANIFEST, orjson.dumps(payload))

    # -- forgetting a chain's current run ----------------------------------------------

    def forget(self, connection: str) -> None:
        """Take the rows of ``connection``'s current run out of the committed files.

        First the intent is committed with the chain's state set back to its
        run's start (so a crash resumes by finishing this, never from the
        rejected cursor); then each file holding such rows is rewritten without
        them (an atomic rename per file; emptied files are deleted); then the
        manifest is committed without the intent. No rows of the chain are
        written meanwhile, so a reader never sees one of its records twice.
        The caller drops the chain's buffered pages first (:meth:`drop`).
        """
        state = self.chains.get(connection)
        start = self.starts.get(connection)
        if start is None:
            fresh = isinstance(state, dict) and not (
                state.get("high_water") or state.get("run_modified_after")
            )
            # A manifest from before runs were marked: a first full run is all there is.
            start = 0 if fresh or state is None else None
        if isinstance(state, dict):
            self.chains[connection] = {**state, "cursor": None, "records": 0}
        if start is None:
            logger.warning(
                "%s: cannot tell which rows of %s its current run wrote; they stay",
                self.path,
                connection,
            )
            self.write_manifest()
            return
        self.forgetting = {**self.forgetting, connection: start}
        self.write_manifest()
        self.finish_forget()

    def finish_forget(self) -> None:
        removed: set[str] = set()
        for connection, start in self.forgetting.items():
            for name in self.files:
                if part_number(name) < start or name in removed:
                    continue
                raw = self.folder.read(name)
                if raw is None:  # emptied and deleted by an interrupted forget
                    removed.add(name)
                    continue
                table = _decode(raw)
                import pyarrow.compute as pc  # noqa: PLC0415

                # ``_connection`` is never null: every row names its connection.
                kept = table.filter(pc.not_equal(table["_connection"], connection))
                if kept.num_rows == table.num_rows:
                    continue
                if kept.num_rows == 0:
                    self.folder.remove([name])
                    removed.add(name)
                else:
                    self.folder.write_atomic(name, memoryview(encode([kept])))
            self.starts[connection] = self.next_number()
        self.next = self.next_number()
        self.files = [f for f in self.files if f not in removed]
        self.forgetting = {}
        self.write_manifest()
