"""The Parquet sink's helper process: the same files, whatever happens to it.

A dict page's Arrow table is built in a helper process from the records'
JSON texts (:mod:`makini_async.sinks._parquet_helper`). These tests pull
realistic records from the mock and check that the files are the ones the
pull's own process writes, that a helper killed mid-pull costs nothing but
speed, that a page nobody can write ends only its chain, and that the helper
of a pull killed with SIGKILL goes with it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from makini_async import MakiniPool, PageSizes, set_testing
from makini_async.entities import Entity
from makini_async.errors import SinkError
from makini_async.sinks import ParquetSink
from makini_async.sinks._parquet import HELPER_AFTER_RECORDS
from makini_async.sinks._parquet_helper import cores
from makini_async.testing import MockMakini

NAMED = [(f"plant-{i}", f"tok-secret-helper-{i:02d}-{'q' * 8}") for i in range(4)]
SIZES = PageSizes({"work-orders": 25})


def _rows(directory: Path) -> list[dict[str, Any]]:
    """Every row, in (connection, id) order, less the request ID (each pull has its own)."""
    rows = pq.read_table(directory / "work-orders").drop_columns(["_request_id"]).to_pylist()
    return sorted(rows, key=lambda r: (r["_connection"], r["id"]))


async def _pull(
    server: MockMakini,
    sink: ParquetSink,
    *,
    kill_after: int | None = None,
    how: signal.Signals = signal.SIGKILL,
) -> Any:
    """A dict pull of work orders into ``sink``, its helper ready first; the report.

    ``kill_after`` pages, the helper gets the signal ``how``.
    """
    await sink.open([Entity.WORK_ORDERS])
    helper = sink.helper
    if helper is not None:
        assert await helper.wait_ready(60), "the helper never started"
        helper.patience = 1.0
    written = 0
    original = sink.write

    async def write(page: Any, state: Any) -> None:
        nonlocal written
        await original(page, state)
        written += 1
        if written == kill_after and helper is not None and helper.pid is not None:
            os.kill(helper.pid, how)

    sink.write = write  # type: ignore[method-assign]
    async with (
        MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
        pool.pull("work-orders", NAMED, sink=sink) as pull,
    ):
        await asyncio.wait_for(pull.run(), 60)  # a pull waiting on its helper fails, not hangs
    return pull.report


async def test_the_helper_writes_the_files_this_process_writes(tmp_path: Path) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=150, shape="realistic", unreadable=0.05, seed=4) as s:
        here = ParquetSink(tmp_path / "here", helper=False)
        report = await _pull(s, here)
        assert report.ok, report.summary()
        helped = ParquetSink(tmp_path / "helped", helper=True)
        report = await _pull(s, helped)
        assert report.ok, report.summary()
    assert here.helper_pages == 0
    assert helped.helper_pages > 0  # pages did go to the helper
    expected = _rows(tmp_path / "here")
    assert len(expected) == 4 * 150
    assert _rows(tmp_path / "helped") == expected  # every column of every row
    # Records that do not fit their model are set apart the same way (the mock's unreadable).
    assert any(r["_invalid_reason"] for r in expected)


@pytest.mark.skipif(cores() < 2, reason="the helper is left off on one core")
async def test_left_to_itself_the_sink_starts_a_helper_only_for_a_pull_long_enough(
    tmp_path: Path,
) -> None:
    set_testing(True)
    started: list[bool] = []

    async def pull(records: int, where: str) -> ParquetSink:
        sink = ParquetSink(tmp_path / where)  # helper=None: the sink decides
        original = sink.write

        async def write(page: Any, state: Any) -> None:
            await original(page, state)
            started.append(sink.helper is not None)

        sink.write = write  # type: ignore[method-assign]
        async with (
            MockMakini(records_per_entity=records, seed=3) as s,
            MakiniPool(base_url=s.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("work-orders", NAMED, sink=sink) as p,
        ):
            await p.run()
            assert p.report.ok, p.report.summary()
        return sink

    await pull(100, "short")  # 400 records in all
    assert started
    assert not any(started)
    started.clear()
    per = HELPER_AFTER_RECORDS // len(NAMED) + 100
    await pull(per, "long")
    seen = [25 * (n + 1) for n in range(len(started))]  # 25-record pages
    first = started.index(True)
    assert seen[first] >= HELPER_AFTER_RECORDS > seen[first - 1]  # started once 2,000 came
    assert all(started[first:])
    assert len(_rows(tmp_path / "long")) == len(NAMED) * per


async def test_a_helper_killed_mid_pull_costs_nothing_but_speed(tmp_path: Path) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=150, shape="realistic", seed=5) as s:
        sink = ParquetSink(tmp_path / "p", helper=True, file_size=60_000)
        report = await _pull(s, sink, kill_after=3)
        assert report.ok, report.summary()
        assert report.records == 4 * 150
    rows = _rows(tmp_path / "p")
    keys = [(r["_connection"], r["id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 150  # every record once
    assert sink.helper_pages >= 1


async def test_a_helper_that_stops_answering_is_given_up_not_waited_for(tmp_path: Path) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=150, shape="realistic", seed=8) as s:
        sink = ParquetSink(tmp_path / "p", helper=True)
        report = await _pull(s, sink, kill_after=2, how=signal.SIGSTOP)
        assert report.ok, report.summary()
    rows = _rows(tmp_path / "p")
    keys = [(r["_connection"], r["id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 150  # every record once
    assert sink.helper_pages < 4 * 150 // 25  # the pages it held were built here


async def test_a_page_nobody_can_write_ends_only_its_chain(tmp_path: Path) -> None:
    """A record nested deeper than orjson writes: the helper cannot, nor can this process."""
    set_testing(True)
    deep = b'{"x":' * 300 + b'"bottom"' + b"}" * 300  # orjson reads 1,024 levels, writes 254
    async with MockMakini(records_per_entity=100, seed=6) as s:
        original = s.list_page

        def list_page(conn: Any, entity: Entity, query: Any, request_id: str) -> Any:
            from makini_async.testing._answers import _Answer

            answer = original(conn, entity, query, request_id)
            if answer.status != 200 or conn.token != NAMED[1][1] or query.get("cursor"):
                return answer
            body = orjson.loads(answer.body)
            body["data"][0]["custom_fields"] = {"deep": "DEEP"}
            return _Answer(200, orjson.dumps(body).replace(b'"DEEP"', deep, 1))

        s.list_page = list_page  # type: ignore[method-assign]
        sink = ParquetSink(tmp_path / "p", helper=True)
        report = await _pull(s, sink)
    failed = [c for c in report.chains if c.error is not None]
    assert [c.connection for c in failed] == [NAMED[1][0]]
    assert isinstance(failed[0].error, SinkError)
    assert "cannot write work-orders record" in str(failed[0].error)
    rows = _rows(tmp_path / "p")
    landed = {r["_connection"] for r in rows}
    assert landed == {NAMED[0][0], NAMED[2][0], NAMED[3][0]}
    assert len(rows) == 3 * 100


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from makini_async import MakiniPool, PageSizes, set_testing
    from makini_async.entities import Entity
    from makini_async.sinks import ParquetSink

    async def main(url, where):
        set_testing(True)
        sink = ParquetSink(where, helper=True)
        await sink.open([Entity.WORK_ORDERS])
        assert await sink.helper.wait_ready(60)
        print(sink.helper.pid, flush=True)
        tokens = [(f"plant-{i}", f"tok-secret-{i:04d}") for i in range(50)]
        async with MakiniPool(base_url=url, as_dicts=True,
                              page_sizes=PageSizes({"work-orders": 5})) as pool:
            async with pool.pull("work-orders", tokens, sink=sink) as pull:
                async for _page in pull.pages():
                    await asyncio.sleep(0.05)  # slow: killed long before the end

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent, the killed pull, cannot reap it).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_the_helper_of_a_killed_pull_goes_with_it(tmp_path: Path) -> None:
    async with MockMakini(records_per_entity=400, seed=7) as s:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            s.url,
            str(tmp_path / "p"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert child.stdout is not None
            helper = int(await asyncio.wait_for(child.stdout.readline(), 60))
            assert _alive(helper)
            child.kill()
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        assert await asyncio.to_thread(_gone, helper, 20), "the helper outlived its pull"
