"""A helper process that builds the Parquet sink's Arrow tables on another core.

Building a dict page's table (its typed columns, JSON text, the Arrow
arrays) costs the Parquet sink more than the pull costs to fetch and parse
the page, and in the pull's process it holds the interpreter's lock the pull
needs. So the sink hands each page of a dict pull to one helper process:
the page's records as the API sent them (the JSON texts the pull cut from
the body), the entity, the connection and the request ID. The helper parses
them with the same parser, builds the table with the same code
(:func:`~makini_async.sinks._parquet_schema.page_table`), and sends it back
as an Arrow IPC stream. Nothing else moves: files, the manifest and every
cursor stay with the sink in the pull's process, so what is committed, and
when, is unchanged.

The helper is ``python -m makini_async.sinks._parquet_helper``, not a fork
and not ``multiprocessing``: it imports nothing of the caller's (no main
module run again) and inherits no event loop, socket or thread. It talks
over its standard input and output in length-prefixed frames, answers in
order, and exits when its input closes, which is also what happens when the
pull's process dies, however it dies.

Whatever goes wrong with the helper costs speed, never data: a page it could
not build, or every page outstanding when it died, is built in the pull's
process instead, where a page that cannot be written fails its chain as it
always did.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import struct
import sys
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.sinks._arrow import arrow_pool

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.entities import Entity

__all__ = ["Building", "TableHelper", "cores"]

_ASK: Final = struct.Struct("<II")  # header length, payload length
_ANSWER: Final = struct.Struct("<BI")  # kind, body length
_TABLE: Final = 0
_REFUSED: Final = 1
_READY: Final = 2
#: Bytes the pipe to the helper may hold (Linux ``F_SETPIPE_SZ``): a few pages, not 64 KiB.
_PIPE_SIZE: Final = 1 << 20
_F_SETPIPE_SZ: Final = 1031


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Building:
    """A page the helper is building: its table once built, its records' texts until then.

    The texts (views of the page's body) are all that is kept of the page:
    the parsed records, several times their size, are let go at once. A page
    to be built here is parsed again from them, by the same parser.
    """

    __slots__ = ("connection", "entity", "future", "nbytes_sent", "request_id", "table", "texts")

    def __init__(
        self,
        future: asyncio.Future[Any],
        entity: Entity,
        texts: Sequence[Any],
        connection: str,
        request_id: str | None,
    ) -> None:
        self.future = future
        self.entity = entity
        self.texts: Sequence[Any] | None = texts
        self.connection = connection
        self.request_id = request_id
        self.table: Any = None
        self.nbytes_sent = sum(map(len, texts))

    @property
    def nbytes(self) -> int:
        """Arrow's size once built; the JSON sent until then (what rolls a file)."""
        return self.nbytes_sent if self.table is None else int(self.table.nbytes)

    def take(self) -> bool:
        """Keep the built table and let the texts go; False if it is to be built here."""
        table = self.future.result() if self.future.done() else None
        if table is None:
            return False
        self.table, self.texts = table, None
        return True

    def build_here(self) -> None:
        """Build the table in this process (raises what :func:`page_table` raises)."""
        from makini_async.sinks._parquet_schema import page_table  # noqa: PLC0415

        texts, self.texts = self.texts, None
        records = orjson.loads(b"".join((b"[", b",".join(texts or ()), b"]")))
        self.table = page_table(self.entity, records, [], self.connection, self.request_id)


class TableHelper:
    """One helper process, its pipes, and the pages it is building (in order).

    :meth:`build` returns a future of the page's Arrow table, or of ``None``
    when the page is to be built here (refused by the helper, or the helper
    is gone). ``limit`` pages at most are outstanding: :meth:`build` waits
    for the oldest beyond that, which bounds the memory they hold. A helper
    that keeps a page ``patience`` seconds without an answer (stopped, or
    stuck) is killed, and its pages are built here: a pull never waits on it
    for good.
    """

    def __init__(self, *, limit: int = 8, patience: float = 30.0) -> None:
        self.limit = limit
        self.patience = patience
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._ready = False
        self._gone = False
        self._settled = asyncio.Event()  # ready, or gone
        #: Pages the helper built.
        self.built = 0

    @property
    def usable(self) -> bool:
        """Whether pages go to the helper (it has started and is still there)."""
        return self._ready and not self._gone

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def wait_ready(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until pages go to the helper; whether they do."""
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self.usable

    async def start(self) -> None:
        """Start the process; pages go to it once it says it is ready (a second or so)."""
        if self._process is not None or self._gone:
            return
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=_PIPE_SIZE * 4,  # a table's answer is read in few pieces
                start_new_session=True,  # Ctrl-C is for the pull, which stops it by closing
            )
        except (OSError, ValueError, TypeError):
            self._lost()  # no process to be had (no executable?): every page is built here
            return
        stdin = self._process.stdin
        assert stdin is not None  # noqa: S101 - asked for above
        _widen(stdin.get_extra_info("pipe").fileno())  # pages queue in the pipe, not here
        # The pages outstanding (``limit``) bound what is queued, not the transport.
        stdin.transport.set_write_buffer_limits(high=64 << 20)
        self._reader = asyncio.get_running_loop().create_task(
            self._read(self._process), name="makini-parquet-helper"
        )

    async def build(
        self, entity: Entity, texts: Sequence[Any], connection: str, request_id: str | None
    ) -> asyncio.Future[Any]:
        """Send a page (its records' JSON texts) to be built; the future of its table."""
        while len(self._waiting) >= self.limit and self.usable:
            await self.wait(self._waiting[0])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        process = self._process
        if not self.usable or process is None or process.stdin is None:
            future.set_result(None)
            return future
        head = orjson.dumps([entity.value, connection, request_id])
        items = b",".join(texts)  # a JSON list of the records, in three writes
        try:
            process.stdin.write(_ASK.pack(len(head), len(items) + 2) + head + b"[")
            process.stdin.write(items)
            process.stdin.write(b"]")
        except (OSError, RuntimeError):  # the pipe closed: the helper is gone
            self._lost()
            future.set_result(None)
            return future
        self._waiting.append(future)
        return future

    async def wait(self, future: asyncio.Future[Any]) -> None:
        """Wait for a page's answer; a helper silent for ``patience`` seconds is given up."""
        done, _ = await asyncio.wait([future], timeout=self.patience)
        if not done:
            self._give_up()

    def _give_up(self) -> None:
        """Kill the helper (it stopped answering): its pages resolve to be built here."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        self._lost()

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        import pyarrow as pa  # noqa: PLC0415 - the optional extra

        pool = arrow_pool()
        out = process.stdout
        assert out is not None  # noqa: S101
        try:
            while True:
                kind, size = _ANSWER.unpack(await out.readexactly(_ANSWER.size))
                body = await out.readexactly(size) if size else b""
                if kind == _READY:
                    self._ready = True
                    self._settled.set()
                    continue
                future = self._waiting.popleft()
                table = None
                if kind == _TABLE:
                    table = pa.ipc.open_stream(body, memory_pool=pool).read_all()
                    self.built += 1
                if not future.done():
                    future.set_result(table)
        except (asyncio.IncompleteReadError, OSError, IndexError, struct.error, pa.ArrowException):
            pass  # gone, or saying what it should not: its pages are built here
        finally:
            self._lost()

    def _lost(self) -> None:
        self._gone = True
        self._settled.set()
        waiting, self._waiting = self._waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """Close its input (it exits), wait for it, and build nothing more there."""
        process, self._process = self._process, None
        self._gone = True
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except (TimeoutError, asyncio.TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        finally:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            self._lost()


# -- the helper process -------------------------------------------------------------


def _widen(fd: int) -> None:
    """Let a pipe hold a few pages (Linux only; elsewhere it keeps its size)."""
    with contextlib.suppress(OSError, ImportError):
        import fcntl  # noqa: PLC0415 - POSIX only; the size is a nicety

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


def _read_exactly(stream: Any, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def main() -> None:
    """Build tables until the input closes (the sink closed it, or its process died)."""
    import signal  # noqa: PLC0415

    import pyarrow as pa  # noqa: PLC0415 - the optional extra

    from makini_async.entities import Entity  # noqa: PLC0415
    from makini_async.sinks._parquet_schema import page_table  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # This process is the sink's own: the sinks' allocator is its default.
    pa.set_memory_pool(arrow_pool())
    # The frames get their own descriptor; anything printed goes to standard error.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _widen(out.fileno())
    given = sys.stdin.buffer

    def answer(kind: int, body: Any) -> None:
        out.write(_ANSWER.pack(kind, len(body)))
        out.write(body)
        out.flush()

    answer(_READY, b"")
    while True:
        header = _read_exactly(given, _ASK.size)
        if header is None:
            return
        head_size, payload_size = _ASK.unpack(header)
        head = _read_exactly(given, head_size)
        payload = _read_exactly(given, payload_size)
        if head is None or payload is None:
            return
        try:
            entity, connection, request_id = orjson.loads(head)
            table = page_table(Entity(entity), orjson.loads(payload), [], connection, request_id)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            answer(_TABLE, sink.getvalue())
        except Exception:  # noqa: BLE001 - the sink builds this page itself and says why
            answer(_REFUSED, b"")


if __name__ == "__main__":
    main()
