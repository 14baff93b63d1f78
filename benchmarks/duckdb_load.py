"""DuckDB's own load of the sink's rows, with no pull: what the DuckDB sink can reach at most.

Each run loads the same realistic work orders (the mock's generator, fresh
objects per connection, as ``benchmarks.sinks`` does) into a fresh file in
5,000-row transactions, the way the sink does, through Arrow:

* ``upsert``: ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` into the sink's table
  (primary key ``(connection, id)``, newer ``updated_at`` wins): the sink's statement;
* ``insert``: a plain ``INSERT`` into the same table (the bare baseline of
  ``benchmarks.sinks``);
* ``no-key``: a plain ``INSERT`` into the table without its primary key.

each at DuckDB's memory limit as the sink sets it (``64MB``) and without one.
Every combination runs in a fresh process, rounds interleaved::

    python -m benchmarks.duckdb_load --connections 40 --records 2500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _sink_baselines as bare
from makini_async.entities import Entity

MODES = ("upsert", "insert", "no-key")
LIMITS = ("64MB", "none")


def one(mode: str, limit: str, connections: int, records: int) -> tuple[float, float]:
    """Rows/s and CPU µs a row (every thread) of one load, in this process."""
    import duckdb
    import pyarrow as pa

    from makini_async.sinks._duckdb import _ROWS, _json_type, _upsert_sql

    rows = bare.pg_rows(
        bare.per_connection(bare.records_of(Entity.WORK_ORDERS, records, "realistic"), connections)
    )
    stamp, text = pa.timestamp("us", tz="UTC"), pa.string()
    types = (text, text, stamp, stamp, _json_type(), text)
    columns = _ROWS if mode != "no-key" else _ROWS.replace(", PRIMARY KEY (connection, id)", "")
    sql = (
        _upsert_sql("t").replace("makini_stage", "stage")
        if mode == "upsert"
        else "INSERT INTO t (connection, id, updated_at, created_at, record, request_id, "
        "pulled_at) SELECT *, now() FROM stage"
    )
    with tempfile.TemporaryDirectory() as work:
        config = {} if limit == "none" else {"memory_limit": limit}
        db = duckdb.connect(str(Path(work) / "load.duckdb"), config=config)
        try:
            db.execute(f"CREATE TABLE t ({columns})")
            cpu, started = time.process_time(), time.perf_counter()
            bare.duckdb_steps(db, rows, sql, types)
            db.execute("CHECKPOINT")
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            db.close()
    return len(rows) / elapsed, cpu / len(rows) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--records", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        rate, cpu = one(args.one[0], args.one[1], args.connections, args.records)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"rate": rate, "cpu": cpu, "rss": peak}))
        return 0
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            for limit in LIMITS:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.duckdb_load", "--one", mode, limit,
                     "--connections", str(args.connections), "--records", str(args.records)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                got = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((mode, limit), []).append(got)
                print(
                    f"  {mode:<7} {limit:<5} {got['rate']:>9,.0f} rows/s {got['cpu']:>5.1f} µs CPU",
                    flush=True,
                )
    print(f"\n{args.connections} x {args.records} realistic work orders, {args.rounds} rounds\n")
    print("| statement | memory limit | rows/s (median, min-max) | CPU µs/row |")
    print("|---|---|---|---|")
    for (mode, limit), runs in results.items():
        rates = [r["rate"] for r in runs]
        print(
            f"| {mode} | {limit} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-"
            f"{max(rates):,.0f}) | {statistics.median(r['cpu'] for r in runs):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
