"""A chain started again (its cursor rejected): the Parquet sink forgets what its run landed.

A reader who reads the dataset as the documentation says
(``pyarrow.parquet.read_table(DIR/ENTITY)``) never sees that chain's records
twice, the chain's earlier runs stay, and a forget killed at any point is
finished on the next open.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from makini_async.bulk import PulledPage
from makini_async.bulk._sink import forget
from makini_async.checkpoint import ChainState
from makini_async.entities import Entity
from makini_async.sinks import JsonLinesSink, ParquetSink
from makini_async.testing import MockMakini

DATA = MockMakini(records_per_entity=100)
A, B = "site-a", "site-b"


def _records(connection: str) -> list[dict[str, Any]]:
    return DATA.records(f"tok-{connection}", "assets")


async def _land(
    sink: ParquetSink, connection: str, start: int, stop: int, *, last: bool = False
) -> None:
    """Write records [start, stop) of a chain in pages of 10, each with its state."""
    records = _records(connection)
    for first in range(start, stop, 10):
        end = min(first + 10, stop)
        done = last and end == stop
        cursor = None if done else f"c{end}"
        state = (
            ChainState(high_water="2024-06-01T00:00:00Z")
            if done
            else ChainState(in_progress=True, cursor=cursor, records=end)
        )
        page = PulledPage(connection, Entity.ASSETS, records[first:end], None, cursor, f"r{end}")
        await sink.write(page, state)


def _start(sink: ParquetSink, connection: str, **fields: Any) -> None:
    sink.checkpoint_store.save(connection, "assets", ChainState(in_progress=True, **fields))


def _seen(directory: Path) -> Counter[tuple[str, str]]:
    rows = pq.read_table(directory / "assets", columns=["_connection", "id"]).to_pylist()
    return Counter((r["_connection"], r["id"]) for r in rows)


def _ids(connection: str, start: int, stop: int) -> set[tuple[str, str]]:
    return {(connection, r["id"]) for r in _records(connection)[start:stop]}


async def test_forget_takes_out_the_current_run_and_a_restart_lands_each_record_once(
    tmp_path: Path,
) -> None:
    where = tmp_path / "pq"
    # A first run: both chains complete.
    sink = ParquetSink(where, file_size=8_000)
    await sink.open([Entity.ASSETS])
    _start(sink, A)
    _start(sink, B)
    await _land(sink, A, 0, 40, last=True)
    await _land(sink, B, 0, 40, last=True)
    await sink.close()
    # An incremental run: A lands 50 records, some committed, some still buffered...
    sink = ParquetSink(where, file_size=8_000)
    await sink.open([Entity.ASSETS])
    _start(sink, A, run_modified_after="2024-06-01T00:00:00Z")
    _start(sink, B, run_modified_after="2024-06-01T00:00:00Z")
    await _land(sink, A, 40, 90)
    await _land(sink, B, 40, 60)
    landed = set(_seen(where))
    assert _ids(A, 40, 60) <= landed  # committed files hold part of A's run
    assert sink.entity_dir("assets").pages  # and pages are still buffered
    # ... then the API rejects A's cursor: the pull forgets A's run before restarting it.
    await forget(sink, A, Entity.ASSETS)
    seen = _seen(where)
    assert {k for k in seen if k[0] == A} == _ids(A, 0, 40)  # the earlier run stays
    assert {k for k in seen if k[0] == B} == {k for k in landed if k[0] == B}
    state = sink.checkpoint_store.load(A, "assets")
    assert state is not None
    assert (state.in_progress, state.cursor, state.records) == (True, None, 0)
    # A starts again from its run's beginning and completes.
    _start(sink, A, run_modified_after="2024-06-01T00:00:00Z")
    await _land(sink, A, 40, 100, last=True)
    await _land(sink, B, 60, 100, last=True)
    await sink.close()
    seen = _seen(where)
    assert set(seen) == _ids(A, 0, 100) | _ids(B, 0, 100)
    assert max(seen.values()) == 1
    manifest = orjson.loads((where / "assets" / "_manifest.json").read_bytes())
    assert "forget" not in manifest
    assert sorted(p.name for p in (where / "assets").glob("part-*")) == sorted(manifest["files"])


async def test_forget_before_anything_landed_and_for_a_first_run(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq", file_size=8_000)
    await sink.open([Entity.ASSETS])
    await sink.forget(A, Entity.ASSETS)  # nothing of A: nothing changes
    _start(sink, A)
    _start(sink, B)
    await _land(sink, A, 0, 30)
    await _land(sink, B, 0, 30)
    await sink.forget(A, Entity.ASSETS)
    await sink.close()
    seen = _seen(tmp_path / "pq")
    assert set(seen) == _ids(B, 0, 30)


async def test_json_lines_has_no_forget_it_is_at_least_once(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path)
    await sink.open([Entity.ASSETS])
    await forget(sink, A, Entity.ASSETS)  # a no-op: the restarted chain's lines come again
    await sink.close()
    assert not hasattr(sink, "forget")


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from makini_async.entities import Entity
    from makini_async.sinks import ParquetSink

    async def main(where):
        sink = ParquetSink(where)
        await sink.open([Entity.ASSETS])
        print("forgetting", flush=True)
        await sink.forget("site-a", Entity.ASSETS)
        await sink.close()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_forget_killed_at_any_point_shows_no_record_twice_and_finishes_on_open(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    sink = ParquetSink(base, file_size=2_000)  # many small files, each with both chains
    await sink.open([Entity.ASSETS])
    _start(sink, A)
    _start(sink, B)
    for first in range(0, 100, 10):
        await _land(sink, A, first, first + 10)
        await _land(sink, B, first, first + 10)
    await sink.close()
    before = _seen(base)
    files = len(list((base / "assets").glob("part-*")))
    assert files >= 20
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(7)
    interrupted = 0
    for trial in range(6):
        where = tmp_path / f"trial-{trial}"
        shutil.copytree(base, where)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(where), env=env, stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 60) == b"forgetting\n"
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
        # What a reader sees at the kill: never a record twice, all of B, part of A.
        seen = _seen(where)
        assert max(seen.values()) == 1
        assert _ids(B, 0, 100) <= set(seen) <= set(before)
        a_left = sum(1 for k in seen if k[0] == A)
        manifest = orjson.loads((where / "assets" / "_manifest.json").read_bytes())
        if 0 < a_left < 100 or "forget" in manifest:
            interrupted += 1
        # The next open finishes the forget: A's run is gone, B whole, A starts over.
        sink = ParquetSink(where)
        await sink.open([Entity.ASSETS])
        state = sink.checkpoint_store.load(A, "assets")
        await sink.close()
        assert set(_seen(where)) == _ids(B, 0, 100) or a_left == 100
        if a_left < 100 or "forget" in manifest:
            assert set(_seen(where)) == _ids(B, 0, 100)
            assert state is not None
            assert state.cursor is None
    assert interrupted >= 1  # at least one kill landed in the middle of a forget


async def test_a_forget_while_other_chains_commit_keeps_every_one_of_their_pages(
    tmp_path: Path,
) -> None:
    sink = ParquetSink(tmp_path / "pq", file_size=1_000)  # a commit every page
    await sink.open([Entity.ASSETS])
    _start(sink, A)
    _start(sink, B)
    for first in range(0, 100, 10):  # files holding both chains: each one rewritten
        await _land(sink, A, first, first + 10)
        await _land(sink, B, first, first + 10)
    # The chain's worker forgets while the consumer lands another chain's pages.
    _start(sink, "site-c")
    await asyncio.gather(sink.forget(A, Entity.ASSETS), _land(sink, "site-c", 0, 100, last=True))
    await sink.close()
    manifest = orjson.loads((tmp_path / "pq" / "assets" / "_manifest.json").read_bytes())
    on_disk = sorted(p.name for p in (tmp_path / "pq" / "assets").glob("part-*"))
    assert sorted(manifest["files"]) == on_disk  # every file committed, none lost from the list
    seen = _seen(tmp_path / "pq")
    assert set(seen) == _ids(B, 0, 100) | _ids("site-c", 0, 100)
    assert max(seen.values()) == 1
