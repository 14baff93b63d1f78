"""Kill -9 at random points, resume each time: what lands in each database sink is exact."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from makini_async.testing import FaultPlan, MockMakini

from .pgutil import fetch, parquet_rows, states

N_CONNECTIONS = 100
RECORDS = 120
ENTITIES = ("work-orders", "assets")
KILLS = 5

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from makini_async import MakiniPool, PageSizes, set_testing
    from makini_async.sinks import DuckDBSink, ParquetSink, PostgresSink

    async def main(url, where, ready, first, count):
        set_testing(True)
        tokens = [(f"plant-{i:03d}", f"tok-secret-{i:04d}") for i in range(first, first + count)]
        if where.startswith("postgresql://"):
            sink = PostgresSink(where)
        elif where.endswith(".duckdb"):
            sink = DuckDBSink(where, max_batch_rows=500)  # small batches: many commits
        else:
            sink = ParquetSink(where, file_size=48_000)  # many small files: many commits
        sizes = PageSizes({"work-orders": 20, "assets": 20})
        async with MakiniPool(base_url=url, as_dicts=True, page_sizes=sizes) as pool:
            async with pool.pull(["work-orders", "assets"], tokens, sink=sink,
                                 concurrency=16) as pull:
                async for _page in pull.pages():
                    Path(ready).touch()
        sys.exit(0 if pull.report.ok else 1)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    """
)


def _tokens() -> list[str]:
    return [f"tok-secret-{i:04d}" for i in range(N_CONNECTIONS)]


def _expected(server: MockMakini) -> dict[tuple[str, str, str], str]:
    """(connection, entity, id) -> updated_at, as the server holds them."""
    out = {}
    for i, token in enumerate(_tokens()):
        for entity in ENTITIES:
            for record in server.records(token, entity):
                out[(f"plant-{i:03d}", entity, record["id"])] = record["updated_at"]
    return out


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _kill_and_resume(server: MockMakini, where: str, tmp_path: Path, seed: int) -> int:
    """Start the pull, SIGKILL it at random points KILLS times, then let it finish."""
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    ready = tmp_path / "ready"
    killed = 0
    for _attempt in range(KILLS + 1):
        ready.unlink(missing_ok=True)
        args = [sys.executable, "-c", CHILD, server.url, where, str(ready), "0", str(N_CONNECTIONS)]
        child = await asyncio.create_subprocess_exec(*args, env=env)
        if killed < KILLS:
            while not ready.exists() and child.returncode is None:  # noqa: ASYNC110 - a file, polled
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # somewhere in the middle of the pull
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)
                if await child.wait() == -signal.SIGKILL:
                    killed += 1
                    continue
        assert await asyncio.wait_for(child.wait(), 120) == 0
        break
    return killed


async def test_postgres_sink_exact_after_repeated_sigkill(tmp_path: Path, pg_dsn: str) -> None:
    plan = FaultPlan(seed=3, error_503=0.03, drop=0.01, truncate=0.01)
    async with MockMakini(records_per_entity=RECORDS, faults=plan) as server:
        killed = await _kill_and_resume(server, pg_dsn, tmp_path, seed=11)
        want = _expected(server)
    assert killed == KILLS
    got: dict[tuple[str, str, str], dt.datetime] = {}
    duplicates = 0
    for entity in ENTITIES:
        table = "makini_" + entity.replace("-", "_")
        rows = await fetch(pg_dsn, f"SELECT connection, id, updated_at, record FROM {table}")  # noqa: S608
        keys = Counter((r["connection"], r["id"]) for r in rows)
        duplicates += sum(n - 1 for n in keys.values())
        for row in rows:
            got[(row["connection"], entity, row["id"])] = row["updated_at"]
    missing = set(want) - set(got)
    older = [k for k, when in got.items() if k in want and when < _when(want[k])]
    assert (len(missing), duplicates, len(older)) == (0, 0, 0)
    assert set(got) == set(want)
    # Every chain's row says complete, keyed by name; no token anywhere in the state.
    chain_states = await states(pg_dsn)
    assert len(chain_states) == N_CONNECTIONS * len(ENTITIES)
    assert all(not s["in_progress"] and s["high_water"] for s in chain_states.values())
    assert not any("tok-secret" in repr(s) for s in chain_states.items())


async def test_duckdb_sink_exact_after_repeated_sigkill(tmp_path: Path) -> None:
    import duckdb

    where = tmp_path / "warehouse.duckdb"
    plan = FaultPlan(seed=5, error_503=0.03, drop=0.01, truncate=0.01)
    async with MockMakini(records_per_entity=RECORDS, faults=plan) as server:
        killed = await _kill_and_resume(server, str(where), tmp_path, seed=13)
        want = _expected(server)
    assert killed == KILLS
    db = duckdb.connect(str(where), read_only=True)
    try:
        got: dict[tuple[str, str, str], dt.datetime] = {}
        duplicates = 0
        for entity in ENTITIES:
            table = "makini_" + entity.replace("-", "_")
            rows = db.execute(f"SELECT connection, id, updated_at FROM {table}").fetchall()  # noqa: S608
            keys = Counter((r[0], r[1]) for r in rows)
            duplicates += sum(n - 1 for n in keys.values())
            for connection, rid, updated in rows:
                got[(connection, entity, rid)] = updated
        chain_states = db.execute("SELECT state FROM makini_checkpoints").fetchall()
    finally:
        db.close()
    missing = set(want) - set(got)
    older = [k for k, when in got.items() if k in want and when < _when(want[k])]
    assert (len(missing), duplicates, len(older)) == (0, 0, 0)
    assert set(got) == set(want)
    assert len(chain_states) == N_CONNECTIONS * len(ENTITIES)
    assert all(not orjson.loads(s)["in_progress"] for (s,) in chain_states)
    assert not any("tok-secret" in s for (s,) in chain_states)


async def test_parquet_sink_exact_after_repeated_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    plan = FaultPlan(seed=4, error_503=0.03, drop=0.01, truncate=0.01)
    async with MockMakini(records_per_entity=RECORDS, faults=plan) as server:
        killed = await _kill_and_resume(server, str(out), tmp_path, seed=12)
        want = _expected(server)
    assert killed == KILLS
    keys: Counter[tuple[str, str, str]] = Counter()
    for entity in ENTITIES:
        directory = out / entity
        on_disk = sorted(p.name for p in directory.iterdir())
        # No temporary or uncommitted file is left behind.
        assert not [n for n in on_disk if n.endswith(".tmp")]
        rows = parquet_rows(directory)
        committed = [n for n in on_disk if n.startswith("part-")]
        manifest = orjson.loads((directory / "_manifest.json").read_bytes())
        assert sorted(committed) == sorted(manifest["files"])
        for name in committed:
            assert pq.ParquetFile(directory / name).metadata.num_rows > 0  # whole, readable
        for row in rows:
            assert row["_invalid_reason"] is None
            keys[(row["_connection"], entity, row["id"])] += 1
            assert row["updated_at"] == _when(want[(row["_connection"], entity, row["id"])])
    # Every record present, and no page committed twice: each record exactly once, but for
    # what a chain that had completed before a kill ran again incrementally, the overlap
    # (records within 300 s of its newest, appended again: read the newest per id).
    assert set(keys) == set(want)
    newest: dict[tuple[str, str], dt.datetime] = {}
    for (name, entity, _id), when in want.items():
        newest[name, entity] = max(newest.get((name, entity), _when(when)), _when(when))
    again = {k: n for k, n in keys.items() if n > 1}
    overlap = dt.timedelta(seconds=300)
    assert all(_when(want[k]) >= newest[k[0], k[1]] - overlap for k in again)
    assert max(keys.values()) <= KILLS + 1
