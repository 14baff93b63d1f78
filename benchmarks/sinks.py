"""Sinks and checkpoint stores: what landing records durably costs.

Two measurements, both against the mock server in its own process:

1. **records/s into each sink** against the same pull handing its pages to a
   no-op consumer (``pull.pages()`` and nothing else), and against each
   destination's **bare load** of the same records with no pull and no
   library (:mod:`benchmarks._sink_baselines`). Every contender pulls the
   same connections and records, dicts, on a fresh database or directory,
   in rounds interleaved so that drift hits every contender alike; the
   light and the realistic record shapes each get their own table.
2. **checkpoint cost per page at 100,000 chains** for each store: the store
   is first filled with 100,000 chains, then the time of one page's save
   (``save`` of one chain's new cursor) is measured over many pages. The JSON
   store rewrites its whole file at most every ``flush_interval`` (1 s): its
   cost per page is the rewrite spread over the pages of that second, so it
   is measured over whole seconds of saves and reported with the rewrite.

::

    python -m benchmarks.sinks                    # 3 rounds, 40 connections x 2,500 records
    python -m benchmarks.sinks --shape realistic  # ~850-byte nested work orders only
    python -m benchmarks.sinks --quick            # 1 round, small
    python -m benchmarks.sinks --chains 100000 --skip-sinks
    python -m benchmarks.sinks --tuned            # each run tuned, as the command line runs
    python -m benchmarks.sinks --only jsonl,jsonl-encoded --out /tmp/r  # some contenders
    python -m benchmarks.sinks --instant --only parquet,parquet-here --out /tmp/r

With ``--tuned`` every contender's process runs inside
:func:`makini_async.tuning.tuned` (the collector's thresholds raised, the
heap kept), as the ``makini-async`` command and the sharded workers do by
default; results go to ``sinks-tuned.{json,md}``. Besides records/s, each
pull reports its process's CPU time per record (every thread's): steadier than
records/s on a shared machine, and what a sink adds over the pull into nothing.
``--only`` runs some contenders (and ``jsonl-encoded``: JSON Lines encoding
every parsed record again, to show what writing the texts as sent saves;
``parquet-here``: every Parquet table built in the pull's process, no helper);
its results are written only to an ``--out`` given with it. ``--instant``
answers every request at once in the pull's process (pages of the same shape,
no HTTP and no mock server), as when the API is another machine's and the
pull's cores are its own: here the mock server takes a core's worth of the two.

Needs the test extra (pyarrow, asyncpg, pgserver, duckdb: PostgreSQL is
started here). Results go to ``benchmarks/results/sinks.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _sink_baselines as bare
from benchmarks._baselines import MAX_PAGE_SIZE
from benchmarks._common import library_version, machine, mock_server
from benchmarks._instant import InstantTransport
from benchmarks.overhead import page_bodies
from makini_async import MakiniPool
from makini_async.checkpoint import ChainState, JSONCheckpoint, PostgresCheckpoint, SQLiteCheckpoint
from makini_async.entities import Entity
from makini_async.sinks import DuckDBSink, JsonLinesSink, ParquetSink, PostgresSink
from makini_async.tuning import owned

ENTITY = "work-orders"
RESULTS = Path(__file__).resolve().parent / "results"
SINKS = ["no-op", "jsonl", "jsonl+sqlite", "parquet", "duckdb", "postgresql"]
BARES = ["parquet-bare", "duckdb-bare", "pg-bare"]
#: The ``--one`` URL of a pull answered at once in its own process (``--instant``).
INSTANT = "instant"
_SHAPE = ["realistic"]  # the shape of the run in this process (set by ``one``)
#: Run only when asked (``--only``): JSON Lines encoding every parsed record again, as it did
#: before it wrote each record's text as sent (what the texts save); Parquet building every
#: table in the pull's process (what the helper process gives).
EXTRA = ["jsonl-encoded", "parquet-here"]
#: What each sink is measured against: the pull into nothing, or its destination's bare load.
BASELINE = {
    "jsonl": "no-op",
    "jsonl-encoded": "no-op",
    "jsonl+sqlite": "no-op",
    "parquet": "serial ideal",
    "parquet-here": "serial ideal",
    "duckdb": "duckdb-bare",
    "postgresql": "pg-bare",
}


def start_postgres(root: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(root / "pgdata", cleanup_mode="stop")


def fresh_dsn(server: Any, name: str) -> str:
    server.psql(f"SET client_min_messages = warning; DROP DATABASE IF EXISTS {name};")
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri().replace("/postgres?", f"/{name}?", 1)


def _cpu() -> float:
    # Every thread of this process, and the processes it started and has waited for
    # (the Parquet sink's helper, which the pull waits for as it closes the sink).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _pool(url: str, records_per: int) -> MakiniPool[Any]:
    """The pool of a pull: against the mock server at ``url``, or answered at once (``instant``)."""
    if url != INSTANT:
        return MakiniPool(base_url=url, as_dicts=True)
    pages = -(-records_per // MAX_PAGE_SIZE[ENTITY])
    bodies = page_bodies(Entity(ENTITY), _SHAPE[0], pages)
    answers = InstantTransport(bodies)
    return MakiniPool(base_url="http://127.0.0.1:1", transport=answers, as_dicts=True)


async def one_pull(
    url: str, connections: int, contender: str, work: Path, dsn: str, *, records_per: int
) -> tuple[float, float]:
    """Records/s, and the process's CPU µs per record, of one pull into ``contender``."""
    tokens = [(f"plant-{i:04d}", f"tok-bench-{i:04d}") for i in range(connections)]
    sink: Any = None
    checkpoint: Any = None
    if contender in ("jsonl", "jsonl-encoded"):
        sink = JsonLinesSink(work / "jsonl", append=False)
        sink.reads_texts = contender == "jsonl"
    elif contender == "jsonl+sqlite":
        sink = JsonLinesSink(work / "jsonl-sq", append=False)
        checkpoint = work / "jsonl-sq.sqlite"
    elif contender in ("parquet", "parquet-here"):
        sink = ParquetSink(work / "parquet", helper=None if contender == "parquet" else False)
    elif contender == "duckdb":
        sink = DuckDBSink(work / "bench.duckdb")
    elif contender == "postgresql":
        sink = PostgresSink(dsn)
    async with _pool(url, records_per) as pool:
        started, cpu = time.perf_counter(), _cpu()
        records = 0
        async with pool.pull(ENTITY, tokens, sink=sink, checkpoint=checkpoint) as pull:
            async for page in pull.pages():
                records += len(page)
        elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    assert pull.report.ok, pull.report.summary()
    return records / elapsed, cpu / records * 1e6


def one_bare(contender: str, shape: str, records_per: int, connections: int, dsn: str) -> float:
    records = bare.records_of(Entity.WORK_ORDERS, records_per, shape)
    each = bare.per_connection(records, connections)
    if contender == "parquet-bare":
        return bare.parquet_bare(each)
    rows = bare.pg_rows(each)
    del each
    if contender == "duckdb-bare":
        return bare.duckdb_bare(rows)
    return asyncio.run(bare.pg_bare(dsn, rows))


def one(argv: list[str]) -> tuple[float, float]:
    """One run in this (fresh) process: ``CONTENDER URL SHAPE RECORDS CONNS DSN MODE``.

    Records/s and CPU µs per record (NaN for a bare load: not a pull).
    """
    contender, url, shape, records, connections, dsn, mode = argv
    with owned(enabled=mode == "tuned"):
        if contender in BARES:
            rate = one_bare(contender, shape, int(records), int(connections), dsn)
            return rate, float("nan")
        with tempfile.TemporaryDirectory() as work:
            _SHAPE[0] = shape
            pull = one_pull(
                url, int(connections), contender, Path(work), dsn, records_per=int(records)
            )
            return asyncio.run(pull)


def bench_sinks(args: argparse.Namespace, pg: Any) -> dict[str, list[float]]:
    contenders = args.contenders
    results: dict[str, list[float]] = {c: [] for c in contenders}
    args.peak_rss = dict.fromkeys(contenders, 0.0)
    args.cpu = {c: [] for c in contenders}
    extra = ["--shape", args.shape_now]
    answers = mock_server(records=args.records, extra=extra) if not args.instant else None
    with answers or nullcontext(INSTANT) as url:
        for _round in range(args.rounds):
            for contender in contenders:
                dsn = fresh_dsn(pg, "bench")
                # A fresh process per run: no contender inherits another's heap or GC state.
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.sinks", "--one", contender, url,
                     args.shape_now, str(args.records), str(args.connections), dsn,
                     "tuned" if args.tuned else "default"],
                    check=True, capture_output=True, text=True,
                    cwd=str(Path(__file__).resolve().parent.parent),
                )  # fmt: skip
                rate_text, rss_text, cpu_text = out.stdout.strip().splitlines()[-1].split()
                rate = float(rate_text)
                results[contender].append(rate)
                args.peak_rss[contender] = max(args.peak_rss[contender], float(rss_text))
                args.cpu[contender].append(float(cpu_text))
                print(
                    f"  {contender:<14} {rate:>10,.0f} records/s {float(cpu_text):>6.1f} µs CPU",
                    flush=True,
                )
    return results


def table(
    results: dict[str, list[float]], peak: dict[str, float], cpu: dict[str, list[float]]
) -> tuple[str, dict[str, Any]]:
    """The Markdown table of one shape, and its figures (medians, ranges, ratios, RSS, CPU)."""
    med = {name: statistics.median(rates) for name, rates in results.items()}
    # The serial ideal: the pull into nothing, then the bare write, one after the other.
    if "parquet-bare" in med:
        med["serial ideal"] = 1 / (1 / med["no-op"] + 1 / med["parquet-bare"])
    # CPU of the whole process per record, steadier than records/s on a shared machine.
    cpu_med = {name: statistics.median(v) for name, v in cpu.items() if v and v[0] == v[0]}
    lines = [
        (
            "| contender | records/s (median, min-max) | vs no-op | baseline | vs baseline "
            "| CPU µs/record (over no-op) | peak RSS MiB |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    figures: dict[str, Any] = {}
    for name, rates in results.items():
        base = BASELINE.get(name)
        ratio = med[name] / med[base] if base and base in med else None
        used = cpu_med.get(name)
        figures[name] = {
            "median": med[name],
            "min": min(rates),
            "max": max(rates),
            "vs_noop": med[name] / med["no-op"],
            "baseline": base,
            "vs_baseline": ratio,
            "cpu_us_per_record": used,
            "peak_rss_mib": peak[name],
        }
        shown = f"{ratio:.2f}" if ratio is not None else ""
        spent = ""
        if used is not None:
            spent = f"{used:.1f}"
            if name != "no-op" and "no-op" in cpu_med:
                spent += f" (+{used - cpu_med['no-op']:.1f})"
        lines.append(
            f"| {name} | {med[name]:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
            f"| {med[name] / med['no-op']:.2f} | {base or ''} | {shown} | {spent} "
            f"| {peak[name]:.0f} |"
        )
    if "serial ideal" in med:
        lines.append(f"| serial ideal | {med['serial ideal']:,.0f} | | | | | |")
    return "\n".join(lines), figures


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
    parser.add_argument("--shape", choices=["light", "realistic", "both"], default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs=7, help=argparse.SUPPRESS)
    parser.add_argument(
        "--tuned", action="store_true", help="run each contender tuned, as the command line does"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated contenders (no-op always runs; also: {', '.join(EXTRA)})",
    )
    parser.add_argument(
        "--instant", action="store_true", help="no HTTP: every request answered at once in-process"
    )
    parser.add_argument("--out", type=Path, help="where sinks.{md,json} go (default: results/)")
    parser.add_argument("--skip-sinks", action="store_true")
    parser.add_argument("--skip-checkpoints", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        rate, cpu = one(args.one)
        # Peak RSS of this process (the run's own) and of the largest process it started
        # (the Parquet sink's helper, if any), added: KiB on Linux.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(rate, peak / 1024, cpu)
        return 0
    args.contenders = SINKS + BARES
    if args.only:
        asked = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = sorted(set(asked) - set(SINKS + BARES + EXTRA))
        if unknown:
            parser.error(f"unknown contenders: {', '.join(unknown)}")
        args.contenders = ["no-op", *(c for c in dict.fromkeys(asked) if c != "no-op")]
    if args.quick:
        args.connections, args.records, args.rounds = 10, 500, 1
        args.chains, args.pages = 10_000, 500
    with tempfile.TemporaryDirectory() as root:
        pg = start_postgres(Path(root))
        try:
            if not args.skip_sinks:
                shapes = ["light", "realistic"] if args.shape == "both" else [args.shape]
                report: dict[str, Any] = {
                    "machine": machine(),
                    "library": library_version(),
                    "mode": "tuned" if args.tuned else "default",
                }
                markdown = []
                for shape in shapes:
                    args.shape_now = shape
                    print(f"{shape}: {args.connections} connections x {args.records} {ENTITY}")
                    rates = bench_sinks(args, pg)
                    shown, figures = table(rates, args.peak_rss, args.cpu)
                    print(shown)
                    report[shape] = figures
                    markdown.append(f"### {shape} records\n\n{shown}\n")
                report["settings"] = {
                    "connections": args.connections,
                    "records": args.records,
                    "rounds": args.rounds,
                }
                if args.out is None and not args.only:
                    args.out = RESULTS
                if not args.quick and args.out is not None:
                    args.out.mkdir(exist_ok=True)
                    name = "sinks-tuned" if args.tuned else "sinks"
                    name += "-instant" if args.instant else ""
                    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
                    (args.out / f"{name}.md").write_text("\n".join(markdown))
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
