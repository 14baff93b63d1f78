"""Sinks and checkpoint stores: what landing records durably costs.

Two measurements, both against the mock server in its own process:

1. **records/s into each sink** against the same pull handing its pages to a
   no-op consumer (``pull.pages()`` and nothing else). Every contender pulls
   the same connections and records, dicts, on a fresh database or directory,
   in rounds interleaved so that drift hits every contender alike.
2. **checkpoint cost per page at 100,000 chains** for each store: the store
   is first filled with 100,000 chains, then the time of one page's save
   (``save`` of one chain's new cursor) is measured over many pages. The JSON
   store rewrites its whole file at most every ``flush_interval`` (1 s): its
   cost per page is the rewrite spread over the pages of that second, so it
   is measured over whole seconds of saves and reported with the rewrite.

::

    python -m benchmarks.sinks                    # 3 rounds, 40 connections x 2,500 records
    python -m benchmarks.sinks --quick            # 1 round, small
    python -m benchmarks.sinks --chains 100000 --skip-sinks

Needs the test extra (pyarrow, asyncpg, pgserver: PostgreSQL is started here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import mock_server
from makini_async import MakiniPool
from makini_async.checkpoint import ChainState, JSONCheckpoint, SQLiteCheckpoint
from makini_async.checkpoint_postgres import PostgresCheckpoint
from makini_async.sinks import JsonLinesSink, ParquetSink, PostgresSink

ENTITY = "work-orders"


def start_postgres(root: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(root / "pgdata", cleanup_mode="stop")


def fresh_dsn(server: Any, name: str) -> str:
    server.psql(f"SET client_min_messages = warning; DROP DATABASE IF EXISTS {name};")
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri().replace("/postgres?", f"/{name}?", 1)


async def one_pull(url: str, connections: int, contender: str, work: Path, pg: Any) -> float:
    tokens = [(f"plant-{i:04d}", f"tok-bench-{i:04d}") for i in range(connections)]
    sink: Any = None
    checkpoint: Any = None
    if contender == "jsonl":
        sink = JsonLinesSink(work / "jsonl", append=False)
    elif contender == "jsonl+sqlite":
        sink = JsonLinesSink(work / "jsonl-sq", append=False)
        checkpoint = work / "jsonl-sq.sqlite"
    elif contender == "parquet":
        sink = ParquetSink(work / "parquet")
    elif contender == "postgresql":
        sink = PostgresSink(fresh_dsn(pg, "bench"))
    async with MakiniPool(base_url=url, as_dicts=True) as pool:
        started = time.perf_counter()
        records = 0
        async with pool.pull(ENTITY, tokens, sink=sink, checkpoint=checkpoint) as pull:
            async for page in pull.pages():
                records += len(page)
        elapsed = time.perf_counter() - started
    assert pull.report.ok, pull.report.summary()
    return records / elapsed


def bench_sinks(args: argparse.Namespace, pg: Any) -> dict[str, list[float]]:
    contenders = ["no-op", "jsonl", "jsonl+sqlite", "parquet", "postgresql"]
    results: dict[str, list[float]] = {c: [] for c in contenders}
    with mock_server(records=args.records) as url:
        for _round in range(args.rounds):
            for contender in contenders:
                with tempfile.TemporaryDirectory() as work:
                    rate = asyncio.run(one_pull(url, args.connections, contender, Path(work), pg))
                results[contender].append(rate)
                print(f"  {contender:<14} {rate:>10,.0f} records/s", flush=True)
    return results


def _states(chains: int) -> list[tuple[str, ChainState]]:
    return [
        (f"plant-{i:06d}", ChainState(in_progress=True, cursor=f"c{i}", fingerprint="f" * 16))
        for i in range(chains)
    ]


def bench_sync_store(store: Any, chains: int, pages: int) -> float:
    for name, state in _states(chains):
        store.save(name, ENTITY, state)
    store.flush()
    started = time.perf_counter()
    for i in range(pages):
        state = ChainState(in_progress=True, cursor=f"next-{i}", records=i)
        store.save(f"plant-{(i * 7919) % chains:06d}", ENTITY, state)
    store.flush()
    return (time.perf_counter() - started) / pages


async def bench_pg_store(dsn: str, chains: int, pages: int) -> float:
    store = PostgresCheckpoint(dsn)
    await store.open()
    try:
        # Filled in one statement: 100,000 single upserts are not what is measured.
        await store.pool.executemany(
            "INSERT INTO makini_checkpoints (connection, entity, state, saved_at) "
            "VALUES ($1, $2, '{}'::jsonb, now()) ON CONFLICT DO NOTHING",
            [(name, ENTITY) for name, _ in _states(chains)],
        )
        started = time.perf_counter()
        for i in range(pages):
            state = ChainState(in_progress=True, cursor=f"next-{i}", records=i)
            await store.save(f"plant-{(i * 7919) % chains:06d}", ENTITY, state)
        return (time.perf_counter() - started) / pages
    finally:
        await store.close()


def bench_checkpoints(args: argparse.Namespace, pg: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    chains = args.chains
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        sqlite = SQLiteCheckpoint(root / "c.sqlite", lock=False)
        out["sqlite"] = {"per_page_s": bench_sync_store(sqlite, chains, args.pages)}
        sqlite.close()
        # JSON: saves during >= 3 s, so the 1 s rewrites are spread over real pages.
        store = JSONCheckpoint(root / "c.json", lock=False)
        for name, state in _states(chains):
            store.save(name, ENTITY, state)
        started = time.perf_counter()
        store.flush()
        rewrite = time.perf_counter() - started
        saves = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 3.0:
            store.save(
                f"plant-{(saves * 7919) % chains:06d}", ENTITY, ChainState(cursor=str(saves))
            )
            saves += 1
        store.flush()
        spent = time.perf_counter() - started
        store.close()
        size = (root / "c.json").stat().st_size
        out["json"] = {
            "per_page_s": spent / saves,
            "rewrite_s": rewrite,
            "file_bytes": size,
            # A page rate the pull really reaches (about 2,000 pages/s here): the
            # rewrite each second is then spread over that many pages, not millions.
            "per_page_at_2000_pages_s": rewrite / 2000,
        }
        out["postgresql"] = {
            "per_page_s": asyncio.run(bench_pg_store(fresh_dsn(pg, "ckpt"), chains, args.pages))
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--records", type=int, default=2500, help="records per connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chains", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=3000, help="saves timed per store")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-sinks", action="store_true")
    parser.add_argument("--skip-checkpoints", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.records, args.rounds = 10, 500, 1
        args.chains, args.pages = 10_000, 500
    with tempfile.TemporaryDirectory() as root:
        pg = start_postgres(Path(root))
        try:
            if not args.skip_sinks:
                print(f"records/s, {args.connections} connections x {args.records} {ENTITY}:")
                results = bench_sinks(args, pg)
                base = statistics.median(results["no-op"])
                print("\n| consumer | records/s (median, min-max) | vs no-op |\n|---|---|---|")
                for name, rates in results.items():
                    med = statistics.median(rates)
                    print(
                        f"| {name} | {med:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
                        f"| {med / base:.2f} |"
                    )
            if not args.skip_checkpoints:
                print(f"\ncheckpoint cost per page at {args.chains:,} chains:")
                for name, figures in bench_checkpoints(args, pg).items():
                    shown = ", ".join(
                        f"{k}={v * 1e6:,.1f} µs" if k.endswith("_s") else f"{k}={v:,}"
                        for k, v in figures.items()
                    )
                    print(f"  {name:<11} {shown}")
        finally:
            pg.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
