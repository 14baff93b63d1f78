"""Parquet writes that fail for real: a full file system, a file too large, a second writer.

Faults come from the operating system: a tiny tmpfs filled up (needs root to
mount; skipped otherwise), ``RLIMIT_FSIZE`` in a child process (``EFBIG``),
and a second sink or process on the same directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow.parquet as pq
import pytest

from makini_async import MakiniPool, PageSizes, SinkError, SinkUnavailable, set_testing
from makini_async.bulk import Outcome
from makini_async.entities import Entity
from makini_async.sinks import ParquetSink
from makini_async.testing import MockMakini
from tests.fakes import overlap_ids

from .test_cli import run_cli, server, write_tokens

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["server"]  # the fixture, shared with test_cli

N = 10
RECORDS = 200
NAMED = [(f"site-{i}", f"tok-secret-durable-{i:02d}") for i in range(N)]
SIZES = PageSizes({"assets": 20})


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, to fill up."""
    where = tmp_path / "fs"
    where.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)  # noqa: S607


def _fill(where: Path) -> Path:
    """Take every free byte of ``where``'s file system; the file that holds them."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 1):  # then the last page, byte by byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _expected(server: MockMakini) -> set[tuple[str, str]]:
    return {(name, r["id"]) for name, token in NAMED for r in server.records(token, "assets")}


def _landed(directory: Path) -> Counter[tuple[str, str]]:
    """Each (connection, id) as a reader of the dataset sees it (the documented way)."""
    rows = pq.read_table(directory / "assets", columns=["_connection", "id"]).to_pylist()
    return Counter((r["_connection"], r["id"]) for r in rows)


async def _pull(server: MockMakini, sink: ParquetSink) -> Any:
    async with (
        MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
        pool.pull("assets", NAMED, sink=sink, concurrency=N) as pull,
    ):
        await pull.run()
    return pull.report


async def test_a_full_disk_is_waited_out_and_every_record_lands_once(
    tiny_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    set_testing(True)
    waits: list[float] = []
    filler: list[Path] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            filler.pop().unlink()  # space is freed while the sink waits
        await asyncio.sleep(0)

    async with MockMakini(records_per_entity=RECORDS) as server:
        sink = ParquetSink(tiny_fs / "pq", file_size=30_000, sleep=sleep)
        async with (
            MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("assets", NAMED, sink=sink, concurrency=N) as pull,
        ):
            async for _page in pull.pages():
                if not filler and not waits:
                    filler.append(_fill(tiny_fs))  # the disk is full from the first page
        want = _expected(server)
    assert pull.report.ok
    assert len(waits) >= 3
    assert sink.disk_retries == len(waits)
    assert waits == sorted(waits)  # backing off
    assert "No space left on device; retrying for up to 120 s" in caplog.text
    landed = _landed(tiny_fs / "pq")
    assert set(landed) == want
    assert max(landed.values()) == 1


async def test_a_disk_that_stays_full_ends_with_sink_unavailable_and_loses_nothing(
    tiny_fs: Path,
) -> None:
    set_testing(True)
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    filler: list[Path] = []
    async with MockMakini(records_per_entity=RECORDS) as server:
        sink = ParquetSink(
            tiny_fs / "pq", file_size=30_000, sleep=sleep, clock=lambda: now[0], retry_deadline=30
        )
        raised = None
        async with (
            MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("assets", NAMED, sink=sink, concurrency=N) as pull,
        ):
            try:
                async for _page in pull.pages():
                    if not filler:
                        filler.append(_fill(tiny_fs))
            except SinkUnavailable as exc:
                raised = exc
        failures = [c.error for c in pull.report.chains if c.outcome is Outcome.FAILED]
        causes = [e for e in [raised, *failures] if isinstance(e, SinkUnavailable)]
        assert causes, "the full disk must be reported as the sink being unavailable"
        assert "No space left on device" in str(causes[0])
        # Waited until the next wait would pass the deadline, and not again at close.
        assert 20 <= now[0] <= 30
        # Space comes back: a plain rerun lands every record, each once.
        filler[0].unlink()
        report = await _pull(server, ParquetSink(tiny_fs / "pq", file_size=30_000))
        want = _expected(server)
    assert report.ok
    landed = _landed(tiny_fs / "pq")
    assert set(landed) == want
    assert max(landed.values()) == 1


EFBIG_CHILD = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from makini_async import MakiniPool, PageSizes, set_testing
    from makini_async.sinks import ParquetSink

    async def main(url, where, limit, names):
        set_testing(True)
        if limit:
            # Files larger than this fail with EFBIG: a write no retry will cure.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        named = [(f"site-{i}", f"tok-secret-durable-{i:02d}") for i in range(names)]
        sink = ParquetSink(where, file_size=30_000)
        async with MakiniPool(base_url=url, as_dicts=True,
                              page_sizes=PageSizes({"assets": 20})) as pool:
            async with pool.pull("assets", named, sink=sink, concurrency=names) as pull:
                await pull.run()
        for chain in pull.report.chains:
            print(chain.connection, chain.outcome.value, type(chain.error).__name__)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


async def _child(server: MockMakini, where: Path, limit: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [sys.executable, "-c", EFBIG_CHILD, server.url, str(where), str(limit), str(N)]
    child = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, err.decode()
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.decode().splitlines()}


async def test_a_file_too_large_fails_only_its_chain_and_a_rerun_lands_everything(
    tmp_path: Path,
) -> None:
    where = tmp_path / "pq"
    async with MockMakini(records_per_entity=RECORDS) as server:
        # One customer's record is huge (incompressible): a file holding it passes the limit.
        big_token = NAMED[3][1]
        first = server.records(big_token, "assets")[50]["id"]
        server.update(big_token, "assets", first, {"name": secrets.token_hex(300_000)})
        outcomes = await _child(server, where, limit=200_000)
        assert outcomes["site-3"] == "failed SinkError"
        assert all(outcomes[name] == "completed NoneType" for name, _ in NAMED if name != "site-3")
        # Nothing any chain committed is missing, and the failed chain is resumable.
        manifest = orjson.loads((where / "assets" / "_manifest.json").read_bytes())
        assert manifest["chains"]["site-3"]["in_progress"]
        outcomes = await _child(server, where, limit=0)  # the clean rerun
        assert set(outcomes.values()) == {"completed NoneType"}
        want = _expected(server)
        again = overlap_ids(server.records(NAMED[0][1], "assets"))
    landed = _landed(where)
    assert set(landed) == want  # on the old code, other chains' pages were gone for good
    # Each record once, but for what the completed chains' incremental rerun brought again.
    assert {rid for (_c, rid), n in landed.items() if n > 1} <= again
    assert max(landed.values()) <= 2


# -- one writer per directory -----------------------------------------------------------


async def test_a_second_sink_on_the_same_directory_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = ParquetSink(tmp_path / "pq")
    await first.open([Entity.ASSETS])
    second = ParquetSink(tmp_path / "pq")
    with pytest.raises(
        SinkError, match=r"Parquet directory .*pq is in use by another pull"
    ) as info:
        await second.open([Entity.ASSETS])
    assert f"process {os.getpid()}" in str(info.value)
    await first.close()
    await second.open([Entity.ASSETS])
    await second.close()


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from makini_async.entities import Entity
    from makini_async.sinks import ParquetSink

    async def main(where):
        sink = ParquetSink(where)
        await sink.open([Entity.ASSETS])
        print("open", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent lets go
        await sink.close()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(tmp_path / "pq"),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert await asyncio.wait_for(child.stdout.readline(), 60) == b"open\n"
    sink = ParquetSink(tmp_path / "pq")
    with pytest.raises(SinkError, match=f"in use by another pull \\(process {child.pid}\\)"):
        await sink.open([Entity.ASSETS])
    child.kill()  # a writer that dies releases the lock with it
    await child.wait()
    child.stdin.close()
    await sink.open([Entity.ASSETS])
    await sink.close()
    assert (tmp_path / "pq" / ".makini.lock").exists()


def test_transient_errors_are_the_ones_a_wait_can_cure() -> None:
    from makini_async.sinks._disk import is_transient

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR):
        assert is_transient(OSError(code, os.strerror(code)))
    for code in (errno.EACCES, errno.EROFS, errno.EFBIG, errno.ENOENT, errno.ELOOP):
        assert not is_transient(OSError(code, os.strerror(code)))


async def test_the_command_stops_a_second_pull_into_a_parquet_directory(
    server: MockMakini, tmp_path: Path
) -> None:
    holder = ParquetSink(tmp_path / "lake")
    await holder.open([Entity.ASSETS])
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, _, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
        "--sink", f"parquet:{tmp_path / 'lake'}",
    )  # fmt: skip
    await holder.close()
    assert code == 2, stderr
    assert f"Parquet directory {tmp_path / 'lake'} is in use by another pull" in stderr
    assert "Traceback" not in stderr
