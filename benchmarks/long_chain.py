"""Memory of one long chain: a single connection's 10 million records, dicts, no sink.

A transport in this process serves page after page of one connection (200
light work orders each, distinct ids, a cursor to the next page), so the
chain is as long as asked with no server holding the data. The pull keeps
de-duplication on (the default). Reported: peak RSS, RSS at the end, and
the records per second, against a chain a tenth as long, so growth with the
chain's length shows::

    python -m benchmarks.long_chain                    # 10,000,000 records
    python -m benchmarks.long_chain --records 2000000

Writes ``benchmarks/results/long_chain.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RESULTS, library_version, machine
from benchmarks._instant import InstantTransport
from makini_async import MakiniPool
from makini_async._client.transport import RawResponse
from makini_async.entities import Entity
from makini_async.testing._data import generate_records

if TYPE_CHECKING:
    from collections.abc import Mapping

PAGE = 200


class ChainTransport(InstantTransport):
    """Page ``n`` of one connection: ``PAGE`` records with ids of their own, then the next."""

    def __init__(self, records: int) -> None:
        super().__init__(())  # its headers and close(); the pages are made on request
        self.pages = (records + PAGE - 1) // PAGE
        self.template = generate_records(Entity.WORK_ORDERS, 0, PAGE)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> RawResponse:
        cursor = (params or {}).get("cursor")
        n = int(cursor[1:]) if cursor else 0
        data = [{**r, "id": f"wo_{n * PAGE + i:010d}"} for i, r in enumerate(self.template)]
        nxt = f"p{n + 1}" if n + 1 < self.pages else None
        return RawResponse(200, self.headers, orjson.dumps({"data": data, "next_cursor": nxt}))


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


async def _run(records: int) -> dict[str, Any]:
    before = _rss_kib()
    started = time.perf_counter()
    count = 0
    async with (
        MakiniPool(
            base_url="http://127.0.0.1:1", transport=ChainTransport(records), as_dicts=True
        ) as pool,
        pool.pull("work-orders", [("plant-0001", "bench-token-0001")]) as pull,
    ):
        async for page in pull.pages():
            count += len(page.records)
    elapsed = time.perf_counter() - started
    return {
        "records": count,
        "seconds": elapsed,
        "records_per_s": count / elapsed,
        "rss_before_kib": before,
        "rss_end_kib": _rss_kib(),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "long_chain.json")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_run(args.records))))
        return 0
    runs = {}
    for records in (args.records // 10, args.records):
        # A fresh process each: peak RSS is the process's own.
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.long_chain", "--child", "--records", str(records)],
            check=True,
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        runs[records] = json.loads(out.stdout.strip().splitlines()[-1])
        r = runs[records]
        print(
            f"{records:>12,} records: peak RSS {r['peak_rss_kib'] / 1024:,.1f} MiB, "
            f"end {r['rss_end_kib'] / 1024:,.1f} MiB, {r['records_per_s']:,.0f} records/s"
        )
    report = {"machine": machine(), "library": library_version(), "runs": runs}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
